// alexnet serve: the page. Vanilla JS, no framework, no CDN: everything it needs is served by the app itself.
"use strict";

const state = { run: null, runs: [], image: null, prediction: null, layer: null, map: null, loaded: {}, asked: {} };

// Answers can arrive out of order (a slow answer to an earlier click after a later one): each kind of request is
// numbered, and an answer that is not the latest of its kind is dropped.
function ask(kind) {
  const n = (state.asked[kind] || 0) + 1;
  state.asked[kind] = n;
  return () => state.asked[kind] === n;
}
const $ = (id) => document.getElementById(id);

// The token (non-loopback servers): taken from ?token= once; the server also keeps it in a same-site cookie, so
// <img> requests carry it without it appearing in their URLs.
const params = new URLSearchParams(location.search);
const token = params.get("token") || sessionStorage.getItem("alexnet-token") || "";
if (token) sessionStorage.setItem("alexnet-token", token);

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {}, token ? { "X-Alexnet-Token": token } : {});
  const response = await fetch(path, Object.assign({}, options, { headers }));
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) throw new Error((body && body.error) || `${response.status} ${response.statusText}`);
  return body;
}

function showError(error) {
  const box = $("message");
  box.textContent = String(error.message || error);
  box.hidden = false;
}
function clearError() { $("message").hidden = true; $("message").textContent = ""; }

const base = () => `/api/runs/${encodeURIComponent(state.run.id)}`;
const imageUrl = (id) => `${base()}/image/${encodeURIComponent(id)}`;
const camUrl = (id, cls) => `${base()}/gradcam?image=${encodeURIComponent(id)}&class=${cls}`;

function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child);
  return node;
}

function thumb(id, caption, box) {
  const node = el("div", { class: "thumb" }, [el("img", { src: imageUrl(id), alt: id, loading: "lazy" })]);
  if (box) {
    const [x, y, w, h] = box;
    node.append(el("div", { class: "box", style: `left:${x * 112}px;top:${y * 112}px;width:${w * 112}px;height:${h * 112}px` }));
  }
  node.append(el("div", { text: caption }));
  return node;
}

// --- views ------------------------------------------------------------------------------------------------------

function switchView(name) {
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("active", b.dataset.view === name);
  for (const s of document.querySelectorAll(".view")) s.hidden = s.id !== `view-${name}`;
  window.scrollTo(0, 0);  // a view opens at its top
  clearError();
  const load = { units: loadUnits, errors: loadErrors, map: loadMap, training: loadTraining }[name];
  if (load && !state.loaded[name]) {
    state.loaded[name] = true;
    const done = load().catch(showError);
    if (name === "units") unitsReady = done;
  }
}

// Predict
async function uploadFile(file) {
  clearError();
  try {
    const up = await api(`${base()}/upload`, {
      method: "POST", body: file,
      headers: { "Content-Type": file.type || "application/octet-stream", "X-Filename": encodeURIComponent(file.name) },
    });
    await predict(up.image);
  } catch (e) { showError(e); }
}

async function predict(imageId) {
  clearError();
  const latest = ask("predict");
  const p = await api(`${base()}/predict?image=${encodeURIComponent(imageId)}`);
  if (!latest()) return;
  state.image = imageId;
  state.prediction = p;
  $("result").hidden = false;
  $("input-img").src = imageUrl(imageId);
  $("true-label").textContent = p.true_label ? `(true class: ${p.true_label})` : "";
  $("cam-img").src = p.gradcam.png;
  $("cam-label").textContent = p.gradcam.label;
  $("cam-layer").textContent = `(at ${p.gradcam.layer})`;
  const list = $("top5");
  list.replaceChildren();
  p.top.forEach((t, i) => {
    const item = el("li", { "data-class": t.index, title: `Grad-CAM for ${t.label}` }, [
      el("span", { class: "label", text: t.label }),
      el("span", {}, [el("div", { class: "bar", style: `width:${(100 * t.prob).toFixed(1)}%` })]),
      el("span", { class: "prob", text: `${(100 * t.prob).toFixed(1)}%` }),
    ]);
    if (i === 0) item.classList.add("active");
    item.addEventListener("click", () => {
      for (const li of list.children) li.classList.remove("active");
      item.classList.add("active");
      $("cam-img").src = camUrl(imageId, t.index);
      $("cam-label").textContent = t.label;
    });
    list.append(item);
  });
  const tabs = $("layer-tabs");
  tabs.replaceChildren();
  for (const a of p.activations) {
    tabs.append(el("button", { "data-layer": a.layer, text: a.layer, onclick: () => showLayer(a.layer) }));
  }
  showLayer(state.layer && p.activations.some((a) => a.layer === state.layer) ? state.layer : p.activations[0].layer);
  const nb = $("neighbours");
  nb.replaceChildren();
  for (const n of p.neighbours) nb.append(thumb(n.image, `${n.label} · ${n.distance.toFixed(2)}`));
  if (!p.neighbours.length) nb.append(el("p", { class: "muted", text: "no index of the training images for this run" }));
}

