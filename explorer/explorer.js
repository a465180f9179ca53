// The channel explorer: the Task 2 network (encoder, classifier head, both decoders) in plain
// JavaScript over the weights embedded in this page. Tensors are flat Float32Arrays in
// channel-major (C, H, W) order, as in PyTorch; sums run in float64 and are stored as float32.
// Every shape (image size, channels, map sides, receptive fields) comes from DATA.architecture,
// the page's copy of models.ARCHITECTURE.describe(). Text from the data is set with textContent.
"use strict";

const DATA = JSON.parse(document.getElementById("explorer-data").textContent);
const ARCH = DATA.architecture;
const LAYERS = ARCH.layers;  // [{name, in_channels, channels, kernel, pool, size_in, conv_size, size, receptive_field, stride}]
const SIDE = ARCH.image_size, COLOURS = ARCH.image_channels, PLANE = SIDE * SIDE;
const IMAGE_SIZE = COLOURS * PLANE;
const layerOf = n => LAYERS[n - 1];
const range = n => [...Array(n).keys()];

function bytesOf(base64) {
  const text = atob(base64);
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
  return out;
}

function halfToFloat(h) {  // IEEE 754 binary16 -> number (exact)
  const sign = h & 0x8000 ? -1 : 1, exponent = Math.floor(h / 0x400) & 0x1f, fraction = h & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 0x1f) return fraction ? NaN : sign * Infinity;
  return sign * (1 + fraction / 0x400) * 2 ** (exponent - 0xf);
}

function floatsOf(encoded) {
  const bytes = bytesOf(encoded.data);
  if (encoded.dtype === "float16") {
    const half = new Uint16Array(bytes.buffer), data = new Float32Array(half.length);
    for (let i = 0; i < half.length; i++) data[i] = halfToFloat(half[i]);
    return { shape: encoded.shape, data };
  }
  return { shape: encoded.shape, data: new Float32Array(bytes.buffer) };
}

const MODELS = DATA.models.map(m => ({ id: m.id, label: m.label, precision: m.precision,
                                       decoders: m.decoders, raw: m.weights, W: null }));
function weightsOf(model) {  // decoded on first use, so extra models cost nothing at load
  if (!model.W) {
    model.W = {};
    for (const [name, layer] of Object.entries(model.raw)) {
      model.W[name] = { weight: floatsOf(layer.weight), bias: floatsOf(layer.bias) };
    }
  }
  return model.W;
}
const modelById = id => MODELS.find(m => m.id === id);
const PIXELS = bytesOf(DATA.pixels);

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

