// The channel explorer: the Task 2 network (encoder, classifier head, both decoders) in plain
// JavaScript over the float32 weights embedded in this page. Tensors are flat Float32Arrays in
// channel-major (C, H, W) order, as in PyTorch; sums run in float64 and are stored as float32.
"use strict";

const DATA = JSON.parse(document.getElementById("explorer-data").textContent);

function bytesOf(base64) {
  const text = atob(base64);
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
  return out;
}

function floatsOf(encoded) {
  return { shape: encoded.shape, data: new Float32Array(bytesOf(encoded.data).buffer) };
}

const W = {};
for (const [name, layer] of Object.entries(DATA.weights)) {
  W[name] = { weight: floatsOf(layer.weight), bias: floatsOf(layer.bias) };
}
const PIXELS = bytesOf(DATA.pixels);
const IMAGE_SIZE = 3 * 32 * 32;

// --- the network ---

function conv2d(x, C, H, Wd, layer) {
  const [O, , k] = layer.weight.shape;
  const w = layer.weight.data, b = layer.bias.data;
  const OH = H - k + 1, OW = Wd - k + 1;
  const out = new Float32Array(O * OH * OW);
  for (let o = 0; o < O; o++) {
    for (let y = 0; y < OH; y++) {
      for (let xx = 0; xx < OW; xx++) {
        let s = b[o];
        for (let c = 0; c < C; c++) {
          for (let ky = 0; ky < k; ky++) {
            const row = (c * H + y + ky) * Wd + xx, wrow = ((o * C + c) * k + ky) * k;
            for (let kx = 0; kx < k; kx++) s += x[row + kx] * w[wrow + kx];
          }
        }
        out[(o * OH + y) * OW + xx] = s;
      }
    }
  }
  return out;
}

function relu(x) {
  for (let i = 0; i < x.length; i++) if (x[i] < 0) x[i] = 0;
  return x;
}

// 2x2 max-pool, stride 2, with PyTorch's switches: the flat index in the (H, W) plane of the
// first maximum in row-major order within each window (a later equal value does not win).
function maxPool(x, C, H, Wd) {
  const OH = H >> 1, OW = Wd >> 1;
  const z = new Float32Array(C * OH * OW), index = new Int32Array(C * OH * OW);
  for (let c = 0; c < C; c++) {
    for (let i = 0; i < OH; i++) {
      for (let j = 0; j < OW; j++) {
        let best = -Infinity, where = (2 * i) * Wd + 2 * j;
        for (let dy = 0; dy < 2; dy++) {
          for (let dx = 0; dx < 2; dx++) {
            const p = (2 * i + dy) * Wd + 2 * j + dx, v = x[c * H * Wd + p];
            if (v > best || Number.isNaN(v)) { best = v; where = p; }
          }
        }
        z[(c * OH + i) * OW + j] = best;
        index[(c * OH + i) * OW + j] = where;
      }
    }
  }
  return { z, index };
}

function linear(x, layer) {
  const [O, I] = layer.weight.shape;
  const w = layer.weight.data, b = layer.bias.data;
  const out = new Float32Array(O);
  for (let o = 0; o < O; o++) {
    let s = b[o];
    for (let i = 0; i < I; i++) s += w[o * I + i] * x[i];
    out[o] = s;
  }
  return out;
}

function normalize(pixels) {
  // the tutorial's ToTensor then Normalize(0.5, 0.5), in float32 as PyTorch computes it
  const x = new Float32Array(pixels.length);
  for (let i = 0; i < pixels.length; i++) {
    x[i] = Math.fround(Math.fround(Math.fround(pixels[i] / 255) - 0.5) / 0.5);
  }
  return x;
}

function encode(pixels) {
  const first = maxPool(relu(conv2d(normalize(pixels), 3, 32, 32, W.conv1)), 6, 28, 28);
  const second = maxPool(relu(conv2d(first.z, 6, 14, 14, W.conv2)), 16, 10, 10);
  return { z1: first.z, index1: first.index, z2: second.z, index2: second.index };
}