function showLayer(layer) {
  const a = state.prediction.activations.find((x) => x.layer === layer);
  state.layer = layer;
  for (const b of $("layer-tabs").children) b.classList.toggle("active", b.dataset.layer === layer);
  const img = $("layer-img");
  img.src = a.png;
  $("layer-label").textContent = `${a.layer} (${a.type}) ${a.shape.join(" x ")}` + (a.formula ? `: ${a.formula}` : "") +
    (state.run.conv_layers.includes(layer) ? " (click a channel to see its top images)" : "");
  img.classList.toggle("clickable", state.run.conv_layers.includes(layer));
  img.onclick = (event) => {
    if (!state.run.conv_layers.includes(layer) || !state.run.has_index) return;
    const channel = channelAt(img, a.grid, event);
    if (channel !== null) { switchView("units"); waitUnits().then(() => showUnit(layer, channel)).catch(showError); }
  };
}

// The channel under a click on a grid image drawn with `grid` (cols, cell_w, cell_h, pad, scale).
function channelAt(img, g, event) {
  const rect = img.getBoundingClientRect(), scale = g.scale || 1;
  const px = ((event.clientX - rect.left) / rect.width) * img.naturalWidth / scale;
  const py = ((event.clientY - rect.top) / rect.height) * img.naturalHeight / scale;
  const col = Math.floor((px - g.pad) / (g.cell_w + g.pad)), row = Math.floor((py - g.pad) / (g.cell_h + g.pad));
  const channel = row * g.cols + col;
  return col >= 0 && col < g.cols && channel >= 0 && channel < g.channels ? channel : null;
}

let unitsReady = null;
const waitUnits = () => unitsReady || Promise.resolve();

// Filters and units
async function loadUnits() {
  const f = await api(`${base()}/filters`);
  state.filters = f.grid;
  const img = $("filters");
  img.src = f.png;
  img.onclick = (event) => {
    const channel = channelAt(img, f.grid, event);
    if (channel !== null) showUnit("conv1", channel).catch(showError);
  };
  const select = $("unit-layer");
  select.replaceChildren(...state.run.conv_layers.map((l) => el("option", { value: l, text: l })));
  select.onchange = () => { fillChannels(); showUnit(select.value, 0).catch(showError); };
  fillChannels();
  if (state.run.has_index) await showUnit("conv1", 0);
}

function fillChannels() {
  const layer = $("unit-layer").value;
  const info = state.run.layers.find((l) => l.layer === layer);
  const chips = $("unit-channels");
  chips.replaceChildren();
  for (let c = 0; c < info.shape[0]; c++) {
    chips.append(el("button", { "data-channel": c, text: c, onclick: () => showUnit(layer, c).catch(showError) }));
  }
}

async function showUnit(layer, channel) {
  $("unit-layer").value = layer;
  $("unit-channel").value = channel;
  const latest = ask("unit");
  const u = await api(`${base()}/units?layer=${layer}&channel=${channel}`);
  if (!latest()) return;
  for (const b of $("unit-channels").children) b.classList.toggle("active", Number(b.dataset.channel) === channel);
  $("unit-title").textContent = `${layer}, channel ${channel}: the ${u.images.length} validation images that excite it most; ` +
    `the yellow box is the receptive field (${u.receptive_field} px) of the strongest position`;
  const box = $("unit-images");
  box.replaceChildren(...u.images.map((i) => thumb(i.image, `${i.label} · ${i.value.toFixed(2)}`, i.box)));
}

