// The console: a page per hash route (#/functions, #/environments, …),
// each drawn from signed API calls. Data is only ever put into the page as
// text (textContent), never as markup.
import { Client, ApiError, loadKeys, saveKeys, forgetKeys, p } from "./api.js";
import { lineChart, COLORS } from "./charts.js";

const view = document.getElementById("view");
let client = null;
// stop ends what the current page runs (polling, a followed log).
let stop = () => {};

// h makes an element: h("td", {class: "n"}, "text", child…).
function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v === true) e.setAttribute(k, "");
    else e.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function table(id, head, rows) {
  return h("table", { id }, h("thead", {}, h("tr", {}, head.map((x) => h("th", {}, x)))), h("tbody", {}, rows));
}

function showError(e) {
  const box = document.getElementById("error");
  if (!e) {
    box.hidden = true;
    box.textContent = "";
    return;
  }
  box.hidden = false;
  box.textContent = e instanceof ApiError ? `The daemon answered ${e.message}` : String(e.message || e);
}

// ---- sign-in ----

function signIn(message) {
  stop();
  client = null;
  document.getElementById("nav").hidden = true;
  document.getElementById("signout").hidden = true;
  const form = h("form", { id: "signin" },
    h("h1", {}, "Sign in"),
    h("p", {}, "Give an access key pair of this daemon (",
      h("code", {}, "<data-dir>/credentials"),
      "). It stays in this browser tab's session storage; every call is signed in the page with SigV4, and the secret is never sent."),
    message ? h("p", { id: "signin-error", class: "bad" }, message) : null,
    h("label", {}, "Access key id", h("input", { id: "access-key", name: "access-key", autocomplete: "off", required: true })),
    h("label", {}, "Secret access key", h("input", { id: "secret-key", name: "secret-key", type: "password", autocomplete: "off", required: true })),
    h("label", {}, "Region", h("input", { id: "region", name: "region", value: "local", required: true })),
    h("button", { id: "signin-btn", type: "submit" }, "Sign in"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const keys = {
      accessKeyId: form.querySelector("#access-key").value.trim(),
      secretAccessKey: form.querySelector("#secret-key").value.trim(),
      region: form.querySelector("#region").value.trim() || "local",
    };
    const c = new Client(keys);
    try {
      await c.json("GET", "/hearth/v1/status");
    } catch (e) {
      signIn(e instanceof ApiError && e.status === 403 ? "The daemon refused these keys." : String(e.message || e));
      return;
    }
    saveKeys(keys);
    start(keys);
  });
  view.replaceChildren(form);
}

function start(keys) {
  client = new Client(keys);
  client.onRefused = () => {
    forgetKeys();
    signIn("The daemon refused the keys of this session.");
  };
  document.getElementById("nav").hidden = false;
  document.getElementById("signout").hidden = false;
  if (!location.hash || location.hash === "#/") location.hash = "#/functions";
  else route();
}

document.getElementById("signout").addEventListener("click", () => {
  forgetKeys();
  signIn();
});

// ---- routing ----

const pages = {
  functions: functionsPage,
  function: functionPage,
  environments: environmentsPage,
  microvms: microvmsPage,
  queues: queuesPage,
  buckets: bucketsPage,
  logs: logsPage,
  cost: costPage,
  latency: latencyPage,
};

async function route() {
  if (!client) return;
  stop();
  stop = () => {};
  showError(null);
  const [name, ...args] = location.hash.replace(/^#\//, "").split("/").map(decodeURIComponent);
  const page = pages[name] || functionsPage;
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("current", a.getAttribute("href") === "#/" + (name === "function" ? "functions" : name));
  }
  const section = h("section", { id: "page-" + (pages[name] ? name : "functions") });
  view.replaceChildren(section);
  try {
    await page(section, ...args);
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 403)) showError(e);
  }
}

window.addEventListener("hashchange", route);