function classifyLatents(latents) {
  const logits = linear(relu(linear(relu(linear(latents.z2, W.fc1)), W.fc2)), W.fc3);
  const top = Math.max(...logits);
  const e = Array.from(logits, v => Math.exp(v - top));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map(v => v / sum);
}

function unpool(z, index, C, H, Wd) {
  const out = new Float32Array(C * H * Wd), n = z.length / C;
  for (let c = 0; c < C; c++) {
    for (let i = 0; i < n; i++) out[c * H * Wd + index[c * n + i]] = z[c * n + i];
  }
  return out;
}

function convTranspose2d(x, C, H, Wd, layer) {
  const [, O, k] = layer.weight.shape;  // (in, out, k, k)
  const w = layer.weight.data, b = layer.bias.data;
  const OH = H + k - 1, OW = Wd + k - 1;
  const sum = new Float64Array(O * OH * OW);
  for (let o = 0; o < O; o++) sum.fill(b[o], o * OH * OW, (o + 1) * OH * OW);
  for (let c = 0; c < C; c++) {
    for (let y = 0; y < H; y++) {
      for (let xx = 0; xx < Wd; xx++) {
        const v = x[(c * H + y) * Wd + xx];
        if (v === 0) continue;  // unpooled maps are three-quarters zeros
        for (let o = 0; o < O; o++) {
          for (let ky = 0; ky < k; ky++) {
            const row = (o * OH + y + ky) * OW + xx, wrow = ((c * O + o) * k + ky) * k;
            for (let kx = 0; kx < k; kx++) sum[row + kx] += v * w[wrow + kx];
          }
        }
      }
    }
  }
  return Float32Array.from(sum);
}

function keepChannels(z, C, channels) {
  const out = new Float32Array(z.length), n = z.length / C;
  for (const c of channels) out.set(z.subarray(c * n, (c + 1) * n), c * n);
  return out;
}

// Decode z`layer` keeping only `channels` (the rest zero), with the image's own switches:
// z1 through the layer-1 decoder Task 3 refits on the real z1, z2 through Task 2's decoder.
function decodeLatents(latents, layer, channels) {
  if (layer === 1) {
    const h = relu(unpool(keepChannels(latents.z1, 6, channels), latents.index1, 6, 28, 28));
    return convTranspose2d(h, 6, 28, 28, W.deconv1_refit);
  }
  const h2 = relu(unpool(keepChannels(latents.z2, 16, channels), latents.index2, 16, 10, 10));
  const z1 = convTranspose2d(h2, 16, 10, 10, W.deconv2);
  const h1 = relu(unpool(z1, latents.index1, 6, 28, 28));
  return convTranspose2d(h1, 6, 28, 28, W.deconv1);
}

function psnr(decoded, pixels) {
  let squared = 0;
  for (let i = 0; i < decoded.length; i++) {
    const v = Math.min(1, Math.max(0, decoded[i] * 0.5 + 0.5)) - pixels[i] / 255;
    squared += v * v;
  }
  return 10 * Math.log10(1 / Math.max(squared / decoded.length, 1e-12));
}

// --- state ---

const COUNTS = { 1: 6, 2: 16 };
const images = DATA.images;
const cache = new Map();  // image position -> {latents, probabilities}
const state = { image: DATA.start, own: null, layer: 1, channels: [0, 1, 2, 3, 4, 5],
                contribution: false, card: 0 };

function pixelsAt(i) {
  if (!Number.isInteger(i) || i < 0 || i >= images.length) {
    throw new RangeError(`no image ${i}; there are ${images.length}`);
  }
  return PIXELS.subarray(i * IMAGE_SIZE, (i + 1) * IMAGE_SIZE);
}

function analysed(i) {
  if (!cache.has(i)) {
    const latents = encode(pixelsAt(i));
    cache.set(i, { latents, probabilities: classifyLatents(latents) });
  }
  return cache.get(i);
}

function current() {
  return state.own || { pixels: pixelsAt(state.image), ...analysed(state.image) };
}

// --- drawing ---