// Errors
async function loadErrors() {
  const c = await api(`${base()}/confusion`);
  $("accuracy").textContent = `(top-1 ${(100 * c.accuracy).toFixed(1)}% of ${c.total})`;
  const table = $("confusion");
  table.replaceChildren();
  table.append(el("tr", {}, [el("th", { text: "true \\ pred" }), ...c.classes.map((n) => el("th", { text: n, title: n }))]));
  const peak = Math.max(1, ...c.matrix.flat());
  c.matrix.forEach((row, t) => {
    table.append(el("tr", {}, [el("th", { text: c.classes[t], title: c.classes[t] }), ...row.map((v, p) => {
      const shade = v ? 0.12 + 0.6 * (v / peak) : 0;
      const td = el("td", { text: v, "data-true": t, "data-pred": p, class: t === p ? "diag" : "",
        style: `background: rgba(${t === p ? "47,111,222" : "179,38,30"},${shade.toFixed(2)})` });
      td.addEventListener("click", () => openCell(t, p, td).catch(showError));
      return td;
    })]));
  });
}

async function openCell(t, p, td) {
  for (const cell of document.querySelectorAll("#confusion td.active")) cell.classList.remove("active");
  td.classList.add("active");
  const latest = ask("cell");
  const c = await api(`${base()}/confusion/${t}/${p}`);
  if (!latest()) return;
  $("cell-title").textContent = `true ${c.true}, predicted ${c.predicted}: ${c.count} image(s)` +
    (c.count > c.images.length ? ` (first ${c.images.length})` : "");
  $("cell-images").replaceChildren(...c.images.map((i) => el("div", { class: "card" }, [
    el("img", { src: imageUrl(i.image), alt: i.image, loading: "lazy" }),
    el("img", { src: camUrl(i.image, i.top[0].index), alt: `Grad-CAM ${i.image}`, loading: "lazy" }),
    el("div", { text: i.top.map((x) => `${x.label} ${(100 * x.prob).toFixed(1)}%`).join(" · ") }),
  ])));
  if (!c.images.length) $("cell-images").append(el("p", { class: "muted", text: "no images in this cell" }));
}

// Map
const colour = (i, n) => `hsl(${Math.round((360 * i) / Math.max(n, 1))}, 70%, 48%)`;

async function loadMap() {
  const latest = ask("map");
  const m = await api(`${base()}/map?method=${$("map-method").value}`);
  if (!latest()) return;
  state.map = m;
  const canvas = $("map-canvas"), ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, pad = 24;
  ctx.clearRect(0, 0, W, H);
  m.screen = m.points.map(([x, y]) => [pad + ((x + 1) / 2) * (W - 2 * pad), pad + ((1 - y) / 2) * (H - 2 * pad)]);
  m.screen.forEach(([x, y], i) => {
    ctx.beginPath();
    ctx.arc(x, y, 4, 0, 2 * Math.PI);
    ctx.fillStyle = colour(m.labels[i], m.classes.length);
    ctx.fill();
    if (m.labels[i] !== m.predicted[i]) { ctx.lineWidth = 2; ctx.strokeStyle = "#000"; ctx.stroke(); }
  });
  $("map-legend").replaceChildren(...m.classes.map((n, i) => el("span", {}, [el("i", { style: `background:${colour(i, m.classes.length)}` }), n])));
  window.alexnetMap = m; // for the browser tests: where each point was drawn
}

function hoverMap(event) {
  const m = state.map, canvas = $("map-canvas"), tip = $("map-tip");
  if (!m) return;
  const rect = canvas.getBoundingClientRect();
  const x = ((event.clientX - rect.left) / rect.width) * canvas.width, y = ((event.clientY - rect.top) / rect.height) * canvas.height;
  let best = -1, bestD = 64;
  m.screen.forEach(([px, py], i) => { const d = (px - x) ** 2 + (py - y) ** 2; if (d < bestD) { bestD = d; best = i; } });
  if (best < 0) { tip.hidden = true; return; }
  const wrong = m.labels[best] !== m.predicted[best];
  tip.querySelector("img").src = imageUrl(m.images[best]);
  tip.querySelector("span").textContent = `${m.images[best]}: ${m.classes[m.labels[best]]}` + (wrong ? `, predicted ${m.classes[m.predicted[best]]}` : "");
  tip.dataset.image = m.images[best];
  tip.style.left = `${(m.screen[best][0] / canvas.width) * rect.width + 12}px`;
  tip.style.top = `${(m.screen[best][1] / canvas.height) * rect.height + 12}px`;
  tip.hidden = false;
}