// p x p max-pool, stride p, with PyTorch's switches: the flat index in the (H, W) plane of the
// first maximum in row-major order within each window (a later equal value does not win).
function maxPool(x, C, H, Wd, p) {
  const OH = Math.floor(H / p), OW = Math.floor(Wd / p);
  const z = new Float32Array(C * OH * OW), index = new Int32Array(C * OH * OW);
  for (let c = 0; c < C; c++) {
    for (let i = 0; i < OH; i++) {
      for (let j = 0; j < OW; j++) {
        let best = -Infinity, where = (p * i) * Wd + p * j;
        for (let dy = 0; dy < p; dy++) {
          for (let dx = 0; dx < p; dx++) {
            const q = (p * i + dy) * Wd + p * j + dx, v = x[c * H * Wd + q];
            if (v > best || Number.isNaN(v)) { best = v; where = q; }
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

// latents: {z: [z1, z2, ...], index: [switches1, switches2, ...]}
function encodeInput(x, W) {
  const z = [], index = [];
  let h = x;
  LAYERS.forEach((L, k) => {
    const conv = relu(conv2d(h, L.in_channels, L.size_in, L.size_in, W[`conv${k + 1}`]));
    const pooled = maxPool(conv, L.channels, L.conv_size, L.conv_size, L.pool);
    z.push(pooled.z);
    index.push(pooled.index);
    h = pooled.z;
  });
  return { z, index };
}

const encode = (pixels, W) => encodeInput(normalize(pixels), W);

function classifyLatents(latents, W) {
  let h = latents.z[latents.z.length - 1];
  const count = ARCH.fc.length - 1;
  for (let k = 1; k <= count; k++) {
    h = linear(h, W[`fc${k}`]);
    if (k < count) relu(h);
  }
  const top = Math.max(...h);
  const e = Array.from(h, v => Math.exp(v - top));
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
        if (v === 0) continue;  // unpooled maps are mostly zeros
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
// z1 through the refitted layer-1 decoder when the model has one, deeper maps through the
// model's own Task 2 decoder (unpool, ReLU, transposed convolution, layer by layer).
function decodeLatents(latents, layer, channels, W) {
  let h = keepChannels(latents.z[layer - 1], layerOf(layer).channels, channels);
  for (let k = layer; k >= 1; k--) {
    const L = layerOf(k);
    h = relu(unpool(h, latents.index[k - 1], L.channels, L.conv_size, L.conv_size));
    const decoder = k === 1 && layer === 1 && W.deconv1_refit ? W.deconv1_refit : W[`deconv${k}`];
    h = convTranspose2d(h, L.channels, L.conv_size, L.conv_size, decoder);
  }
  return h;
}

function psnr(decoded, pixels) {
  let squared = 0;
  for (let i = 0; i < decoded.length; i++) {
    const v = Math.min(1, Math.max(0, decoded[i] * 0.5 + 0.5)) - pixels[i] / 255;
    squared += v * v;
  }
  return 10 * Math.log10(1 / Math.max(squared / decoded.length, 1e-12));
}

const argmax = values => values.indexOf(Math.max(...values));

// Zeiler & Fergus's Fig. 7: a square of zeros in the normalised input (mid grey) with its
// top-left corner at (r*stride, c*stride) while it fits; per position the probability of
// `target` and each channel's largest activation in every layer. Row-major maps.
function occlusionMaps(pixels, target, size, stride, W) {
  if (!Number.isInteger(size) || size < 1 || size > SIDE) throw new RangeError(`size must be a whole number from 1 to ${SIDE}`);
  if (!Number.isInteger(stride) || stride < 1) throw new RangeError("stride must be a whole number >= 1");
  const x0 = normalize(pixels), n = Math.floor((SIDE - size) / stride) + 1;
  const probability = [], layers = LAYERS.map(L => range(L.channels).map(() => []));
  for (let r = 0; r < n; r++) {
    for (let c = 0; c < n; c++) {
      const x = x0.slice();
      for (let ch = 0; ch < COLOURS; ch++) {
        for (let y = r * stride; y < r * stride + size; y++) x.fill(0, ch * PLANE + y * SIDE + c * stride, ch * PLANE + y * SIDE + c * stride + size);
      }
      const latents = encodeInput(x, W);
      probability.push(classifyLatents(latents, W)[target]);
      LAYERS.forEach((L, k) => {
        const z = latents.z[k], m = L.size * L.size;
        for (let ch = 0; ch < L.channels; ch++) {
          let top = -Infinity;
          for (let i = ch * m; i < (ch + 1) * m; i++) if (z[i] > top) top = z[i];
          layers[k][ch].push(top);
        }
      });
    }
  }
  return { side: n, size, stride, target, probability, layers };
}

// --- state ---

const images = DATA.images;
const cache = new Map();  // `${model}:${position}` -> {latents, probabilities}
const state = { model: MODELS[0], image: DATA.start, own: null, layer: 1,
                channels: range(layerOf(1).channels), contribution: false, card: 0,
                scale: "layer", cell: null, occlusion: null };

function pixelsAt(i) {
  if (!Number.isInteger(i) || i < 0 || i >= images.length) {
    throw new RangeError(`no image ${i}; there are ${images.length}`);
  }
  return PIXELS.subarray(i * IMAGE_SIZE, (i + 1) * IMAGE_SIZE);
}

function analysed(i, model = state.model) {
  const key = `${model.id}:${i}`;
  if (!cache.has(key)) {
    const W = weightsOf(model), latents = encode(pixelsAt(i), W);
    cache.set(key, { latents, probabilities: classifyLatents(latents, W) });
  }
  return cache.get(key);
}

function ownAnalysed(model = state.model) {
  const own = state.own;
  if (!own.byModel.has(model.id)) {
    const W = weightsOf(model), latents = encode(own.pixels, W);
    own.byModel.set(model.id, { latents, probabilities: classifyLatents(latents, W) });
  }
  return own.byModel.get(model.id);
}

function current() {
  if (state.own) return { pixels: state.own.pixels, label: null, ...ownAnalysed() };
  return { pixels: pixelsAt(state.image), label: images[state.image].label, ...analysed(state.image) };
}

function modelArg(id) {
  if (id === undefined) return state.model;
  const model = modelById(id);
  if (!model) throw new RangeError(`no model ${id}; the page has ${MODELS.map(m => m.id).join(", ")}`);
  return model;
}

// --- drawing ---

function drawRGB(canvas, rgb, side = SIDE) {  // rgb: COLOURS x side x side values in [0, 1]
  canvas.width = canvas.height = side;
  const ctx = canvas.getContext("2d"), image = ctx.createImageData(side, side), n = side * side;
  for (let p = 0; p < n; p++) {
    for (let c = 0; c < 3; c++) {
      const v = rgb[Math.min(c, COLOURS - 1) * n + p];
      image.data[4 * p + c] = Math.round(255 * Math.min(1, Math.max(0, v)));
    }
    image.data[4 * p + 3] = 255;
  }
  ctx.putImageData(image, 0, 0);
}

function drawPixels(canvas, pixels, side) {
  drawRGB(canvas, Array.from(pixels, v => v / 255), side);
}

const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
function viridis(t) {
  const x = Math.min(1, Math.max(0, t)) * (VIRIDIS.length - 1), i = Math.min(Math.floor(x), VIRIDIS.length - 2);
  return VIRIDIS[i].map((a, k) => Math.round(a + (VIRIDIS[i + 1][k] - a) * (x - i)));
}

function drawMap(canvas, values, side, top) {
  canvas.width = canvas.height = side;
  const ctx = canvas.getContext("2d"), image = ctx.createImageData(side, side);
  for (let p = 0; p < side * side; p++) image.data.set([...viridis(values[p] / Math.max(top, 1e-12)), 255], 4 * p);
  ctx.putImageData(image, 0, 0);
}

function drawColourBar(canvas) {
  canvas.width = 256;
  canvas.height = 1;
  const ctx = canvas.getContext("2d"), image = ctx.createImageData(256, 1);
  for (let p = 0; p < 256; p++) image.data.set([...viridis(p / 255), 255], 4 * p);
  ctx.putImageData(image, 0, 0);
}

const $ = id => document.getElementById(id);
const className = k => DATA.classes[k];
const fmt = v => (Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toPrecision(2));
const shapeText = L => `${L.channels}×${L.size}×${L.size}`;

function el(tag, props = {}, ...children) {  // text only: children are strings or nodes
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("aria") || key === "role" || key === "for") node.setAttribute(key.replace(/^aria([A-Z])/, (_, c) => `aria-${c.toLowerCase()}`), value);
    else node[key] = value;
  }
  node.append(...children);
  return node;
}

// sorted channels as short text: [0, 1, 2, 3, 5, 7, 8] -> "0–3, 5, 7, 8"
function runs(channels) {
  const parts = [];
  for (let k = 0; k < channels.length;) {
    let end = k;
    while (end + 1 < channels.length && channels[end + 1] === channels[end] + 1) end++;
    parts.push(end - k >= 2 ? `${channels[k]}–${channels[end]}` : channels.slice(k, end + 1).join(", "));
    k = end + 1;
  }
  return parts.join(", ");
}

function subjectName() {
  if (state.own) return `your image "${state.own.name}"`;
  const entry = images[state.image];
  return `${entry.split} image ${entry.index} (${className(entry.label)})`;
}

function imageTitle() {
  if (state.own) return `${subjectName()}: not in the link (own images are not shareable)`;
  const entry = images[state.image];
  return `${entry.split} image ${entry.index}: ${className(entry.label)}` + (entry.note ? ` (${entry.note})` : "");
}

// --- scales: this map / this layer (this image) / all images of the page ---

function layerMaps(latents, layer) {
  const L = layerOf(layer), n = L.size * L.size, z = latents.z[layer - 1];
  return range(L.channels).map(c => z.subarray(c * n, (c + 1) * n));
}

const maxOf = values => values.reduce((a, v) => (v > a ? v : a), 0);
const allMax = new Map();  // `${model}:${layer}` -> max over every gallery image

function scaleTop(maps, c) {
  if (state.scale === "map") return maxOf(maps[c]);
  if (state.scale === "layer") return Math.max(...maps.map(maxOf));
  const key = `${state.model.id}:${state.layer}`;
  if (!allMax.has(key)) {
    allMax.set(key, Math.max(...images.map((_, i) => Math.max(...layerMaps(analysed(i).latents, state.layer).map(maxOf)))));
  }
  const own = state.own ? Math.max(...maps.map(maxOf)) : 0;
  return Math.max(allMax.get(key), own);
}

// --- rendering ---

function render() {
  const focusKey = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.key : undefined;
  const now = current(), W = weightsOf(state.model), L = layerOf(state.layer);
  const name = subjectName();
  drawPixels($("original"), now.pixels, SIDE);
  $("original").setAttribute("aria-label", `original: ${name}, ${SIDE}×${SIDE} pixels`);
  $("original-caption").textContent = `original (${SIDE}×${SIDE})`;
  const full = decodeLatents(now.latents, state.layer, range(L.channels), W);
  drawRGB($("full-decode"), full.map(v => v * 0.5 + 0.5));
  const fullPsnr = psnr(full, now.pixels).toFixed(2);
  $("full-caption").textContent = `all ${L.channels} ${L.name} channels · PSNR ${fullPsnr} dB`;
  $("full-decode").setAttribute("aria-label", `reconstruction of ${name} from all ${L.channels} ${L.name} channels, PSNR ${fullPsnr} dB`);
  const selected = decodeLatents(now.latents, state.layer, state.channels, W);
  const chosen = state.channels.length === L.channels ? `all ${L.channels} ${L.name} channels ticked`
    : state.channels.length ? `${L.name} channel${state.channels.length > 1 ? "s" : ""} ${runs(state.channels)}` : `no ${L.name} channel (empty latent)`;
  if (state.contribution) {
    const empty = decodeLatents(now.latents, state.layer, [], W);
    const d = selected.map((v, i) => v - empty[i]);
    const scale = Math.max(...d.map(Math.abs), 1e-12);
    drawRGB($("selected-decode"), d.map(v => 0.5 + v / (2 * scale)));
    $("selected-caption").textContent = `${chosen}: contribution (grey = 0, ±${fmt(scale)})`;
  } else {
    drawRGB($("selected-decode"), selected.map(v => v * 0.5 + 0.5));
    $("selected-caption").textContent = `${chosen} · PSNR ${psnr(selected, now.pixels).toFixed(2)} dB`;
  }
  $("selected-decode").setAttribute("aria-label", `${state.contribution ? "contribution to the reconstruction" : "reconstruction"} of ${name} from ${chosen}`);
  $("image-title").textContent = imageTitle();
  renderPrediction(now);
  $("pictures-legend").textContent = "Left: the input. Middle: what the decoder rebuilds from every channel of " +
    `${L.name}. Right: from the ticked channels only, the others set to zero. PSNR (peak signal-to-noise ratio, ` +
    "in dB) compares a reconstruction with the original: higher is closer. The list: the network's three most probable classes. " +
    (state.contribution ? "Contribution view: the ticked channels' decode minus the decode with no channel at all; " +
      "grey is zero, brighter/darker colours are what those channels add/remove, stretched to the largest change (±)." : "");
  const refitted = state.layer === 1 && weightsOf(state.model).deconv1_refit;
  $("decoder-note").textContent = `${L.name} (${shapeText(L)}) is decoded by ${state.model.decoders[L.name]}` +
    (refitted ? ": Task 2 trained deconv1 only on what deconv2 hands it, so Task 3 fitted a new one on the real z1 maps. " : ". ") +
    `Model: ${state.model.label}` + (state.model.precision === "float32" ? "." : " (its fully connected layers stored as float16).");
  for (const radio of document.querySelectorAll("input[name=layer]")) radio.checked = Number(radio.value) === state.layer;
  $("model").value = state.model.id;
  $("contribution").checked = state.contribution;
  renderMaps(now.latents);
  renderCard(now);
  renderOcclusion();
  for (const item of document.querySelectorAll("#gallery .thumb")) {
    const on = !state.own && Number(item.dataset.i) === state.image;
    item.classList.toggle("selected", on);
    item.setAttribute("aria-selected", String(on));
  }
  if (focusKey) {
    const again = document.querySelector(`[data-key="${focusKey}"]`);
    if (again && again !== document.activeElement) again.focus();
  }
}

function renderPrediction(now) {
  const ranked = now.probabilities.map((p, k) => [p, k]).sort((a, b) => b[0] - a[0]).slice(0, 3);
  const top = ranked[0][1];
  $("top3").setAttribute("aria-label", "the three most probable classes, with the network's softmax probabilities");
  $("top3").replaceChildren(...ranked.map(([p, k]) => el("li", {}, `${className(k)}: ${(100 * p).toFixed(1)} %`)));
  let text = `Predicted: ${className(top)} (${(100 * ranked[0][0]).toFixed(1)} %)`;
  if (now.label !== null) {
    text += top === now.label ? " ✓ right" : ` ✗ wrong: it is a ${className(now.label)}`;
  }
  if ($("prediction").textContent !== text) $("prediction").textContent = text;  // announced once per change
  $("prediction").className = now.label === null ? "" : top === now.label ? "right" : "wrong";
}

function renderMaps(latents) {
  const L = layerOf(state.layer), maps = layerMaps(latents, state.layer), side = L.size;
  const energy = maps.map(m => m.reduce((a, v) => a + v * v, 0));
  const total = energy.reduce((a, b) => a + b, 0) || 1;
  const boxes = maps.map((values, c) => {
    const on = state.channels.includes(c), top = scaleTop(maps, c), peak = maxOf(values);
    const canvas = el("canvas", { ariaHidden: "true" });
    drawMap(canvas, values, side, top);
    const view = el("button", { type: "button", className: "map-view", dataset: { key: `map-${c}`, channel: String(c) },
      ariaLabel: `${L.name} channel ${c} map, largest value ${fmt(peak)}: press to pin its card; arrow keys move the receptive-field outline` }, canvas);
    view.addEventListener("click", () => pinCard(c));
    view.addEventListener("mousemove", event => hoverCell(event, view, c));
    view.addEventListener("mouseleave", () => { if (document.activeElement !== view) clearCell(); });
    view.addEventListener("keydown", event => moveCell(event, c));
    view.addEventListener("focus", () => { if (!state.cell || state.cell.channel !== c) showCell(c, 0, 0); });
    view.addEventListener("blur", clearCell);
    const check = el("input", { type: "checkbox", className: "toggle", checked: on,
      dataset: { key: `check-${c}`, channel: String(c) }, ariaLabel: `use ${L.name} channel ${c} in the reconstruction` });
    check.addEventListener("change", () => toggle(c));
    const only = el("button", { type: "button", className: "only", dataset: { key: `only-${c}` },
      ariaLabel: `keep ${L.name} channel ${c} only` }, "only");
    only.addEventListener("click", () => { state.channels = [c]; state.card = c; update(); });
    const share = el("span", { className: "share", title: "share of this layer's activation energy (sum of squares) for this image" },
      `${(100 * energy[c] / total).toFixed(0)} % energy`);
    const label = el("div", { className: "map-label" }, el("label", {}, check, ` ch ${c}`), " ", only);
    const peakText = el("div", { className: "map-max" }, `max ${fmt(peak)}`, el("br"), share);
    return el("div", { className: "map" + (on ? " on" : "") + (state.card === c ? " pinned" : ""), dataset: { channel: String(c) } },
      view, label, peakText);
  });
  $("maps").replaceChildren(...boxes);
  $("maps").className = L.channels > 8 ? "many" : "";
  const top = state.scale === "map" ? null : scaleTop(maps, 0);
  $("bar-high").textContent = top === null ? "each map's own max" : fmt(top);
  $("colour-bar").setAttribute("aria-label", `colour scale from 0 (dark purple) to ${top === null ? "each map's own maximum" : fmt(top)} (yellow)`);
  $("scale-note").textContent = `A map shows one ${L.name} channel: ${L.size}×${L.size} cells after conv + ReLU + max-pool, ` +
    `each seeing a ${L.receptive_field}×${L.receptive_field}-pixel patch (${L.stride} px apart). ` +
    ({ map: "Colours: each map scaled to its own maximum, so a nearly silent map looks as bright as a strong one.",
       layer: "Colours: one scale for this image's maps of this layer, so weak maps look dark.",
       all: "Colours: one scale for every image in this page (this layer and model)." })[state.scale] +
    " “max” is a map's largest value; “% energy” its share of the layer's sum of squares for this image.";
  if (state.cell) showCell(state.cell.channel, state.cell.i, state.cell.j);
}

function cellValue(c, i, j) {
  const L = layerOf(state.layer);
  return current().latents.z[state.layer - 1][(c * L.size + i) * L.size + j];
}

function showCell(c, i, j) {
  const L = layerOf(state.layer), value = cellValue(c, i, j);
  state.cell = { channel: c, i, j };
  const size = L.receptive_field, stride = L.stride;
  const original = $("original"), scale = original.clientWidth / SIDE, box = $("field-box");
  box.style.left = `${original.clientLeft + j * stride * scale}px`;  // inside the canvas's border
  box.style.top = `${original.clientTop + i * stride * scale}px`;
  box.style.width = box.style.height = `${size * scale}px`;
  box.hidden = false;
  $("cell-readout").textContent = `${L.name} channel ${c}, row ${i}, column ${j}: ${fmt(value)} ` +
    `(receptive field: pixels ${i * stride}–${i * stride + size - 1} down, ${j * stride}–${j * stride + size - 1} across, outlined on the original)`;
  const maps = layerMaps(current().latents, state.layer), top = state.scale === "map" ? maxOf(maps[c]) : scaleTop(maps, c);
  const marker = $("bar-marker");
  marker.style.left = `${100 * Math.min(1, value / Math.max(top, 1e-12))}%`;
  marker.hidden = false;
}

function clearCell() {
  state.cell = null;
  $("field-box").hidden = true;
  $("bar-marker").hidden = true;
  $("cell-readout").textContent = "Hover a map cell, or focus a map and use the arrow keys, to read its value and see its receptive field.";
}

function hoverCell(event, view, c) {
  const side = layerOf(state.layer).size, rect = view.getBoundingClientRect();
  const j = Math.max(0, Math.min(side - 1, Math.floor((event.clientX - rect.left) / rect.width * side)));
  const i = Math.max(0, Math.min(side - 1, Math.floor((event.clientY - rect.top) / rect.height * side)));
  showCell(c, i, j);
}

function moveCell(event, c) {
  const side = layerOf(state.layer).size;
  const moves = { ArrowLeft: [0, -1], ArrowRight: [0, 1], ArrowUp: [-1, 0], ArrowDown: [1, 0] };
  if (!(event.key in moves)) return;
  event.preventDefault();
  const cell = state.cell && state.cell.channel === c ? state.cell : { i: 0, j: 0 };
  const [di, dj] = moves[event.key];
  showCell(c, Math.max(0, Math.min(side - 1, cell.i + di)), Math.max(0, Math.min(side - 1, cell.j + dj)));
}

function toggle(c) {
  state.channels = state.channels.includes(c)
    ? state.channels.filter(x => x !== c) : [...state.channels, c].sort((a, b) => a - b);
  update();
}

function pinCard(c) {
  state.card = c;
  render();
  if (window.matchMedia("(max-width: 759px)").matches) $("card").scrollIntoView({ block: "nearest" });
}

function cardsOf() {  // the Task 3 cards describe the default (trained) model only
  if (!DATA.cards || state.model !== MODELS[0]) return null;
  return DATA.cards[layerOf(state.layer).name] || null;
}

function renderCard(now) {
  const L = layerOf(state.layer), c = Math.min(state.card, L.channels - 1);
  const values = layerMaps(now.latents, state.layer)[c];
  $("card-title").textContent = `${L.name} channel ${c}`;
  $("card-state").textContent = "Pinned: click (or press Enter on) another map to show its card.";
  $("card-now").textContent = `In ${subjectName()}: largest value ${fmt(maxOf(values))}, ` +
    `${values.filter(v => v > 0).length} of ${values.length} cells above zero; ` +
    `${state.channels.includes(c) ? "ticked (used" : "not ticked (not used"} in the right-hand reconstruction).`;
  const cards = cardsOf(), card = cards && cards[c];
  const patches = $("card-patches");
  if (!card) {
    $("card-finding").textContent = !DATA.cards ? "This page has no Task 3 channel cards (build it with a Task 3 metrics file to add them)."
      : "Task 3's channel cards describe the trained model; switch back to it to read them.";
    patches.replaceChildren();
    $("card-classes").replaceChildren();
    $("card-correlations").replaceChildren();
    $("card-legend").textContent = "";
    return;
  }
  $("card-finding").textContent = `Task 3: ${card.finding}`;
  patches.replaceChildren(...card.patches.map((encoded, k) => {
    const canvas = el("canvas", { role: "img", ariaLabel: `top-9 test patch ${k + 1}: ${card.patch_classes[k]}`, title: `top-9 test patch ${k + 1}: ${card.patch_classes[k]}` });
    drawPixels(canvas, bytesOf(encoded), card.patch_size);
    return canvas;
  }));
  patches.setAttribute("aria-label", `the ${card.patches.length} test patches (${card.patch_size}×${card.patch_size} px, the receptive field) where this channel is strongest`);
  const rows = Object.entries(card.top_k_classes).sort((a, b) => b[1] - a[1]);
  $("card-classes").replaceChildren(el("caption", {}, `classes of its top-${card.top_k} test images`),
    ...rows.map(([cls, share]) => {
      const bar = el("span", { className: "bar" });
      bar.style.width = `${Math.max(0, share)}px`;
      return el("tr", {}, el("td", {}, cls), el("td", {}, `${share.toFixed(0)} %`), el("td", {}, bar));
    }));
  $("card-correlations").replaceChildren(el("caption", {}, "correlation r with local image measures"),
    ...Object.entries(card.correlations).map(([measure, r]) => el("tr", {}, el("td", {}, measure), el("td", {}, r.toFixed(2)))));
  $("card-legend").textContent = "Top-9 patches: the receptive-field patches of the test images where this channel is largest. " +
    "r: Pearson correlation, over positions, between the channel and a local measure of its patch; R-G is red minus green, " +
    "B-(R+G)/2 is blue minus yellow, gradient energy is edge strength. d: effect size (Cohen's d) of the top patches against random " +
    "patches (|d| ≥ 0.8 is large). Corrected p: Bonferroni-corrected p-value of the class share against chance.";
}

// --- occlusion view ---

function occlusionFor(size, stride) {
  const now = current(), target = now.label === null ? argmax(now.probabilities) : now.label;
  const key = [state.model.id, state.own ? `own:${state.own.serial}` : state.image, size, stride].join(":");
  if (!state.occlusion || state.occlusion.key !== key) {
    state.occlusion = { key, maps: occlusionMaps(now.pixels, target, size, stride, weightsOf(state.model)) };
  }
  return state.occlusion.maps;
}

function renderOcclusion() {
  const L = layerOf(state.layer), size = Number($("occlusion-size").value), stride = Number($("occlusion-stride").value);
  $("occlusion-note").textContent = `Zeiler & Fergus (2014), Fig. 7: a ${size}×${size} grey square (zero in the normalised input) ` +
    `is moved over the image in steps of ${stride} px, and the network is run for each position. Each cell of a map below is one ` +
    "position of the square's top-left corner. Dark where the square hides what the model needs.";
  if (!$("occlusion-panel").open) return;
  const maps = occlusionFor(size, stride), c = Math.min(state.card, L.channels - 1);
  const channel = maps.layers[state.layer - 1][c], now = current();
  drawMap($("occlusion-probability"), maps.probability, maps.side, 1);
  const target = className(maps.target), kind = now.label === null ? "top class" : "true class";
  $("occlusion-probability-caption").textContent = `probability of ${target} (${kind}), scale 0–1; from ${fmt(Math.min(...maps.probability))} to ${fmt(Math.max(...maps.probability))}`;
  $("occlusion-probability").setAttribute("aria-label", `occlusion map: probability of ${target} for each position of the square, from ${fmt(Math.min(...maps.probability))} to ${fmt(Math.max(...maps.probability))}`);
  const unoccluded = maxOf(layerMaps(now.latents, state.layer)[c]), top = Math.max(unoccluded, ...channel);
  drawMap($("occlusion-channel"), channel, maps.side, top);
  $("occlusion-channel-caption").textContent = `${L.name} channel ${c}'s largest value (without the square ${fmt(unoccluded)}), scale 0–${fmt(top)}`;
  $("occlusion-channel").setAttribute("aria-label", `occlusion map: ${L.name} channel ${c}'s largest activation for each position of the square`);
  $("occlusion-status").textContent = `${maps.side}×${maps.side} positions`;
}

// --- the link: #test=3000&z=2&ch=3,5[&model=id], #train=N, #own ---

function hashOf() {
  const params = [];
  if (state.own) params.push("own");
  else params.push(`${images[state.image].split}=${images[state.image].index}`);
  params.push(`z=${state.layer}`, `ch=${state.channels.join(",")}`);
  if (state.model !== MODELS[0]) params.push(`model=${encodeURIComponent(state.model.id)}`);
  return "#" + params.join("&");
}

function writeHash(push) {
  const hash = hashOf();
  if (location.hash === hash) return;
  if (push) history.pushState(null, "", hash);
  else history.replaceState(null, "", hash);
}

function showLinkProblems(problems) {
  const box = $("link-message");
  box.hidden = problems.length === 0;
  box.textContent = problems.length ? `This link could not be followed exactly: ${problems.join("; ")}.` : "";
}

function applyHash() {
  const text = location.hash.slice(1), problems = [];
  if (text === "") { showLinkProblems([]); return; }
  const params = new URLSearchParams(text);
  const known = new Set(["test", "train", "own", "z", "ch", "model", "img"]);
  for (const key of params.keys()) if (!known.has(key)) problems.push(`"${key}" is not a setting of this page (it knows test, train, z, ch, model)`);
  if (params.has("model")) {
    const model = modelById(params.get("model"));
    if (model) state.model = model;
    else problems.push(`there is no model "${params.get("model")}" (this page has ${MODELS.map(m => m.id).join(", ")})`);
  } else state.model = MODELS[0];
  let split = null;
  for (const key of ["test", "train"]) if (params.has(key)) split = key;
  if (params.has("img")) problems.push('"img=" (a gallery position) is no longer used; links name the test-set index, e.g. #test=12');
  if (params.has("own")) {
    if (lastOwn) state.own = lastOwn;  // the own image is still in this tab
    else problems.push("it points at someone's own image, which a link cannot carry (own images stay in the browser that chose them); showing a test image instead");
  } else if (split) {
    const raw = params.get(split), index = Number(raw);
    const position = images.findIndex(im => im.split === split && im.index === index);
    if (raw === "" || !Number.isInteger(index) || index < 0) problems.push(`${split}=${raw} is not an image index`);
    else if (position < 0) {
      const held = images.filter(im => im.split === split).map(im => im.index);
      problems.push(`${split} image ${index} is not in this page's gallery (it holds ${held.length} ${split} image${held.length === 1 ? "" : "s"}` +
        (held.length ? `, from ${Math.min(...held)} to ${Math.max(...held)}` : "") + ")");
    } else { state.image = position; state.own = null; }
  }
  if (!params.has("own") && !split) state.own = null;
  if (params.has("z")) {
    const layer = Number(params.get("z"));
    if (Number.isInteger(layer) && layer >= 1 && layer <= LAYERS.length) state.layer = layer;
    else problems.push(`z=${params.get("z")} is not a latent (use ${LAYERS.map((_, k) => k + 1).join(" or ")})`);
  }
  const count = layerOf(state.layer).channels;
  state.channels = range(count);
  if (params.has("ch")) {
    const seen = new Set(), bad = [], repeated = new Set();
    for (const part of params.get("ch").split(",").filter(s => s.trim() !== "")) {
      const c = Number(part);
      if (!Number.isInteger(c) || c < 0 || c >= count) bad.push(part);
      else if (seen.has(c)) repeated.add(c);
      else seen.add(c);
    }
    if (bad.length) problems.push(`channel${bad.length > 1 ? "s" : ""} ${bad.join(", ")} do${bad.length > 1 ? "" : "es"} not exist in ${layerOf(state.layer).name} (0 to ${count - 1})`);
    if (repeated.size) problems.push(`channel${repeated.size > 1 ? "s" : ""} ${[...repeated].join(", ")} listed more than once (used once)`);
    state.channels = [...seen].sort((a, b) => a - b);
  }
  state.card = Math.min(state.card, count - 1);
  showLinkProblems(problems);
}

function followLink() {
  applyHash();
  clearFileError();
  markGallery();
  render();
}

// update after a change in the page: the view and the link (a new history entry if `push`)
function update(push = false) {
  render();
  writeHash(push);
}

// --- gallery, filters, own images ---

function visibleThumbs() {
  return [...document.querySelectorAll("#gallery .thumb")].filter(t => !t.hidden);
}

function markGallery() {  // right/wrong marks for the current model
  for (const item of document.querySelectorAll("#gallery .thumb")) {
    const i = Number(item.dataset.i), entry = images[i];
    const predicted = argmax(analysed(i).probabilities), right = predicted === entry.label;
    item.dataset.right = String(right);
    item.classList.toggle("wrong", !right);
    item.querySelector(".mark").textContent = right ? "" : "✗";
    item.setAttribute("aria-label", `${entry.split} image ${entry.index}: ${className(entry.label)}, predicted ${className(predicted)}` +
      (right ? "" : " (wrong)") + (entry.note ? `, ${entry.note}` : ""));
    item.title = item.getAttribute("aria-label");
  }
  filterGallery();
}

function filterGallery() {
  const cls = $("class-filter").value, right = $("correct-filter").value;
  for (const item of document.querySelectorAll("#gallery .thumb")) {
    const entry = images[Number(item.dataset.i)];
    item.hidden = !((cls === "all" || String(entry.label) === cls) &&
      (right === "all" || (right === "right") === (item.dataset.right === "true")));
  }
  const shown = visibleThumbs();
  if (shown.length && !shown.some(t => t.tabIndex === 0)) {
    for (const t of document.querySelectorAll("#gallery .thumb")) t.tabIndex = -1;
    shown[0].tabIndex = 0;
  }
}

function chooseImage(i) {
  state.own = null;
  state.image = i;
  clearFileError();
  update(true);
}

function galleryKeys(event) {
  const items = visibleThumbs(), at = items.indexOf(document.activeElement);
  if (at < 0) return;
  const top = items[0].offsetTop, columns = Math.max(1, items.filter(t => t.offsetTop === top).length);
  const moves = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -columns, ArrowDown: columns, Home: -at, End: items.length - 1 - at };
  if (!(event.key in moves)) return;
  event.preventDefault();
  const next = items[Math.max(0, Math.min(items.length - 1, at + moves[event.key]))];
  for (const t of items) t.tabIndex = -1;
  next.tabIndex = 0;
  next.focus();
}

function buildGallery() {
  const select = $("class-filter");
  DATA.classes.forEach((name, k) => select.add(new Option(name, String(k))));
  const items = images.map((entry, i) => {
    const canvas = el("canvas", { ariaHidden: "true" });
    drawPixels(canvas, pixelsAt(i), SIDE);
    const item = el("button", { type: "button", className: "thumb", role: "option", tabIndex: i === state.image ? 0 : -1,
      dataset: { i: String(i), key: `thumb-${i}` } }, canvas, el("span", { className: "mark", ariaHidden: "true" }));
    item.addEventListener("click", () => chooseImage(i));
    return item;
  });
  $("gallery").replaceChildren(...items);
  $("gallery").addEventListener("keydown", galleryKeys);
  $("gallery").addEventListener("focusin", event => {
    if (event.target.classList.contains("thumb")) {
      for (const t of document.querySelectorAll("#gallery .thumb")) t.tabIndex = t === event.target ? 0 : -1;
    }
  });
  $("gallery-hint").textContent = `${images.length} images; ✗ marks a wrong prediction of the chosen model. ` +
    "Keyboard: Tab into the gallery, arrow keys move, Enter or Space picks.";
  $("class-filter").addEventListener("change", filterGallery);
  $("correct-filter").addEventListener("change", filterGallery);
  markGallery();
}

class UserError extends Error {}
let ownSerial = 0, lastOwn = null;  // the last own image stays reachable with Back/Forward

function clearFileError() {
  $("file-error").hidden = true;
  $("file-error").textContent = "";
}

async function looksTruncated(file) {  // PNG must end with IEND, JPEG with the EOI marker
  const bytes = new Uint8Array(await file.arrayBuffer());
  const png = [0x89, 0x50, 0x4e, 0x47].every((b, k) => bytes[k] === b);
  const jpeg = bytes[0] === 0xff && bytes[1] === 0xd8;
  if (png) return !String.fromCharCode(...bytes.subarray(Math.max(0, bytes.length - 12))).includes("IEND");
  if (jpeg) {
    let end = bytes.length;
    while (end > 2 && bytes[end - 1] === 0) end--;  // some writers pad after the marker
    return !(bytes[end - 2] === 0xff && bytes[end - 1] === 0xd9);
  }
  return false;
}

const BACKGROUND = [255, 255, 255];  // transparent pixels are composited on white

async function readOwnImage(file) {
  const name = file.name || "the file";
  if (file.size === 0) throw new UserError(`"${name}" is empty (0 bytes)`);
  if (/svg/i.test(file.type) || /\.svgz?$/i.test(name)) {
    throw new UserError(`"${name}" is an SVG drawing, which this page does not read; export it as PNG or JPEG`);
  }
  if (file.type && !file.type.startsWith("image/")) throw new UserError(`"${name}" is not an image (its type is ${file.type})`);
  if (await looksTruncated(file)) throw new UserError(`"${name}" is truncated (the file ends before the image does)`);
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch (error) {
    throw new UserError(`"${name}" could not be decoded as an image (not an image, damaged, or a format this browser cannot read)`);
  }
  const { width, height } = bitmap;
  if (!width || !height) throw new UserError(`"${name}" has no pixels`);
  const square = Math.min(width, height), sx = (width - square) / 2, sy = (height - square) / 2;
  const canvas = el("canvas", { width: SIDE, height: SIDE });
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = `rgb(${BACKGROUND.join(",")})`;
  ctx.fillRect(0, 0, SIDE, SIDE);
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(bitmap, sx, sy, square, square, 0, 0, SIDE, SIDE);
  bitmap.close();
  const rgba = ctx.getImageData(0, 0, SIDE, SIDE).data, pixels = new Uint8Array(IMAGE_SIZE);
  for (let p = 0; p < PLANE; p++) for (let c = 0; c < COLOURS; c++) pixels[c * PLANE + p] = rgba[4 * p + c];
  return { name, width, height, square, crop: [sx, sy], pixels };
}

async function loadOwn(file) {
  const message = $("own-message");
  try {
    if (!file) return;
    message.textContent = `reading "${file.name}"…`;
    const image = await readOwnImage(file);
    state.own = lastOwn = { ...image, serial: ++ownSerial, byModel: new Map() };
    clearFileError();
    const cropped = image.width === image.height ? "already square, so not cropped"
      : `centre ${image.square}×${image.square} square cropped (${image.width > image.height ? "left and right" : "top and bottom"} cut off, not stretched)`;
    message.textContent = `Your image "${image.name}" is ${image.width}×${image.height} px: ${cropped}, ` +
      `then resized to ${SIDE}×${SIDE}; transparent parts are shown on white. It is not in the link: own images cannot be shared.`;
    update(true);
  } catch (error) {
    const text = error instanceof UserError ? error.message : `"${file && file.name}" could not be read (${error.message})`;
    message.textContent = "";
    $("file-error").textContent = `Your file was not used: ${text}. Still showing ${subjectName()}, as before.`;
    $("file-error").hidden = false;
  } finally {
    $("own-file").value = "";  // the same file chosen again is read again
  }
}

function setUp() {
  // first-time readers on a wide screen see the introduction; on small screens it is one tap away
  $("about").open = window.matchMedia("(min-width: 1200px)").matches;
  $("about-text").textContent =
    "A small CNN (the PyTorch CIFAR-10 tutorial's) sorts photos into ten classes. In Task 2 it was trained together with " +
    "a decoder that mirrors it (Zeiler & Fergus 2014: unpool with the max-pool switches, ReLU, transposed convolution), " +
    "which turns the network's internal maps back into a picture. " +
    LAYERS.map(L => `${L.name}: ${L.channels} maps of ${L.size}×${L.size} after conv ${L.name.slice(1)}, ReLU and max-pool ` +
      `(a cell sees ${L.receptive_field}×${L.receptive_field} pixels).`).join(" ") +
    " The network runs in this page: every prediction, map and reconstruction is computed here, from exactly the channels you tick.";
  $("try-first").textContent = "Try first: choose z2, press “none”, tick the brightest map and compare the right-hand " +
    "reconstruction with the original; then open “Occlusion” below the maps to see what the prediction depends on.";
  const models = $("model");
  for (const m of MODELS) models.add(new Option(m.label + (m.precision !== "float32" ? ` (${m.precision})` : ""), m.id));
  models.disabled = MODELS.length < 2;
  models.addEventListener("change", () => {
    state.model = modelById(models.value);
    markGallery();
    update();
  });
  $("layer-choice").replaceChildren(...LAYERS.map((L, k) => {
    const radio = el("input", { type: "radio", name: "layer", value: String(k + 1), checked: k === 0, dataset: { key: `layer-${k + 1}` } });
    radio.addEventListener("change", () => {
      state.layer = k + 1;
      state.channels = range(L.channels);
      state.card = 0;
      clearCell();
      update();
    });
    return el("label", {}, radio, ` ${L.name} (${shapeText(L)})`);
  }));
  drawColourBar($("colour-bar"));
  for (const radio of document.querySelectorAll("input[name=scale]")) {
    radio.addEventListener("change", () => { state.scale = radio.value; render(); });
  }
  $("all-channels").addEventListener("click", () => { state.channels = range(layerOf(state.layer).channels); update(); });
  $("no-channels").addEventListener("click", () => { state.channels = []; update(); });
  $("all-channels").setAttribute("aria-label", "use all channels of the latent");
  $("no-channels").setAttribute("aria-label", "use no channel (decode the empty latent)");
  $("contribution").addEventListener("change", event => { state.contribution = event.target.checked; render(); });
  $("occlusion-panel").addEventListener("toggle", () => { if ($("occlusion-panel").open) runOcclusion(); });
  $("occlusion-run").addEventListener("click", runOcclusion);
  $("occlusion-size").addEventListener("change", runOcclusion);
  $("occlusion-stride").addEventListener("change", runOcclusion);
  $("own-file").addEventListener("change", event => { loadOwn(event.target.files[0]); });
  const drop = $("drop");
  drop.addEventListener("dragover", event => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", event => {
    event.preventDefault();
    drop.classList.remove("over");
    loadOwn(event.dataTransfer.files[0]);
  });
  window.addEventListener("hashchange", followLink);
  window.addEventListener("popstate", followLink);
  buildGallery();
  applyHash();
  markGallery();
  clearCell();
  render();
  writeHash(false);
}

function runOcclusion() {
  $("occlusion-status").textContent = "computing…";
  setTimeout(() => { $("occlusion-panel").open = true; render(); }, 0);
}

// --- the API the tests use (i: gallery position, or "own"; model: a model id, default the chosen one) ---

function subjectOf(i, model) {
  if (i === "own") {
    if (!state.own) throw new RangeError("no own image has been chosen");
    return { pixels: state.own.pixels, label: null, ...ownAnalysed(model) };
  }
  return { pixels: pixelsAt(i), label: images[i].label, ...analysed(i, model) };
}

window.explorer = {
  architecture: ARCH,
  models: MODELS.map(({ id, label, precision }) => ({ id, label, precision })),
  images: images.map(({ index, label, split }) => ({ index, label, split })),
  pixels: i => Array.from(subjectOf(i, state.model).pixels),
  classify: (i, model) => subjectOf(i, modelArg(model)).probabilities.slice(),
  decode: (i, layer, channels, model) => {
    if (!Number.isInteger(layer) || layer < 1 || layer > LAYERS.length) throw new RangeError(`layer must be 1 to ${LAYERS.length}`);
    const m = modelArg(model);
    return Array.from(decodeLatents(subjectOf(i, m).latents, layer, channels, weightsOf(m)));
  },
  latents: (i, model) => {  // the pooled maps and PyTorch-style switches (flat index in each plane)
    const { z, index } = subjectOf(i, modelArg(model)).latents, out = {};
    LAYERS.forEach((L, k) => { out[`z${k + 1}`] = Array.from(z[k]); out[`index${k + 1}`] = Array.from(index[k]); });
    return out;
  },
  occlusion: (i, size, stride, model) => {
    const m = modelArg(model), subject = subjectOf(i, m);
    const target = subject.label === null ? argmax(subject.probabilities) : subject.label;
    const maps = occlusionMaps(subject.pixels, target, size, stride, weightsOf(m));
    return { probability: maps.probability, channels: maps.layers[LAYERS.length - 1], target, side: maps.side };
  },
  own: () => state.own && { pixels: Array.from(state.own.pixels), probabilities: ownAnalysed().probabilities.slice(),
                            width: state.own.width, height: state.own.height },
  state: () => ({ model: state.model.id, layer: state.layer, channels: state.channels.slice(), card: state.card,
                  image: state.own ? "own" : state.image, hash: location.hash }),
  ready: false,
};

setUp();
window.explorer.ready = true;
