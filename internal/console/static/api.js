// The daemon's APIs, every call signed in the page (sigv4.js) with the keys
// kept in this browser session only.
import { sign, encode } from "./sigv4.js";

const KEYS = "hearth.keys";

export function loadKeys() {
  try {
    const k = JSON.parse(sessionStorage.getItem(KEYS) || "null");
    return k && k.accessKeyId && k.secretAccessKey ? k : null;
  } catch {
    return null;
  }
}

export function saveKeys(k) {
  sessionStorage.setItem(KEYS, JSON.stringify(k));
}

export function forgetKeys() {
  sessionStorage.removeItem(KEYS);
}

// ApiError is an answer that is not a success: its status, the error's
// type (X-Amzn-ErrorType, or the SQS/JSON __type) and message.
export class ApiError extends Error {
  constructor(status, type, message) {
    super(`${status} ${type || ""}: ${message || ""}`.trim());
    this.status = status;
    this.type = type;
  }
}

// p builds a path from segments, each encoded.
export function p(...segments) {
  return "/" + segments.map((s) => encode(String(s))).join("/");
}

// signedRequest is the URL and the fetch init (method, headers, body) of a
// call signed with keys: path is as sent (its segments encoded, see p),
// query an object or a list of pairs, a body object is sent as JSON;
// headers are signed, unsigned ones only sent. host and now are the
// page's and the clock's unless given (the signer's test fixes them).
export async function signedRequest(keys, method, path, { query = [], body, headers = {}, unsigned = {}, service = "lambda", host = location.host, now = new Date() } = {}) {
  const pairs = Array.isArray(query) ? query : Object.entries(query).filter(([, v]) => v !== undefined && v !== "");
  let payload = "";
  if (body !== undefined) {
    payload = typeof body === "string" || body instanceof Uint8Array ? body : JSON.stringify(body);
  }
  const signed = await sign({
    method, host, path, query: pairs, headers, body: payload, service, now,
    region: keys.region || "local", accessKeyId: keys.accessKeyId, secretAccessKey: keys.secretAccessKey,
  });
  const qs = pairs.map(([k, v]) => `${encode(k)}=${encode(v)}`).join("&");
  const init = { method, headers: { ...unsigned, ...signed } };
  if (method !== "GET" && method !== "HEAD") init.body = payload;
  return { url: path + (qs ? "?" + qs : ""), init };
}

export class Client {
  constructor(keys) {
    this.keys = keys;
    // Whoever holds the page is told when the keys are refused.
    this.onRefused = () => {};
  }

  // call signs and sends a request and returns the Response; query is an
  // object or a list of pairs; a body object is sent as JSON.
  async call(method, path, { signal, ...opts } = {}) {
    const { url, init } = await signedRequest(this.keys, method, path, opts);
    const resp = await fetch(url, { ...init, signal, cache: "no-store", credentials: "omit" });
    if (resp.status === 403) {
      const e = await errorOf(resp);
      if (e.type === "UnrecognizedClientException" || e.type === "InvalidSignatureException") this.onRefused(e);
      throw e;
    }
    return resp;
  }

  // json calls and parses the answer, throwing ApiError on a failure.
  async json(method, path, opts = {}) {
    const resp = await this.call(method, path, opts);
    if (!resp.ok) throw await errorOf(resp);
    if (resp.status === 204) return null;
    const text = await resp.text();
    return text ? JSON.parse(text) : null;
  }

  // sqs calls the SQS JSON protocol on the same listener.
  sqs(action, body = {}) {
    return this.json("POST", "/", {
      body, service: "sqs",
      headers: { "x-amz-target": "AmazonSQS." + action },
      unsigned: { "content-type": "application/x-amz-json-1.0" },
    });
  }
}

async function errorOf(resp) {
  let type = resp.headers.get("x-amzn-errortype") || "";
  let message = "";
  try {
    const e = JSON.parse(await resp.text());
    message = e.message || e.Message || "";
    type = type || e.__type || e.Type || "";
  } catch {
    // not JSON
  }
  return new ApiError(resp.status, type.split(":")[0], message);
}
