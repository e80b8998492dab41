// Line charts as plain SVG: no library. Values that are null (or, on a
// log scale, not above zero) leave a gap in their line.

const NS = "http://www.w3.org/2000/svg";
export const COLORS = ["#d9480f", "#1971c2", "#2f9e44", "#9c36b5", "#e67700", "#0c8599", "#c2255c", "#5c940d"];

function el(name, attrs = {}, text) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

function fmt(v) {
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1000 || a < 0.01) return v.toExponential(0);
  return String(+v.toPrecision(3));
}

// lineChart draws series [{name, values, color, dashed}] over times (Date
// or ISO strings); opts: {log, unit, width, height, id}.
export function lineChart(times, series, { log = false, unit = "", width = 760, height = 280, id } = {}) {
  const pad = { l: 64, r: 36, t: 12, b: 48 };
  const w = width - pad.l - pad.r;
  const h = height - pad.t - pad.b;
  const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, width, height, class: "chart", role: "img" });
  if (id) svg.setAttribute("id", id);
  const ts = times.map((t) => new Date(t).getTime());
  const ok = (v) => v !== null && v !== undefined && Number.isFinite(v) && (!log || v > 0);
  const all = series.flatMap((s) => s.values.filter(ok));
  let lo = all.length ? Math.min(...all) : 0;
  let hi = all.length ? Math.max(...all) : 1;
  if (log) {
    lo = Math.pow(10, Math.floor(Math.log10(lo || 1)));
    hi = Math.pow(10, Math.ceil(Math.log10(hi || 1)));
    if (hi <= lo) hi = lo * 10;
  } else {
    lo = Math.min(0, lo);
    if (hi <= lo) hi = lo + 1;
  }
  const x0 = ts[0] ?? 0;
  const x1 = ts.length > 1 ? ts[ts.length - 1] : x0 + 1;
  const x = (t) => pad.l + ((t - x0) / (x1 - x0 || 1)) * w;
  const y = (v) => {
    const f = log ? (Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo)) : (v - lo) / (hi - lo);
    return pad.t + h - f * h;
  };
  // Axes and grid.
  const ticks = [];
  if (log) {
    for (let v = lo; v <= hi * 1.0001; v *= 10) ticks.push(v);
  } else {
    for (let i = 0; i <= 4; i++) ticks.push(lo + ((hi - lo) * i) / 4);
  }
  for (const v of ticks) {
    svg.append(el("line", { x1: pad.l, x2: pad.l + w, y1: y(v), y2: y(v), class: "grid" }));
    svg.append(el("text", { x: pad.l - 6, y: y(v) + 4, "text-anchor": "end", class: "tick" }, fmt(v)));
  }
  svg.append(el("text", { x: 4, y: pad.t + 10, class: "unit" }, unit));
  const n = Math.min(6, ts.length);
  for (let i = 0; i < n; i++) {
    const k = Math.round((i * (ts.length - 1)) / Math.max(1, n - 1));
    const d = new Date(ts[k]);
    const label = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    svg.append(el("text", { x: x(ts[k]), y: pad.t + h + 16, "text-anchor": "middle", class: "tick" }, label));
  }
  svg.append(el("line", { x1: pad.l, x2: pad.l, y1: pad.t, y2: pad.t + h, class: "axis" }));
  svg.append(el("line", { x1: pad.l, x2: pad.l + w, y1: pad.t + h, y2: pad.t + h, class: "axis" }));
  // Lines, and a dot for each point (a lone point has no segment).
  series.forEach((s, i) => {
    const color = s.color || COLORS[i % COLORS.length];
    const g = el("g", { class: "series", "data-name": s.name });
    let d = "";
    let pen = false;
    s.values.forEach((v, j) => {
      if (!ok(v)) {
        pen = false;
        return;
      }
      d += `${pen ? "L" : "M"}${x(ts[j]).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
      g.append(el("circle", { cx: x(ts[j]).toFixed(1), cy: y(v).toFixed(1), r: 2.5, fill: color }));
    });
    const path = el("path", { d: d || "M0,0", fill: "none", stroke: color, "stroke-width": 2 });
    if (s.dashed) path.setAttribute("stroke-dasharray", "6 4");
    g.prepend(path);
    svg.append(g);
  });
  // Legend below.
  let lx = pad.l;
  series.forEach((s, i) => {
    const color = s.color || COLORS[i % COLORS.length];
    svg.append(el("rect", { x: lx, y: height - 16, width: 10, height: 10, fill: color }));
    const t = el("text", { x: lx + 14, y: height - 7, class: "legend" }, s.name);
    svg.append(t);
    lx += 24 + 7 * s.name.length;
  });
  return svg;
}
