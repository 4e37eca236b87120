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
