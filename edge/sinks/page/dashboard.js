// The live dashboard: polls /api/state every second and shows the MJPEG stream.
// Served as /dashboard.js by edge/sinks/dashboard.py; the data-* attributes on <body> let tests
// (headless Chromium) see that frames arrive and the picture changes.
"use strict";
const $ = (id) => document.getElementById(id);
const dash = "\u2013";
let streamFrames = 0, polls = 0, alertsShown = -1, streamChanges = 0, lastLook = "";
const stream = $("stream");
const probe = document.createElement("canvas"); probe.width = 16; probe.height = 12;
function lookAtStream() {  // counts how often the picture changed, in data-stream-changes
  if (!stream.complete || !stream.naturalWidth) return;
  const ctx = probe.getContext("2d", {willReadFrequently: true});
  ctx.drawImage(stream, 0, 0, probe.width, probe.height);
  const look = ctx.getImageData(0, 0, probe.width, probe.height).data.join(",");
  if (look !== lastLook) { lastLook = look; document.body.dataset.streamChanges = ++streamChanges; }
}
stream.addEventListener("load", () => { document.body.dataset.streamFrames = ++streamFrames; });
stream.addEventListener("error", () => { $("status").textContent = "stream unavailable"; });
const pct = (x) => typeof x === "number" ? Math.round(100 * x) + "%" : dash;
const fixed = (x, d) => typeof x === "number" ? x.toFixed(d) : dash;
function cell(row, text, cls) {
  const td = row.insertCell(); td.textContent = text; if (cls) td.className = cls; return td;
}
function renderCounts(s) {
  const body = $("counts"); body.replaceChildren();
  for (const c of s.counts) {
    const tr = body.insertRow(); tr.dataset.label = c.label; tr.className = "l-" + c.label;
    cell(tr, c.label.replace(/_/g, " ")); cell(tr, String(c.people), "n people");
    cell(tr, String(c.now), "n now");
  }
}
function renderAlerts(s) {
  if (s.alerts_total === alertsShown) return;
  alertsShown = s.alerts_total;
  const body = $("alerts"); body.replaceChildren();
  for (const a of s.alerts) {
    const tr = body.insertRow(); tr.className = "l-" + a.label;
    cell(tr, typeof a.time === "number" ? new Date(a.time * 1000).toLocaleTimeString() : dash);
    cell(tr, String(a.track ?? dash)); cell(tr, String(a.label).replace(/_/g, " "));
    cell(tr, pct(a.score), "n");
    const shots = cell(tr, "");
    for (const [kind, link] of Object.entries(a.snapshots || {})) {
      const anchor = document.createElement("a"); anchor.href = link; anchor.target = "_blank";
      const img = document.createElement("img"); img.src = link; img.alt = kind;
      img.className = "thumb"; anchor.append(img); shots.append(anchor);
    }
  }
}
function render(s) {
  $("compliance").textContent = pct(s.compliance);
  $("fps").textContent = fixed(s.fps, 1);
  $("total").textContent = typeof s.total === "number" ? String(s.total) : dash;
  $("frame").textContent = "frame " + (s.frame ?? dash) + " \u00b7 " + s.viewers + " viewer(s)";
  document.body.dataset.frame = String(s.frame ?? "");
  renderCounts(s); renderAlerts(s);
}
async function poll() {
  try {
    const reply = await fetch(location.origin + "/api/state", {cache: "no-store"});
    if (!reply.ok) throw new Error("HTTP " + reply.status);
    render(await reply.json());
    document.body.dataset.polls = ++polls;
    lookAtStream();
    $("status").textContent = "live";
  } catch (err) {
    $("status").textContent = "connection lost, retrying";
  }
  setTimeout(poll, 1000);
}
poll();
// History charts (edge run --history): /api/history every minute; 404 = no history, stay hidden.
// Drawn as SVG elements with presentation attributes and classes only (the CSP has no inline
// styles); each chart's data-buckets / data-people attributes let the browser test check it.
const SVG_NS = "http://www.w3.org/2000/svg";
function svgEl(parent, name, attrs, text) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  if (text !== undefined) el.textContent = text;
  parent.append(el); return el;
}
function drawChart(svg, report, tickEvery, tickText) {
  const W = 480, H = 150, left = 30, right = 34, top = 10, bottom = 20;
  const buckets = report.buckets, plotH = H - top - bottom;
  const step = (W - left - right) / Math.max(1, buckets.length);
  const most = Math.max(1, ...buckets.map((b) => b.people));
  svg.replaceChildren();
  svgEl(svg, "line", {class: "axis", x1: left, y1: H - bottom, x2: W - right, y2: H - bottom});
  svgEl(svg, "text", {x: 2, y: top + 8}, String(most));
  svgEl(svg, "text", {x: 2, y: H - bottom}, "0");
  svgEl(svg, "text", {x: W - 2, y: top + 8, class: "right"}, "100%");
  svgEl(svg, "text", {x: W - 2, y: H - bottom, class: "right"}, "0%");
  const points = [];
  buckets.forEach((b, i) => {
    const x = left + i * step, h = plotH * b.people / most;
    const bar = svgEl(svg, "rect", {class: "bar", x: (x + step * 0.1).toFixed(1),
      y: (H - bottom - h).toFixed(1), width: (step * 0.8).toFixed(1), height: h.toFixed(1),
      "data-people": b.people});
    svgEl(bar, "title", {}, `${b.start}: ${b.people} people, compliance ${pct(b.compliance)}, ` +
      `${b.alerts} alerts`);
    if (typeof b.compliance === "number") {
      const cx = (x + step / 2).toFixed(1), cy = (top + plotH * (1 - b.compliance)).toFixed(1);
      points.push(`${cx},${cy}`);
      svgEl(svg, "circle", {class: "dot", cx, cy, r: 2.5, "data-compliance": b.compliance});
    }
    if (i % tickEvery === 0) {
      svgEl(svg, "text", {x: (x + 1).toFixed(1), y: H - 6}, tickText(b.start));
    }
  });
  if (points.length > 1) svgEl(svg, "polyline", {class: "line", points: points.join(" ")});
  svg.setAttribute("data-buckets", String(buckets.length));
  svg.setAttribute("data-people", String(report.total.people));
}
async function pollHistory() {
  try {
    const reply = await fetch(location.origin + "/api/history", {cache: "no-store"});
    if (reply.status === 404) return;  // no --history: the section stays hidden
    const data = await reply.json();
    $("history").hidden = false;
    if (!reply.ok) { $("history-status").textContent = data.error || "history unavailable"; }
    else {
      drawChart($("chart-hourly"), data.hourly, 3, (s) => s.slice(11, 13) + "h");
      drawChart($("chart-daily"), data.daily, 1, (s) => s.slice(5));
      $("history-status").textContent = "";
      document.body.dataset.historyPolls = String(Number(document.body.dataset.historyPolls || 0) + 1);
    }
  } catch (err) {
    $("history-status").textContent = "history unavailable, retrying";
  }
  setTimeout(pollHistory, 60000);
}
pollHistory();