// every runs f now and each ms until the page changes.
function every(ms, f) {
  let timer = null;
  let live = true;
  const tick = async () => {
    try {
      await f();
      showError(null);
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 403)) showError(e);
    }
    if (live) timer = setTimeout(tick, ms);
  };
  stop = () => {
    live = false;
    clearTimeout(timer);
  };
  return tick();
}

// ---- functions ----

async function functionsPage(section) {
  const [list, status] = await Promise.all([client.json("GET", "/2015-03-31/functions"), client.json("GET", "/hearth/v1/status")]);
  const envs = Object.fromEntries((status.functions || []).map((f) => [f.name, f]));
  const rows = (list.Functions || []).map((f) => {
    const e = envs[f.FunctionName] || {};
    return h("tr", { "data-fn": f.FunctionName },
      h("td", {}, h("a", { href: "#/function/" + encodeURIComponent(f.FunctionName) }, f.FunctionName)),
      h("td", {}, f.Runtime || f.PackageType), h("td", { class: "n" }, f.MemorySize), h("td", { class: "n" }, f.Timeout),
      h("td", {}, f.State || ""), h("td", {}, `${e.busy || 0} busy · ${e.warm || 0} warm · ${e.paused || 0} paused · ${e.suspended || 0} suspended`),
      h("td", {}, f.LastModified || ""));
  });
  section.append(h("h1", {}, "Functions"),
    rows.length ? table("functions-table", ["Name", "Runtime", "Memory MB", "Timeout s", "State", "Environments", "Last modified"], rows)
      : h("p", { id: "no-functions" }, "No functions yet."),
    createForm());
}

function createForm() {
  const out = h("p", { id: "create-result" });
  const form = h("form", { id: "create-form" },
    h("h2", {}, "Create a function from a zip"),
    h("label", {}, "Name", h("input", { id: "fn-name", required: true, pattern: "[A-Za-z0-9_-]{1,64}" })),
    h("label", {}, "Runtime", h("select", { id: "fn-runtime" },
      ["provided.al2023", "provided.al2", "python3.11", "nodejs18.x"].map((r) => h("option", { value: r }, r)))),
    h("label", {}, "Handler (managed runtimes)", h("input", { id: "fn-handler", placeholder: "app.handler" })),
    h("label", {}, "Memory MB", h("input", { id: "fn-memory", type: "number", min: 128, max: 10240, value: 128 })),
    h("label", {}, "Timeout s", h("input", { id: "fn-timeout", type: "number", min: 1, max: 900, value: 30 })),
    h("label", {}, "Zip", h("input", { id: "fn-zip", type: "file", accept: ".zip,application/zip", required: true })),
    h("button", { id: "create-btn", type: "submit" }, "Create"), out);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const file = form.querySelector("#fn-zip").files[0];
    const name = form.querySelector("#fn-name").value.trim();
    out.textContent = "Uploading…";
    try {
      const zip = await base64(file);
      const body = {
        FunctionName: name, Runtime: form.querySelector("#fn-runtime").value, Role: "arn:aws:iam::000000000000:role/console",
        MemorySize: +form.querySelector("#fn-memory").value, Timeout: +form.querySelector("#fn-timeout").value,
        Code: { ZipFile: zip },
      };
      const handler = form.querySelector("#fn-handler").value.trim();
      if (handler) body.Handler = handler;
      const f = await client.json("POST", "/2015-03-31/functions", { body });
      out.textContent = `Created ${f.FunctionName} (${f.CodeSize} bytes, ${f.CodeSha256}).`;
      location.hash = "#/function/" + encodeURIComponent(f.FunctionName);
    } catch (e) {
      out.textContent = "Not created: " + e.message;
    }
  });
  return form;
}

function base64(file) {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(String(r.result).replace(/^data:[^,]*,/, ""));
    r.onerror = () => reject(r.error);
    r.readAsDataURL(file);
  });
}

// optional is a call that may answer 404 (no URL, no concurrency set).
async function optional(promise) {
  try {
    return await promise;
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) return null;
    throw e;
  }
}

