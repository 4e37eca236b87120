// The labelling page (edge/collect/server.py serves it as /label.js; no inline script or style).
// Each face waiting for a label is shown beside its frame with the box drawn on a canvas; keys 1-9
// pick a class in the model's label order, Enter the preselected guess, s skips, u undoes the last
// label or skip. Actions run one after another (a promise chain), so fast key presses keep their
// order. <body data-*> says where the page is (for people with devtools, and for the tests).
"use strict";

const state = {labels: [], queue: [], pos: 0, history: [], labelled: 0, actions: 0};
const body = document.body;
let chain = Promise.resolve();
let frameToken = 0;

function $(id) { return document.getElementById(id); }

function say(text) { $("status").textContent = text; }

function current() { return state.queue[state.pos] || null; }

async function load() {
  const reply = await fetch("/api/items", {cache: "no-store"});
  if (!reply.ok) { say("cannot read the faces (" + reply.status + ")"); return; }
  const data = await reply.json();
  state.labels = data.labels;
  state.queue = data.items.filter((item) => !item.label);
  state.queue.forEach((item) => { item.version = 0; });
  state.labelled = data.labelled;
  buildButtons();
  show();
  body.dataset.ready = "1";
}

function buildButtons() {
  const box = $("classes");
  box.textContent = "";
  state.labels.forEach((label, i) => {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.label = label;
    const key = document.createElement("kbd");
    key.textContent = String(i + 1);
    const share = document.createElement("span");
    share.className = "p";
    button.append(key, document.createTextNode(label), share);
    button.addEventListener("click", () => act(() => choose(label)));
    box.append(button);
  });
}

function show() {
  const item = current();
  body.dataset.position = String(state.pos);
  body.dataset.queue = String(state.queue.length);
  body.dataset.labelled = String(state.labelled);
  body.dataset.file = item ? item.file : "";
  body.dataset.guess = item ? item.guess : "";
  $("bar").max = Math.max(1, state.queue.length);
  $("bar").value = state.pos;
  $("done").hidden = item !== null;
  for (const id of ["face", "context", "choose"]) $(id).hidden = item === null;
  if (item === null) {
    $("progress").textContent = state.queue.length + " of " + state.queue.length + " done";
    return;
  }
  $("progress").textContent = (state.pos + 1) + " of " + state.queue.length;
  const query = "?file=" + encodeURIComponent(item.file) + "&v=" + item.version;
  $("crop").src = "/crop" + query;
  drawFrame("/frame" + query, item);
  for (const button of $("classes").children) {
    const label = button.dataset.label;
    button.classList.toggle("guess", label === item.guess);
    button.classList.toggle("chosen", label === item.label);
    button.disabled = !item.labels.includes(label);
    const p = (item.probabilities || {})[label];
    button.querySelector(".p").textContent = p === undefined ? "" : Math.round(p * 100) + "%";
  }
  $("model").textContent = "the model: " + item.guess + " (" + item.reason + "; its track: "
    + item.predicted + ")";
  $("where").textContent = "track " + item.track + ", "
    + new Date(item.time * 1000).toLocaleString();
}

function drawFrame(src, item) {
  const token = ++frameToken;
  const image = new Image();
  image.onload = () => {
    if (token !== frameToken) return;  // a later face is on show already
    const canvas = $("frame");
    canvas.width = image.naturalWidth;
    canvas.height = image.naturalHeight;
    const context = canvas.getContext("2d");
    context.drawImage(image, 0, 0);
    const [x1, y1, x2, y2] = item.box;
    context.lineWidth = Math.max(2, image.naturalWidth / 320);
    context.strokeStyle = "#ffd400";
    context.strokeRect(x1, y1, x2 - x1, y2 - y1);
    body.dataset.frameDrawn = item.file;
  };
  image.src = src;
}

async function post(path, data) {
  const reply = await fetch(path, {method: "POST", headers: {"Content-Type": "application/json"},
                                   body: JSON.stringify(data)});
  const answer = await reply.json().catch(() => ({}));
  if (!reply.ok) {
    say(answer.error || ("error " + reply.status));
    return null;
  }
  say("");
  return answer;
}

async function choose(label) {
  const item = current();
  if (item === null || !item.labels.includes(label)) return;
  const answer = await post("/api/label", {file: item.file, label: label});
  if (answer === null) return;
  item.label = label;
  item.version += 1;
  state.labelled = answer.labelled;
  state.history.push({kind: "label", pos: state.pos});
  state.pos += 1;
}

async function skip() {
  if (current() === null) return;
  state.history.push({kind: "skip", pos: state.pos});
  state.pos += 1;
}

async function undo() {
  const last = state.history.pop();
  if (last === undefined) return;
  const item = state.queue[last.pos];
  if (last.kind === "label") {
    const answer = await post("/api/undo", {file: item.file});
    if (answer === null) { state.history.push(last); return; }
    delete item.label;
    item.version += 1;
    state.labelled = answer.labelled;
  }
  state.pos = last.pos;
}

function act(action) {
  chain = chain.then(action).catch((error) => say(String(error))).then(() => {
    state.actions += 1;
    body.dataset.actions = String(state.actions);
    show();
  });
}

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey || body.dataset.ready !== "1") return;
  const key = event.key;
  if (/^[1-9]$/.test(key) && state.labels[Number(key) - 1] !== undefined) {
    act(() => choose(state.labels[Number(key) - 1]));
  } else if (key === "Enter") {
    act(() => { const item = current(); return item ? choose(item.guess) : null; });
  } else if (key === "s" || key === "S") {
    act(skip);
  } else if (key === "u" || key === "U") {
    act(undo);
  } else {
    return;
  }
  event.preventDefault();
});

load().catch((error) => say("cannot read the faces: " + error));
