// AWS Signature Version 4 with WebCrypto, as the daemon verifies it
// (internal/api/auth.go re-signs with aws-sdk-go-v2's signer): the path
// escaped once more, the query sorted and RFC 3986-encoded, the signed
// headers lower-cased and sorted, the payload's SHA-256 in
// X-Amz-Content-Sha256.

const enc = new TextEncoder();

function hex(buf) {
  return Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, "0")).join("");
}

export async function sha256Hex(data) {
  const bytes = typeof data === "string" ? enc.encode(data) : data;
  return hex(await crypto.subtle.digest("SHA-256", bytes));
}

async function hmac(key, msg) {
  const k = await crypto.subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return new Uint8Array(await crypto.subtle.sign("HMAC", k, enc.encode(msg)));
}

// encode is RFC 3986's percent-encoding: all but A-Z a-z 0-9 - _ . ~
export function encode(s) {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase());
}

// canonicalPath escapes the path as sent once more, as AWS's signer does
// for every service but S3.
function canonicalPath(path) {
  return path.split("/").map(encode).join("/");
}

function canonicalQuery(query) {
  return query
    .map(([k, v]) => [encode(k), encode(v)])
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join("&");
}

// amzDate is t as X-Amz-Date writes it: 20260301T120000Z.
export function amzDate(t) {
  return t.toISOString().replace(/[:-]|\.\d{3}/g, "");
}

// sign returns the headers to send: X-Amz-Date, X-Amz-Content-Sha256,
// Authorization and the signed headers given. query is a list of
// [name, value] pairs; body a string or bytes.
export async function sign({ method, host, path, query = [], headers = {}, body = "", service, region, accessKeyId, secretAccessKey, now = new Date() }) {
  const date = amzDate(now);
  const day = date.slice(0, 8);
  const payloadHash = await sha256Hex(typeof body === "string" ? enc.encode(body) : body);
  const h = {};
  for (const [k, v] of Object.entries(headers)) {
    h[k.toLowerCase()] = String(v).trim().replace(/\s+/g, " ");
  }
  h["host"] = host;
  h["x-amz-date"] = date;
  h["x-amz-content-sha256"] = payloadHash;
  const names = Object.keys(h).sort();
  const canonicalHeaders = names.map((n) => `${n}:${h[n]}\n`).join("");
  const signedHeaders = names.join(";");
  const canonicalRequest = [method, canonicalPath(path), canonicalQuery(query), canonicalHeaders, signedHeaders, payloadHash].join("\n");
  const scope = `${day}/${region}/${service}/aws4_request`;
  const stringToSign = ["AWS4-HMAC-SHA256", date, scope, await sha256Hex(canonicalRequest)].join("\n");
  let key = await hmac(enc.encode("AWS4" + secretAccessKey), day);
  key = await hmac(key, region);
  key = await hmac(key, service);
  key = await hmac(key, "aws4_request");
  const signature = hex(await hmac(key, stringToSign));
  const out = {};
  for (const n of names) {
    if (n !== "host") out[n] = h[n];
  }
  out["authorization"] = `AWS4-HMAC-SHA256 Credential=${accessKeyId}/${scope}, SignedHeaders=${signedHeaders}, Signature=${signature}`;
  return out;
}