function dl(id, pairs) {
  return h("dl", { id }, pairs.filter(([, v]) => v !== undefined && v !== null && v !== "").flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

async function functionPage(section, name) {
  const fp = p("2015-03-31", "functions", name);
  const [fn, versions, aliases, url, conc, idle] = await Promise.all([
    client.json("GET", fp),
    client.json("GET", fp + "/versions"),
    client.json("GET", fp + "/aliases"),
    optional(client.json("GET", p("2021-10-31", "functions", name, "url"))),
    optional(client.json("GET", p("2019-09-30", "functions", name, "concurrency"))),
    optional(client.json("GET", p("hearth", "v1", "functions", name, "idle-policy"))),
  ]);
  const c = fn.Configuration;
  section.append(h("h1", {}, c.FunctionName),
    h("h2", {}, "Configuration"),
    dl("fn-config", [["ARN", c.FunctionArn], ["Runtime", c.Runtime], ["Handler", c.Handler], ["Package", c.PackageType],
      ["Memory", c.MemorySize + " MB"], ["Timeout", c.Timeout + " s"], ["Ephemeral storage", c.EphemeralStorage && c.EphemeralStorage.Size + " MB"],
      ["Code", `${c.CodeSize} bytes, SHA-256 ${c.CodeSha256}`], ["State", c.State], ["Last modified", c.LastModified],
      ["Environment", c.Environment && c.Environment.Variables ? Object.keys(c.Environment.Variables).join(", ") : ""]]),
    h("h2", {}, "Versions"),
    table("fn-versions", ["Version", "Description", "Code SHA-256", "Last modified"],
      (versions.Versions || []).map((v) => h("tr", {}, h("td", {}, v.Version), h("td", {}, v.Description || ""), h("td", { class: "mono" }, v.CodeSha256), h("td", {}, v.LastModified)))),
    h("h2", {}, "Aliases"),
    (aliases.Aliases || []).length
      ? table("fn-aliases", ["Alias", "Version", "Routing"], aliases.Aliases.map((a) => h("tr", {}, h("td", {}, a.Name), h("td", {}, a.FunctionVersion),
        h("td", {}, a.RoutingConfig ? JSON.stringify(a.RoutingConfig.AdditionalVersionWeights) : ""))))
      : h("p", { id: "fn-aliases" }, "No aliases."),
    h("h2", {}, "Function URL"),
    url ? dl("fn-url", [["URL", h("a", { href: url.FunctionUrl, rel: "noreferrer" }, url.FunctionUrl)], ["Auth", url.AuthType], ["Invoke mode", url.InvokeMode],
      ["CORS", url.Cors ? JSON.stringify(url.Cors) : ""]]) : h("p", { id: "fn-url" }, "No function URL."),
    h("h2", {}, "Concurrency and idle policy"),
    dl("fn-limits", [["Reserved concurrency", conc && conc.ReservedConcurrentExecutions !== undefined ? conc.ReservedConcurrentExecutions : "none (the host's)"],
      ["Keep warm", idle ? idle.KeepWarmSeconds + " s" : ""],
      ["Keep paused", idle ? keepPaused(idle) : ""],
      ["Keep suspended", idle ? idle.KeepSuspendedHours + " h" : ""]]),
    invokeForm(name));
}

// keepPaused says how long idle environments stay paused: the function's
// own setting, or the daemon's, which a policy without one follows.
function keepPaused(idle) {
  const own = idle.KeepPausedSeconds !== undefined;
  const s = own ? idle.KeepPausedSeconds : idle.DefaultKeepPausedSeconds;
  if (s === undefined) return "the daemon's default";
  const v = s === 0 ? "no paused tier" : s + " s";
  return own ? v : v + " (the daemon's default)";
}

function invokeForm(name) {
  const response = h("pre", { id: "invoke-response" });
  const report = h("pre", { id: "invoke-report" });
  const log = h("pre", { id: "invoke-log" });
  const form = h("form", { id: "invoke-form" },
    h("h2", {}, "Invoke"),
    h("label", {}, "Test event (JSON)", h("textarea", { id: "invoke-event", rows: 4 }, '{"name":"Console"}')),
    h("button", { id: "invoke-btn", type: "submit" }, "Invoke"),
    h("h3", {}, "Response"), response, h("h3", {}, "REPORT"), report, h("h3", {}, "Log tail"), log);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    response.textContent = "Invoking…";
    report.textContent = log.textContent = "";
    try {
      const resp = await client.call("POST", p("2015-03-31", "functions", name, "invocations"), {
        body: form.querySelector("#invoke-event").value, unsigned: { "x-amz-log-type": "Tail" },
      });
      const text = await resp.text();
      const fnErr = resp.headers.get("x-amz-function-error");
      response.textContent = (resp.ok ? "" : `${resp.status} `) + (fnErr ? `(${fnErr}) ` : "") + text;
      const tail = resp.headers.get("x-amz-log-result");
      if (tail) {
        const lines = new TextDecoder().decode(Uint8Array.from(atob(tail), (ch) => ch.charCodeAt(0)));
        log.textContent = lines;
        report.textContent = lines.split("\n").filter((l) => l.startsWith("REPORT")).join("\n");
      }
    } catch (e) {
      response.textContent = "Failed: " + e.message;
    }
  });
  return form;
}