function drawImage(canvas, rgb) {  // rgb: 3x32x32 values in [0, 1]
  const ctx = canvas.getContext("2d"), image = ctx.createImageData(32, 32);
  for (let p = 0; p < 1024; p++) {
    for (let c = 0; c < 3; c++) image.data[4 * p + c] = Math.round(255 * Math.min(1, Math.max(0, rgb[c * 1024 + p])));
    image.data[4 * p + 3] = 255;
  }
  ctx.putImageData(image, 0, 0);
}

function drawPixels(canvas, pixels, size) {
  canvas.width = canvas.height = size;
  const ctx = canvas.getContext("2d"), image = ctx.createImageData(size, size), n = size * size;
  for (let p = 0; p < n; p++) {
    for (let c = 0; c < 3; c++) image.data[4 * p + c] = pixels[c * n + p];
    image.data[4 * p + 3] = 255;
  }
  ctx.putImageData(image, 0, 0);
}

const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
function viridis(t) {
  const x = Math.min(1, Math.max(0, t)) * (VIRIDIS.length - 1), i = Math.min(Math.floor(x), VIRIDIS.length - 2);
  return VIRIDIS[i].map((a, k) => Math.round(a + (VIRIDIS[i + 1][k] - a) * (x - i)));
}

function drawMap(canvas, values, size) {
  canvas.width = canvas.height = size;
  const ctx = canvas.getContext("2d"), image = ctx.createImageData(size, size);
  const top = Math.max(...values, 1e-12);
  values.forEach((v, p) => {
    const [r, g, b] = viridis(v / top);
    image.data.set([r, g, b, 255], 4 * p);
  });
  ctx.putImageData(image, 0, 0);
}

const $ = id => document.getElementById(id);
const className = k => DATA.classes[k];

function imageTitle() {
  if (state.own) return "your image";
  const entry = images[state.image];
  return `${entry.split} image ${entry.index}: ${className(entry.label)}` + (entry.note ? ` (${entry.note})` : "");
}

function render() {
  const now = current();
  drawImage($("original"), Array.from(now.pixels, v => v / 255));
  const full = decodeLatents(now.latents, state.layer, [...Array(COUNTS[state.layer]).keys()]);
  drawImage($("full-decode"), full.map(v => v * 0.5 + 0.5));
  $("full-caption").textContent = `all ${COUNTS[state.layer]} channels: ${psnr(full, now.pixels).toFixed(2)} dB`;
  const selected = decodeLatents(now.latents, state.layer, state.channels);
  if (state.contribution) {
    const empty = decodeLatents(now.latents, state.layer, []);
    const d = selected.map((v, i) => v - empty[i]);
    const scale = Math.max(...d.map(Math.abs), 1e-12);
    drawImage($("selected-decode"), d.map(v => 0.5 + v / (2 * scale)));
  } else {
    drawImage($("selected-decode"), selected.map(v => v * 0.5 + 0.5));
  }
  $("selected-caption").textContent = state.channels.length
    ? `channels ${state.channels.join(", ")}` + (state.contribution ? " (contribution)" : "")
    : "no channel (empty latent)";
  $("image-title").textContent = imageTitle();
  const ranked = now.probabilities.map((p, k) => [p, k]).sort((a, b) => b[0] - a[0]).slice(0, 3);
  $("top3").innerHTML = "";
  for (const [p, k] of ranked) {
    const li = document.createElement("li");
    li.textContent = `${className(k)}: ${(100 * p).toFixed(1)} %`;
    $("top3").append(li);
  }
  $("decoder-note").textContent = `z${state.layer} decoded by ${DATA.decoders["z" + state.layer]}; ` +
    "click a map to toggle its channel, hover a cell to see its receptive field.";
  renderMaps(now.latents);
  renderCard();
  for (const thumb of document.querySelectorAll("#gallery canvas")) {
    thumb.classList.toggle("selected", !state.own && Number(thumb.dataset.i) === state.image);
  }
  if (!state.own) {
    history.replaceState(null, "", `#img=${state.image}&z=${state.layer}&ch=${state.channels.join(",")}`);
  }
}