// Training
async function loadTraining() {
  const t = await api(`${base()}/training`);
  $("config").textContent = t.config;
  const curves = $("curves");
  curves.replaceChildren();
  if (t.metrics.length) {
    curves.append(chart(t.metrics, [["train_loss", "train loss"], ["val_loss", "val loss"]], "loss"));
    curves.append(chart(t.metrics, [["train_acc", "train acc"], ["val_top1", "val top-1"], ["val_top5", "val top-5"]], "accuracy"));
  } else curves.append(el("p", { class: "muted", text: t.metrics_problem || "no epochs yet" }));
  const studies = $("studies");
  studies.replaceChildren(...t.studies.map((s) => el("details", {}, [el("summary", { text: s.name }), el("pre", { text: s.text })])));
  if (!t.studies.length) studies.append(el("p", { class: "muted", text: "no studies of this run (alexnet ablate)" }));
}

function chart(rows, series, title) {
  const NS = "http://www.w3.org/2000/svg", W = 420, H = 270, L = 44, B = 30, T = 30, R = 10;
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("width", W); svg.setAttribute("height", H); svg.setAttribute("role", "img"); svg.setAttribute("aria-label", title);
  const add = (tag, attrs, text) => { const n = document.createElementNS(NS, tag); for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v); if (text !== undefined) n.textContent = text; svg.append(n); return n; };
  const xs = rows.map((r) => r.epoch);
  const ys = series.flatMap(([k]) => rows.map((r) => r[k]).filter((v) => typeof v === "number"));
  const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1), y0 = Math.min(0, ...ys), y1 = Math.max(...ys, y0 + 1e-6);
  const sx = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R), sy = (y) => H - B - ((y - y0) / (y1 - y0)) * (H - B - T);
  add("text", { x: L, y: 14, "font-size": 12 }, title);
  add("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#999" });
  add("line", { x1: L, y1: T, x2: L, y2: H - B, stroke: "#999" });
  add("text", { x: W / 2, y: H - 6, "font-size": 11, "text-anchor": "middle" }, "epoch");
  for (const v of [y0, (y0 + y1) / 2, y1]) add("text", { x: L - 4, y: sy(v) + 4, "font-size": 10, "text-anchor": "end" }, v.toFixed(2));
  series.forEach(([key, name], i) => {
    const pts = rows.filter((r) => typeof r[key] === "number").map((r) => `${sx(r.epoch)},${sy(r[key])}`);
    if (!pts.length) return;
    const c = ["#2f6fde", "#d9822b", "#3a9d5d"][i % 3];
    add("polyline", { points: pts.join(" "), fill: "none", stroke: c, "stroke-width": 2 });
    for (const pt of pts) { const [cx, cy] = pt.split(","); add("circle", { cx, cy, r: 3, fill: c }); }
    add("text", { x: W - R - 90, y: T + 14 * i + 4, "font-size": 11, fill: c }, name);
  });
  return svg;
}

// --- start ------------------------------------------------------------------------------------------------------

async function selectRun(id) {
  state.run = state.runs.find((r) => r.id === id);
  state.loaded = {};
  state.map = null;
  $("result").hidden = true;
  $("val-count").textContent = state.run.has_data ? `of ${state.run.num_val}` : `(no data: ${state.run.data_problem})`;
  $("val-index").max = Math.max(0, state.run.num_val - 1);
  if (!state.run.has_index && state.run.index_problem) showError(state.run.index_problem);
  const active = document.querySelector("#tabs button.active").dataset.view;
  switchView(active);
}

async function start() {
  const { runs } = await api("/api/runs");
  state.runs = runs;
  $("run").replaceChildren(...runs.map((r) => el("option", { value: r.id, text: `${r.name} (${r.model})` })));
  $("run").onchange = () => selectRun($("run").value);
  for (const b of document.querySelectorAll("#tabs button")) b.addEventListener("click", () => switchView(b.dataset.view));
  $("file").addEventListener("change", (e) => { if (e.target.files[0]) uploadFile(e.target.files[0]); });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); if (e.dataTransfer.files[0]) uploadFile(e.dataTransfer.files[0]); });
  $("val-go").addEventListener("click", () => predict(`val:${$("val-index").value}`).catch(showError));
  $("val-random").addEventListener("click", () => {
    $("val-index").value = Math.floor(Math.random() * Math.max(1, state.run.num_val));
    predict(`val:${$("val-index").value}`).catch(showError);
  });
  $("unit-go").addEventListener("click", () => showUnit($("unit-layer").value, Number($("unit-channel").value)).catch(showError));
  $("map-method").addEventListener("change", () => loadMap().catch(showError));
  $("map-canvas").addEventListener("mousemove", hoverMap);
  $("map-canvas").addEventListener("mouseleave", () => { $("map-tip").hidden = true; });
  await selectRun(runs[0].id);
  document.body.dataset.ready = "1";
}

start().catch(showError);