// ---- environments ----

async function environmentsPage(section) {
  const body = h("tbody");
  const starts = h("p", { id: "start-types" });
  const at = h("p", { class: "muted", id: "env-time" });
  section.append(h("h1", {}, "Environments"),
    h("p", { class: "muted" }, "By state, per function and per MicroVM image; refreshed every second."),
    h("table", { id: "env-table" }, h("thead", {}, h("tr", {}, ["Function", "Busy", "Warm", "Paused", "Suspended", ""].map((x) => h("th", {}, x)))), body),
    h("h2", {}, "Invocations since the daemon started, by start type"), starts, at);
  await every(1000, async () => {
    const st = await client.json("GET", "/hearth/v1/status");
    body.replaceChildren(...(st.functions || []).map((f) => {
      const total = f.busy + f.warm + f.paused + f.suspended;
      const bar = h("span", { class: "bar" });
      for (const s of ["busy", "warm", "paused", "suspended"]) {
        for (let i = 0; i < f[s]; i++) bar.append(h("span", { class: "dot " + s, title: s }));
      }
      const state = total === 0 ? "none" : ["busy", "warm", "paused", "suspended"].filter((s) => f[s] > 0).join(" ");
      return h("tr", { "data-fn": f.name, "data-state": state },
        h("td", {}, f.name), h("td", { class: "n busy" }, f.busy), h("td", { class: "n warm" }, f.warm),
        h("td", { class: "n paused" }, f.paused), h("td", { class: "n suspended" }, f.suspended), h("td", {}, bar));
    }));
    starts.textContent = Object.entries(st.invocations || {}).map(([k, v]) => `${k}: ${v}`).join(" · ") || "none yet";
    at.textContent = "As of " + new Date(st.time).toLocaleTimeString();
  });
}

// ---- MicroVMs ----

async function microvmsPage(section) {
  section.append(h("h1", {}, "MicroVMs"));
  const holder = h("div");
  section.append(holder);
  const draw = async () => {
    let list;
    try {
      list = await client.json("GET", "/2025-09-09/microvms");
    } catch (e) {
      holder.replaceChildren(h("p", { id: "microvms-none" }, "This daemon runs no MicroVMs (" + e.message + ")."));
      return;
    }
    const items = await Promise.all((list.items || []).map((i) => optional(client.json("GET", p("2025-09-09", "microvms", i.microvmId))).then((m) => m || i)));
    if (!items.length) {
      holder.replaceChildren(h("p", { id: "microvms-none" }, "No MicroVMs."));
      return;
    }
    const act = (id, what, method, path) => h("button", {
      class: "act", "data-act": what, onclick: async () => {
        try {
          await client.json(method, path);
          await draw();
        } catch (e) {
          showError(e);
        }
      },
    }, what);
    holder.replaceChildren(table("microvms-table", ["Id", "State", "Image", "Endpoint", "Started", ""], items.map((m) => h("tr", { "data-id": m.microvmId, "data-state": m.state },
      h("td", { class: "mono" }, m.microvmId), h("td", {}, m.state, m.stateReason ? ` (${m.stateReason})` : ""), h("td", {}, `${m.imageArn} v${m.imageVersion}`),
      h("td", {}, m.endpoint ? h("a", { href: m.endpoint, rel: "noreferrer" }, m.endpoint) : ""), h("td", {}, m.startedAt ? new Date(m.startedAt * 1000 || m.startedAt).toLocaleString() : ""),
      h("td", {}, m.state === "RUNNING" ? act(m.microvmId, "suspend", "POST", p("2025-09-09", "microvms", m.microvmId, "suspend")) : null,
        m.state === "SUSPENDED" ? act(m.microvmId, "resume", "POST", p("2025-09-09", "microvms", m.microvmId, "resume")) : null,
        m.state !== "TERMINATED" ? act(m.microvmId, "terminate", "DELETE", p("2025-09-09", "microvms", m.microvmId)) : null)))));
  };
  await every(3000, draw);
}

