// The page of `inceptionnet serve`: no framework, no build step; everything comes from this server.
"use strict";

const $ = (id) => document.getElementById(id);
let model = null;   // GET /v1/models
let image = null;   // the File being shown
const KEY = "inceptionnet-api-key";  // sessionStorage: asked once per tab, gone when it closes

function auth() {
  const key = sessionStorage.getItem(KEY);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

// Resolves once the user has typed a key (after a 401); the caller retries with it.
function askKey(message) {
  sessionStorage.removeItem(KEY);
  $("key-box").hidden = false;
  status(message, true);
  $("key").focus();
  return new Promise((resolve) => {
    $("key-form").onsubmit = (ev) => {
      ev.preventDefault();
      sessionStorage.setItem(KEY, $("key").value.trim());
      $("key").value = "";
      $("key-box").hidden = true;
      status("");
      resolve();
    };
  });
}

// fetch with the key; a 401 asks for it (once, then again only if the server refuses it) and retries.
async function authed(path, options = {}) {
  for (;;) {
    const r = await fetch(path, { ...options, headers: { ...(options.headers || {}), ...auth() } });
    if (r.status !== 401) return r;
    const body = await r.json().catch(() => ({}));
    await askKey(body.error || "this server needs an API key");
  }
}

function status(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

async function call(path, form) {
  const r = await authed(path, { method: "POST", body: form });
  const body = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
  if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
  return body;
}

function formFor(extra = {}) {
  const form = new FormData();
  form.append("file", image, image.name || "image");
  form.append("invert", $("invert").checked ? "true" : "false");
  for (const [k, v] of Object.entries(extra)) form.append(k, v);
  return form;
}

function showTop(rows) {
  const list = $("top");
  list.replaceChildren();
  for (const row of rows) {
    const li = document.createElement("li");
    li.dataset.index = row.index;
    const name = document.createElement("span");
    name.className = "label";
    name.textContent = row.label;
    const track = document.createElement("div");
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.style.width = `${(100 * row.prob).toFixed(1)}%`;
    track.append(bar);
    const prob = document.createElement("span");
    prob.className = "prob";
    prob.textContent = `${(100 * row.prob).toFixed(1)}%`;
    li.append(name, track, prob);
    li.addEventListener("click", () => { $("target").value = String(row.index); explain(); });
    list.append(li);
  }
  $("top1").textContent = rows[0].label;
  $("answer").hidden = false;
}

function markChosen(index) {
  for (const li of $("top").children) li.classList.toggle("chosen", li.dataset.index === String(index));
}

async function explain() {
  if (!image || !model.explain) return;
  const extra = { target: $("target").value };
  if (model.blocks.length) extra.block = $("block").value;
  status("explaining…");
  try {
    const e = await call("/v1/explain", formFor(extra));
    $("input").src = e.input_png;
    $("cam").src = e.cam_png;
    $("cam-layer").textContent = `(at ${e.cam_layer})`;
    $("target").value = String(e.target.index);
    markChosen(e.target.index);
    $("pictures").hidden = false;
    showBranches(e);
    status(`${e.file}: Grad-CAM of ${e.target.label}`);
  } catch (err) {
    status(err.message, true);
  }
}

function showBranches(e) {
  const grid = $("branch-grid");
  grid.replaceChildren();
  for (const [i, b] of e.branches.entries()) {
    const fig = document.createElement("figure");
    const img = document.createElement("img");
    img.className = "branch";
    img.src = b.png;
    img.alt = `branch${i + 1}`;
    const cap = document.createElement("figcaption");
    cap.textContent = `branch${i + 1}: ${b.label} — ${(100 * b.share).toFixed(0)}% of the energy`;
    fig.append(img, cap);
    grid.append(fig);
  }
  $("branches").hidden = e.branches.length === 0;
}

// POST /v1/feature_maps: the chosen layer's channels as one gray grid PNG, beside Grad-CAM.
async function featureMaps() {
  if (!image || !model.explain) return;
  const layer = $("layer").value;
  status(`feature maps of ${layer}…`);
  try {
    const r = await authed("/v1/feature_maps", { method: "POST", body: formFor({ layer }) });
    if (!r.ok) {
      const body = await r.json().catch(() => ({}));
      throw new Error(body.error || `HTTP ${r.status}`);
    }
    const old = $("fmap").src;
    $("fmap").src = URL.createObjectURL(await r.blob());
    if (old.startsWith("blob:")) URL.revokeObjectURL(old);
    $("fmap-shape").textContent = `(${r.headers.get("X-Feature-Maps-Shape") || "?"}: channels x height x width)`;
    status(`${image.name}: feature maps of ${layer}`);
  } catch (err) {
    status(err.message, true);
  }
}

async function loadLayers() {
  const r = await authed("/v1/feature_maps/layers");
  if (!r.ok) return;
  const body = await r.json();
  for (const name of body.layers) $("layer").add(new Option(name, name));
  if (body.default) $("layer").value = body.default;
  $("fmap-figure").hidden = body.layers.length === 0;
}

async function show(file) {
  image = file;
  status(`classifying ${file.name}…`);
  try {
    const p = await call("/v1/predict", formFor({ topk: String(Math.min(5, model.classes.length)) }));
    showTop(p.results[0].top);
    $("target").value = String(p.results[0].top[0].index);
    status(`${file.name}: ${p.results[0].top[0].label}`);
  } catch (err) {
    status(err.message, true);
    return;
  }
  await explain();
  if ($("fmap").src) await featureMaps();  // the grid was open: show the new image's
}

async function start() {
  const r = await authed("/v1/models");
  model = (await r.json()).models[0];
  const size = model.input.input_size;
  $("model").textContent = `${model.name} (weights ${model.weights}; ${model.backend}, ${model.dtype}; ` +
    `${size}x${size}, ${model.input.in_chans} channel${model.input.in_chans > 1 ? "s" : ""})`;
  for (const [i, c] of model.classes.entries()) $("target").add(new Option(c, String(i)));
  for (const b of model.blocks) $("block").add(new Option(b, b));
  if (model.default_block) $("block").value = model.default_block;
  $("cam-figure").hidden = !model.explain;
  $("target").addEventListener("change", explain);
  $("block").addEventListener("change", explain);
  $("fmap-button").addEventListener("click", featureMaps);
  $("layer").addEventListener("change", featureMaps);
  if (model.explain) await loadLayers();
  $("invert").addEventListener("change", () => image && show(image));
  $("file").addEventListener("change", () => $("file").files[0] && show($("file").files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    drop.classList.remove("over");
    if (ev.dataTransfer.files[0]) show(ev.dataTransfer.files[0]);
  });
  status("ready");
}

start().catch((err) => status(`cannot reach the server: ${err.message}`, true));