function renderMaps(latents) {
  const maps = $("maps");
  maps.innerHTML = "";
  const count = COUNTS[state.layer], z = state.layer === 1 ? latents.z1 : latents.z2;
  const side = state.layer === 1 ? 14 : 5, n = side * side;
  const energy = [...Array(count).keys()].map(c => z.subarray(c * n, (c + 1) * n).reduce((a, v) => a + v * v, 0));
  const total = energy.reduce((a, b) => a + b, 0) || 1;
  for (let c = 0; c < count; c++) {
    const box = document.createElement("div");
    box.className = "map" + (state.channels.includes(c) ? " on" : "");
    const canvas = document.createElement("canvas");
    canvas.dataset.channel = c;
    drawMap(canvas, Array.from(z.subarray(c * n, (c + 1) * n)), side);
    canvas.title = `z${state.layer} channel ${c}: click to switch it on or off`;
    canvas.addEventListener("click", () => toggle(c));
    canvas.addEventListener("mousemove", event => showField(event, canvas, side));
    canvas.addEventListener("mouseleave", () => { $("field-box").hidden = true; });
    const label = document.createElement("div");
    label.innerHTML = `<input type="checkbox" class="toggle" data-channel="${c}" ${state.channels.includes(c) ? "checked" : ""}> ch ${c} · ${(100 * energy[c] / total).toFixed(0)} % `;
    label.querySelector("input").addEventListener("change", () => toggle(c));
    const only = document.createElement("button");
    only.type = "button";
    only.textContent = "only";
    only.addEventListener("click", () => { state.channels = [c]; state.card = c; render(); });
    label.append(only);
    box.append(canvas, label);
    box.addEventListener("mouseenter", () => { if (state.card !== c) { state.card = c; renderCard(); } });
    maps.append(box);
  }
}

function showField(event, canvas, side) {
  const rect = canvas.getBoundingClientRect();
  const j = Math.min(side - 1, Math.floor((event.clientX - rect.left) / rect.width * side));
  const i = Math.min(side - 1, Math.floor((event.clientY - rect.top) / rect.height * side));
  const [size, stride] = DATA.receptive_field["z" + state.layer];
  const scale = $("original").getBoundingClientRect().width / 32, box = $("field-box");
  box.style.left = `${1 + j * stride * scale}px`;
  box.style.top = `${1 + i * stride * scale}px`;
  box.style.width = box.style.height = `${size * scale}px`;
  box.hidden = false;
}

function toggle(c) {
  state.channels = state.channels.includes(c)
    ? state.channels.filter(x => x !== c) : [...state.channels, c].sort((a, b) => a - b);
  state.card = c;
  render();
}

function renderCard() {
  const card = DATA.cards["z" + state.layer][state.card];
  if (!card) return;
  $("card-title").textContent = `z${state.layer} channel ${card.channel}`;
  $("card-finding").textContent = card.finding;
  const patches = $("card-patches");
  patches.innerHTML = "";
  card.patches.forEach((encoded, k) => {
    const canvas = document.createElement("canvas");
    drawPixels(canvas, bytesOf(encoded), card.patch_size);
    canvas.title = `top-9 test patch ${k + 1}: ${card.patch_classes[k]}`;
    patches.append(canvas);
  });
  const rows = Object.entries(card.top_k_classes).sort((a, b) => b[1] - a[1]);
  $("card-classes").innerHTML = `<caption>classes of its top-${card.top_k} test images</caption>` +
    rows.map(([name, share]) => `<tr><td>${name}</td><td>${share.toFixed(0)} %</td>` +
      `<td><span class="bar" style="width:${share}px"></span></td></tr>`).join("");
  $("card-correlations").innerHTML = "<caption>correlation with local image measures</caption>" +
    Object.entries(card.correlations).map(([name, r]) => `<tr><td>${name}</td><td>${r.toFixed(2)}</td></tr>`).join("");
}

// --- gallery, filters, own images, deep links ---