// ---- queues and buckets ----

async function queuesPage(section) {
  const [urls, status] = await Promise.all([client.sqs("ListQueues"), client.json("GET", "/hearth/v1/status")]);
  const counts = Object.fromEntries((status.queues || []).map((q) => [q.name, q]));
  const list = urls.QueueUrls || [];
  section.append(h("h1", {}, "Queues"), list.length
    ? table("queues-table", ["Queue", "URL", "Visible", "In flight", "Delayed", "Oldest"], list.map((u) => {
      const name = u.split("/").pop();
      const q = counts[name] || {};
      return h("tr", { "data-queue": name }, h("td", {}, name), h("td", { class: "mono" }, u), h("td", { class: "n" }, q.visible ?? ""),
        h("td", { class: "n" }, q.inFlight ?? ""), h("td", { class: "n" }, q.delayed ?? ""), h("td", { class: "n" }, q.oldestAgeSeconds ? q.oldestAgeSeconds.toFixed(0) + " s" : ""));
    }))
    : h("p", { id: "queues-none" }, "No queues."));
}

async function bucketsPage(section) {
  const out = await client.json("GET", "/hearth/v1/buckets");
  section.append(h("h1", {}, "Buckets"), out.buckets.length
    ? table("buckets-table", ["Bucket", "Created"], out.buckets.map((b) => h("tr", { "data-bucket": b.name }, h("td", {}, b.name), h("td", {}, new Date(b.creationDate).toLocaleString()))))
    : h("p", { id: "buckets-none" }, "No buckets."));
}

// ---- logs ----

async function logsPage(section, chosen) {
  const list = await client.json("GET", "/2015-03-31/functions");
  const names = (list.Functions || []).map((f) => f.FunctionName);
  const select = h("select", { id: "log-fn" }, names.map((n) => h("option", { value: n, selected: n === chosen }, n)));
  const follow = h("input", { id: "log-follow", type: "checkbox", checked: true });
  const out = h("pre", { id: "log-output", class: "log" });
  section.append(h("h1", {}, "Logs"), h("div", { class: "row" }, h("label", {}, "Function ", select), h("label", {}, follow, " follow")), out);
  let abort = null;
  const open = async () => {
    if (abort) abort.abort();
    out.textContent = "";
    const name = select.value;
    if (!name) {
      out.textContent = "No functions.";
      return;
    }
    abort = new AbortController();
    stop = () => abort && abort.abort();
    const query = { tail: "200" };
    if (follow.checked) query.follow = "1";
    try {
      const resp = await client.call("GET", p("hearth", "v1", "functions", name, "logs"), { query, signal: abort.signal });
      if (!resp.ok) throw new ApiError(resp.status, "", await resp.text());
      const reader = resp.body.getReader();
      const dec = new TextDecoder();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        out.textContent += dec.decode(value, { stream: true });
        out.scrollTop = out.scrollHeight;
      }
    } catch (e) {
      if (e.name !== "AbortError") showError(e);
    }
  };
  select.addEventListener("change", open);
  follow.addEventListener("change", open);
  open();
}

// ---- cost and latency ----

function rangeSelect(onchange) {
  const s = h("select", { id: "range" }, [["15m", "15 minutes"], ["1h", "1 hour"], ["6h", "6 hours"], ["24h", "24 hours"], ["168h", "7 days"]]
    .map(([v, l]) => h("option", { value: v, selected: v === "1h" }, l)));
  s.addEventListener("change", () => onchange(s.value));
  return s;
}

async function costPage(section) {
  const chart = h("div", { id: "cost-chart-box" });
  const summary = h("div");
  const draw = async (since) => {
    const [series, cost] = await Promise.all([
      client.json("GET", "/hearth/v1/usage/series", { query: { since } }),
      client.json("GET", "/hearth/v1/cost", { query: { since } }),
    ]);
    const lines = series.functions.map((f, i) => ({ name: `${f.name} (GB-s)`, values: f.gbSeconds, color: COLORS[i % COLORS.length] }));
    lines.push({ name: "always-on (GB-s)", values: series.alwaysOnGBSeconds, color: "#495057", dashed: true });
    chart.replaceChildren(
      h("p", { class: "muted" }, `GB-seconds billed per ${series.stepSeconds} s step, beside the same functions' memory held always-on (log scale).`),
      lineChart(series.times, lines, { log: true, unit: "GB-s", id: "cost-chart" }));
    const money = (v) => "$" + v.toFixed(v < 0.01 ? 6 : 2);
    summary.replaceChildren(table("cost-table", ["Function", "Requests", "Billed s", "GB-s", "Snapshot GB-h", "Cost", "Always-on", "Without suspend"],
      [...cost.functions, cost.total].map((f) => h("tr", { "data-fn": f.name }, h("td", {}, f.name), h("td", { class: "n" }, f.requests),
        h("td", { class: "n" }, f.billed_seconds.toFixed(3)), h("td", { class: "n" }, f.gb_seconds.toFixed(3)), h("td", { class: "n" }, f.snapshot_gb_hours.toFixed(6)),
        h("td", { class: "n" }, money(f.cost)), h("td", { class: "n" }, money(f.always_on_cost)), h("td", { class: "n" }, money(f.no_suspend_cost))))),
    h("p", { class: "muted" }, cost.prices.label));
  };
  section.append(h("h1", {}, "Cost"), h("label", { class: "range" }, "Over the last ", rangeSelect((v) => draw(v).catch(showError))), chart, summary);
  await draw("1h");
}

async function latencyPage(section) {
  const chart = h("div", { id: "latency-chart-box" });
  const draw = async (since) => {
    const series = await client.json("GET", "/hearth/v1/usage/series", { query: { since } });
    const order = ["cold", "clone", "resume", "paused", "warm"];
    const starts = [...series.starts].sort((a, b) => order.indexOf(a.startType) - order.indexOf(b.startType));
    const lines = starts.map((s, i) => ({ name: `${s.startType} p50 (ms)`, values: s.p50Ms.map((v, j) => (s.count[j] ? v : null)), color: COLORS[i % COLORS.length] }));
    chart.replaceChildren(
      h("p", { class: "muted" }, `Median latency of each start type per ${series.stepSeconds} s step, from the meter: platform init + init + restore + run (log scale).`),
      lineChart(series.times, lines, { log: true, unit: "ms", id: "latency-chart" }),
      table("latency-table", ["Start type", "Invocations", "Worst (ms)"], starts.map((s) => h("tr", { "data-start": s.startType }, h("td", {}, s.startType),
        h("td", { class: "n" }, s.count.reduce((a, b) => a + b, 0)), h("td", { class: "n" }, Math.max(...s.maxMs).toFixed(1))))));
  };
  section.append(h("h1", {}, "Start latency"), h("label", { class: "range" }, "Over the last ", rangeSelect((v) => draw(v).catch(showError))), chart);
  await draw("1h");
}

// ---- start ----

const keys = loadKeys();
if (keys) start(keys);
else signIn();