function buildGallery() {
  const select = $("class-filter");
  DATA.classes.forEach((name, k) => select.add(new Option(name, String(k))));
  images.forEach((entry, i) => {
    const canvas = document.createElement("canvas");
    drawPixels(canvas, pixelsAt(i), 32);
    canvas.dataset.i = i;
    const predicted = analysed(i).probabilities.indexOf(Math.max(...analysed(i).probabilities));
    canvas.dataset.right = String(predicted === entry.label);
    canvas.classList.toggle("wrong", predicted !== entry.label);
    canvas.title = `${entry.split} ${entry.index}: ${className(entry.label)}, predicted ${className(predicted)}`;
    canvas.addEventListener("click", () => { state.own = null; state.image = i; render(); });
    $("gallery").append(canvas);
  });
  const filter = () => {
    const cls = $("class-filter").value, right = $("correct-filter").value;
    for (const canvas of $("gallery").children) {
      const entry = images[Number(canvas.dataset.i)];
      const ok = (cls === "all" || String(entry.label) === cls) &&
        (right === "all" || (right === "right") === (canvas.dataset.right === "true"));
      canvas.hidden = !ok;
    }
  };
  $("class-filter").addEventListener("change", filter);
  $("correct-filter").addEventListener("change", filter);
}

async function loadOwn(file) {
  const bitmap = await createImageBitmap(file);
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = 32;
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(bitmap, 0, 0, 32, 32);
  const rgba = ctx.getImageData(0, 0, 32, 32).data, pixels = new Uint8Array(IMAGE_SIZE);
  for (let p = 0; p < 1024; p++) for (let c = 0; c < 3; c++) pixels[c * 1024 + p] = rgba[4 * p + c];
  const latents = encode(pixels);
  state.own = { pixels, latents, probabilities: classifyLatents(latents) };
  render();
}

function readHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  const i = Number(params.get("img")), layer = Number(params.get("z"));
  if (params.has("img") && Number.isInteger(i) && i >= 0 && i < images.length) state.image = i;
  if (layer === 1 || layer === 2) state.layer = layer;
  state.channels = [...Array(COUNTS[state.layer]).keys()];
  if (params.has("ch")) {
    state.channels = params.get("ch").split(",").filter(s => s !== "").map(Number)
      .filter(c => Number.isInteger(c) && c >= 0 && c < COUNTS[state.layer]);
  }
  for (const radio of document.querySelectorAll("input[name=layer]")) radio.checked = Number(radio.value) === state.layer;
}

function setUp() {
  buildGallery();
  readHash();
  for (const radio of document.querySelectorAll("input[name=layer]")) {
    radio.addEventListener("change", () => {
      state.layer = Number(radio.value);
      state.channels = [...Array(COUNTS[state.layer]).keys()];
      state.card = 0;
      render();
    });
  }
  $("all-channels").addEventListener("click", () => { state.channels = [...Array(COUNTS[state.layer]).keys()]; render(); });
  $("no-channels").addEventListener("click", () => { state.channels = []; render(); });
  $("contribution").addEventListener("change", event => { state.contribution = event.target.checked; render(); });
  $("own-file").addEventListener("change", event => { if (event.target.files[0]) loadOwn(event.target.files[0]); });
  const drop = $("drop");
  drop.addEventListener("dragover", event => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", event => {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer.files[0]) loadOwn(event.dataTransfer.files[0]);
  });
  render();
}

// --- the API the tests use ---

window.explorer = {
  images: images.map(({ index, label, split }) => ({ index, label, split })),
  pixels: i => Array.from(pixelsAt(i)),
  classify: i => analysed(i).probabilities.slice(),
  decode: (i, layer, channels) => {
    if (layer !== 1 && layer !== 2) throw new RangeError("layer must be 1 or 2");
    return Array.from(decodeLatents(analysed(i).latents, layer, channels));
  },
  latents: i => {  // the pooled maps and PyTorch-style switches (flat index in each plane)
    const { z1, index1, z2, index2 } = analysed(i).latents;
    return { z1: Array.from(z1), index1: Array.from(index1), z2: Array.from(z2), index2: Array.from(index2) };
  },
  own: () => state.own && { pixels: Array.from(state.own.pixels), probabilities: state.own.probabilities.slice() },
  ready: false,
};

setUp();
window.explorer.ready = true;
