// The channel explorer: the Task 2 network (encoder, classifier head, both decoders) in plain
// JavaScript over the weights embedded in this page. Tensors are flat Float32Arrays in
// channel-major (C, H, W) order, as in PyTorch; sums run in float64 and are stored as float32.
// Every shape (image size, channels, map sides, receptive fields) comes from DATA.architecture,
// the page's copy of models.ARCHITECTURE.describe(). Text from the data is set with textContent.
"use strict";

const DATA = JSON.parse(document.getElementById("explorer-data").textContent);
const ARCH = DATA.architecture;
const LAYERS = ARCH.layers;  // [{name, in_channels, channels, kernel, padding, pool, size_in, conv_size, size, receptive_field, stride, offset (padded nets only)}]
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


// --- the network ---

// zero padding of `p` units around each of C planes of H x W (what a padded conv reads)
function padPlanes(x, C, H, Wd, p) {
  if (!p) return x;
  const PH = H + 2 * p, PW = Wd + 2 * p, out = new Float32Array(C * PH * PW);
  for (let c = 0; c < C; c++) {
    for (let y = 0; y < H; y++) out.set(x.subarray((c * H + y) * Wd, (c * H + y + 1) * Wd), (c * PH + y + p) * PW + p);
  }
  return out;
}

// a k x k convolution, stride 1, `padding` zeros on each side (PyTorch's Conv2d)
function conv2d(x, C, H, Wd, layer, padding = 0) {
  if (padding) { x = padPlanes(x, C, H, Wd, padding); H += 2 * padding; Wd += 2 * padding; }
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
    const conv = relu(conv2d(h, L.in_channels, L.size_in, L.size_in, W[`conv${k + 1}`], L.padding || 0));
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

// PyTorch's ConvTranspose2d, stride 1: the full (H + k - 1)-wide result, less `padding` on each side
function convTranspose2d(x, C, H, Wd, layer, padding = 0) {
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
  if (!padding) return Float32Array.from(sum);
  const CH = OH - 2 * padding, CW = OW - 2 * padding, out = new Float32Array(O * CH * CW);
  for (let o = 0; o < O; o++) {
    for (let y = 0; y < CH; y++) {
      const from = (o * OH + y + padding) * OW + padding;
      out.set(sum.subarray(from, from + CW), (o * CH + y) * CW);
    }
  }
  return out;
}

function keepChannels(z, C, channels) {
  const out = new Float32Array(z.length), n = z.length / C;
  for (const c of channels) out.set(z.subarray(c * n, (c + 1) * n), c * n);
  return out;
}

// Decode z`layer` keeping only `channels` (the rest zero), with the image's own switches:
// z1 through the refitted layer-1 decoder when the model has one, deeper maps through the
// model's own Task 2 decoder (unpool, ReLU, transposed convolution, layer by layer).
// `refit` false decodes z1 with the model's own deconv1 too (side by side with a model that has
// no refitted one, both are read by the same kind of decoder).
function decodeLatents(latents, layer, channels, W, refit = true) {
  let h = keepChannels(latents.z[layer - 1], layerOf(layer).channels, channels);
  for (let k = layer; k >= 1; k--) {
    const L = layerOf(k);
    h = relu(unpool(h, latents.index[k - 1], L.channels, L.conv_size, L.conv_size));
    const decoder = k === 1 && layer === 1 && refit && W.deconv1_refit ? W.deconv1_refit : W[`deconv${k}`];
    h = convTranspose2d(h, L.channels, L.conv_size, L.conv_size, decoder, L.padding || 0);
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
// `target` and each channel's largest activation in every layer. Row-major maps; `probabilities`
// holds every class's probability per position. `onRow(r, n)` after each row (progress). This
// function and the ones it calls also run in the occlusion Web Worker (built from their source).
function occlusionMaps(pixels, target, size, stride, W, onRow) {
  if (!Number.isInteger(size) || size < 1 || size > SIDE) throw new RangeError(`size must be a whole number from 1 to ${SIDE}`);
  if (!Number.isInteger(stride) || stride < 1) throw new RangeError("stride must be a whole number >= 1");
  const x0 = normalize(pixels), n = Math.floor((SIDE - size) / stride) + 1;
  const probability = [], probabilities = [], layers = LAYERS.map(L => range(L.channels).map(() => []));
  for (let r = 0; r < n; r++) {
    for (let c = 0; c < n; c++) {
      const x = x0.slice();
      for (let ch = 0; ch < COLOURS; ch++) {
        for (let y = r * stride; y < r * stride + size; y++) x.fill(0, ch * PLANE + y * SIDE + c * stride, ch * PLANE + y * SIDE + c * stride + size);
      }
      const latents = encodeInput(x, W);
      const p = classifyLatents(latents, W);
      probabilities.push(p);
      probability.push(p[target]);
      LAYERS.forEach((L, k) => {
        const z = latents.z[k], m = L.size * L.size;
        for (let ch = 0; ch < L.channels; ch++) {
          let top = -Infinity;
          for (let i = ch * m; i < (ch + 1) * m; i++) if (z[i] > top) top = z[i];
          layers[k][ch].push(top);
        }
      });
    }
    if (onRow) onRow(r, n);
  }
  return { side: n, size, stride, target, probability, probabilities, layers };
}

// --- the models: one list of plain descriptions, labels derived from each model's metadata ---

// kind -> what the model is and what to look for (the page's only words about models)
const MODEL_TEXT = {
  trained: { what: "The network as trained: it learned to sort the photos into classes and, weighted by λ, to rebuild them from its maps.",
             look: "Tick single channels to see what each one keeps of the picture." },
  lambda: { what: "The same network and training as the trained model, with another λ.",
            look: "Does a larger λ rebuild the picture better from the maps, and what does it cost in correct predictions?" },
  random: { what: "The layers named here were reset to random numbers after training; the decoder was then fitted again to this random network's maps (the classifier on top was kept).",
            look: "If the pictures still look good while the predictions fail, good pictures show what the decoder and the network's shape can do, not what it learned." },
  permuted: { what: "Trained exactly like the trained model, but on labels shuffled at random, so there was nothing about the classes to learn.",
              look: "Whatever looks the same as in the trained model comes from the images and the network's shape, not from learning the classes." },
  other: { what: "A network of the same shape loaded from a checkpoint.", look: "Compare its maps and pictures with the trained model's side by side." },
};
const LAMBDA_TEXT = "λ (lambda) weighs the reconstruction loss against the classification loss in training: " +
  "λ = 0 trains for classifying only; a larger λ pushes the maps to keep what is needed to rebuild the picture.";
const lambdaText = lam => `λ = ${lam}`;

function modelLabel(m) {
  const lam = m.lambda === null || m.lambda === undefined ? "" : lambdaText(m.lambda);
  if (m.kind === "trained") return lam ? `trained (${lam})` : "trained";
  if (m.kind === "lambda") return `${lam}${m.lambda === 0 ? " (no reconstruction loss)" : ""}`;
  if (m.kind === "random") {
    const all = LAYERS.every((_, k) => m.randomised.includes(`conv${k + 1}`));
    return `random ${m.randomised.join(" + ")}` + (all ? " (all layers)" : `, other layers trained`);
  }
  if (m.kind === "permuted") return "trained on shuffled labels";
  return m.label;
}

const MODELS = DATA.models.map(m => ({ id: m.id, label: m.label, precision: m.precision, kind: m.kind || "other",
                                       lambda: m.lambda ?? null, randomised: m.randomised || [],
                                       raw: m.weights, W: null }));
for (const m of MODELS) m.name = modelLabel(m);
const TRAINED = MODELS[0];

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

// --- state ---

const images = DATA.images;
const cache = new Map();  // `${model}:${position}` -> {latents, probabilities}
const state = { model: TRAINED, image: DATA.start, own: null, layer: 1,
                channels: range(layerOf(1).channels), contribution: false, card: 0, side: false,
                scale: "layer", cell: null, occlusion: null, sheet: false, separate: false };

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

function current(model = state.model) {
  if (state.own) return { pixels: state.own.pixels, label: null, ...ownAnalysed(model) };
  return { pixels: pixelsAt(state.image), label: images[state.image].label, ...analysed(state.image, model) };
}

function modelArg(id) {
  if (id === undefined) return state.model;
  const model = modelById(id);
  if (!model) throw new RangeError(`no model ${id}; the page has ${MODELS.map(m => m.id).join(", ")}`);
  return model;
}

// whether z1 is read by a refitted layer-1 decoder: side by side, both models use the same kind
const hasRefit = m => Boolean(m.raw.deconv1_refit);
const ticksByLayer = new Map();  // layer -> {channels, card} chosen there, kept across switches

function refitFor(model) {
  if (!state.side || state.model === TRAINED) return true;
  return hasRefit(state.model) && hasRefit(TRAINED);
}

// --- numbers over the gallery: accuracy and mean PSNR per model (the takeaways) ---

const galleryStats = new Map();
function accuracyOf(model) {
  const key = `acc:${model.id}`;
  if (!galleryStats.has(key)) {
    const labelled = images.filter(im => im.split === "test");
    const right = images.reduce((n, im, i) => n + (im.split === "test" && argmax(analysed(i, model).probabilities) === im.label), 0);
    galleryStats.set(key, { right, of: labelled.length });
  }
  return galleryStats.get(key);
}

function meanPsnrOf(model, layer, refit) {
  const key = `psnr:${model.id}:${layer}:${refit}`;
  if (!galleryStats.has(key)) {
    const W = weightsOf(model), all = range(layerOf(layer).channels);
    const values = images.map((_, i) => psnr(decodeLatents(analysed(i, model).latents, layer, all, W, refit), pixelsAt(i)));
    galleryStats.set(key, values.reduce((a, b) => a + b, 0) / values.length);
  }
  return galleryStats.get(key);
}

// --- PSNR references for one image: the empty latent and blurred thumbnails (no network) ---

function thumbnailPsnr(pixels, k) {  // average-pool by k, upsample bilinearly (align_corners=False)
  const small = SIDE / k, x = Array.from(pixels, v => v / 255), out = new Float32Array(x.length);
  const pooled = new Float64Array(COLOURS * small * small);
  for (let c = 0; c < COLOURS; c++) for (let y = 0; y < SIDE; y++) for (let xx = 0; xx < SIDE; xx++) {
    pooled[(c * small + Math.floor(y / k)) * small + Math.floor(xx / k)] += x[c * PLANE + y * SIDE + xx] / (k * k);
  }
  const source = v => Math.min(small - 1, Math.max(0, (v + 0.5) / k - 0.5));
  for (let c = 0; c < COLOURS; c++) for (let y = 0; y < SIDE; y++) for (let xx = 0; xx < SIDE; xx++) {
    const sy = source(y), sx = source(xx), y0 = Math.floor(sy), x0 = Math.floor(sx);
    const y1 = Math.min(small - 1, y0 + 1), x1 = Math.min(small - 1, x0 + 1), fy = sy - y0, fx = sx - x0;
    const at = (a, b) => pooled[(c * small + a) * small + b];
    out[c * PLANE + y * SIDE + xx] = (1 - fy) * ((1 - fx) * at(y0, x0) + fx * at(y0, x1)) + fy * ((1 - fx) * at(y1, x0) + fx * at(y1, x1));
  }
  return psnr(out.map(v => 2 * v - 1), pixels);  // psnr() reads the decoder's [-1, 1] range
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

function drawMap(canvas, values, side, top, low = 0) {
  canvas.width = canvas.height = side;
  const ctx = canvas.getContext("2d"), image = ctx.createImageData(side, side);
  for (let p = 0; p < side * side; p++) image.data.set([...viridis((values[p] - low) / Math.max(top - low, 1e-12)), 255], 4 * p);
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
const dB = v => `${v.toFixed(1)} dB`;
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

// --- scales: this map / this layer (this image) / all images of the page; side by side, one scale for both models ---

function layerMaps(latents, layer) {
  const L = layerOf(layer), n = L.size * L.size, z = latents.z[layer - 1];
  return range(L.channels).map(c => z.subarray(c * n, (c + 1) * n));
}

const maxOf = values => values.reduce((a, v) => (v > a ? v : a), 0);
const allMax = new Map();  // `${model}:${layer}` -> max over every gallery image

function comparedModels() {
  return state.side && state.model !== TRAINED ? [state.model, TRAINED] : [state.model];
}

// the colour scale's top for map c: shared by the models shown side by side, unless each keeps
// its own (`only`: the model whose maps are drawn, when the scales are separate)
function scaleTop(c, only = null) {
  const models = only && state.separate ? [only] : comparedModels();
  const tops = models.map(model => {
    const maps = layerMaps(current(model).latents, state.layer);
    if (state.scale === "map") return maxOf(maps[c]);
    if (state.scale === "layer") return Math.max(...maps.map(maxOf));
    const key = `${model.id}:${state.layer}`;
    if (!allMax.has(key)) {
      allMax.set(key, Math.max(...images.map((_, i) => Math.max(...layerMaps(analysed(i, model).latents, state.layer).map(maxOf)))));
    }
    return Math.max(allMax.get(key), state.own ? Math.max(...maps.map(maxOf)) : 0);
  });
  return Math.max(...tops);
}

// the brightest channel (largest energy) of an image: what the page opens on
function brightestChannel(latents, layer) {
  const energy = layerMaps(latents, layer).map(m => m.reduce((a, v) => a + v * v, 0));
  return argmax(energy);
}

// --- rendering ---

let rendering = false;
function render() {
  rendering = true;
  const focusKey = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.key : undefined;
  try {
    renderView();
  } finally {
    if (focusKey) {
      const again = document.querySelector(`[data-key="${focusKey}"]`);
      if (again && again !== document.activeElement) again.focus({ preventScroll: true });
    }
    rendering = false;
  }
}

function renderView() {
  const now = current(), W = weightsOf(state.model), L = layerOf(state.layer);
  const name = subjectName(), refit = refitFor(state.model), all = range(L.channels);
  drawPixels($("original"), now.pixels, SIDE);
  $("original").setAttribute("aria-label", `original: ${name}, ${SIDE}×${SIDE} pixels`);
  $("original-caption").textContent = "original";
  const full = decodeLatents(now.latents, state.layer, all, W, refit);
  drawRGB($("full-decode"), full.map(v => v * 0.5 + 0.5));
  const fullPsnr = psnr(full, now.pixels);
  $("full-caption").textContent = `all ${L.channels} channels · ${dB(fullPsnr)}`;
  $("full-decode").setAttribute("aria-label", `rebuilt from all ${L.channels} ${L.name} channels, PSNR ${dB(fullPsnr)}`);
  const selected = decodeLatents(now.latents, state.layer, state.channels, W, refit);
  const chosen = state.channels.length === L.channels ? `all ${L.channels} ticked`
    : state.channels.length ? `channel${state.channels.length > 1 ? "s" : ""} ${runs(state.channels)}` : "no channel (empty)";
  const empty = decodeLatents(now.latents, state.layer, [], W, refit);
  const selectedPsnr = psnr(selected, now.pixels);
  if (state.contribution) {
    const d = selected.map((v, i) => v - empty[i]);
    const scale = Math.max(...d.map(Math.abs), 1e-12);
    drawRGB($("selected-decode"), d.map(v => 0.5 + v / (2 * scale)));
    $("selected-caption").textContent = `${chosen}: contribution (grey = 0, ±${fmt(scale)})`;
  } else {
    drawRGB($("selected-decode"), selected.map(v => v * 0.5 + 0.5));
    $("selected-caption").textContent = `${chosen} · ${dB(selectedPsnr)}`;
  }
  $("selected-decode").setAttribute("aria-label", `${state.contribution ? "contribution to the picture" : "picture rebuilt"} from ${L.name} ${chosen}, PSNR ${dB(selectedPsnr)}`);
  // side by side: the trained model from the same channels, same kind of decoder
  const comparing = state.side && state.model !== TRAINED;
  $("compare-figure").hidden = !comparing;
  if (comparing) {
    const trained = current(TRAINED);
    const other = decodeLatents(trained.latents, state.layer, state.channels, weightsOf(TRAINED), refit);
    drawRGB($("compare-decode"), other.map(v => v * 0.5 + 0.5));
    $("compare-caption").textContent = `${TRAINED.name}, ${chosen} · ${dB(psnr(other, trained.pixels))}`;
    $("compare-decode").setAttribute("aria-label", `the ${TRAINED.name} model's picture from the same channels, PSNR ${dB(psnr(other, trained.pixels))}`);
  }
  const thumbs = [8, 4].filter(k => SIDE % k === 0).map(k => `${SIDE / k}×${SIDE / k} thumbnail ${dB(thumbnailPsnr(now.pixels, k))}`);
  $("psnr-line").textContent = `dB = PSNR, closeness to the original (higher is closer); for reference: no channel ${dB(psnr(empty, now.pixels))}, ${thumbs.join(", ")}.`;
  $("image-title").textContent = imageTitle();
  renderPrediction(now);
  $("pictures-legend").textContent = "Pictures: the input; what the decoder rebuilds from the ticked channels only (the others set to zero); " +
    `and from every channel of ${L.name}. PSNR (peak signal-to-noise ratio, in dB) compares a picture with the original: higher is closer. ` +
    "Contribution view: the ticked channels' picture minus the picture from no channel; grey is zero.";
  renderDecoderNote(refit);
  for (const radio of document.querySelectorAll("input[name=layer]")) radio.checked = Number(radio.value) === state.layer;
  $("model").value = state.model.id;
  $("contribution").checked = state.contribution;
  $("side-by-side").checked = comparing;
  $("separate-label").hidden = !comparing;
  $("separate-scales").checked = Boolean(state.separate);
  $("side-by-side").disabled = state.model === TRAINED;
  renderModelNote(refit);
  renderMaps(now.latents);
  renderCard(now);
  renderOverview();
  renderOcclusion();
  for (const item of document.querySelectorAll("#gallery .thumb")) {
    const on = !state.own && Number(item.dataset.i) === state.image;
    item.classList.toggle("selected", on);
    item.setAttribute("aria-selected", String(on));
  }
}

function renderDecoderNote(refit) {
  const L = layerOf(state.layer), m = state.model;
  let text;
  if (state.layer === 1 && hasRefit(m) && refit) {
    text = m.kind === "trained" ? "z1 is rebuilt by a layer-1 decoder fitted afterwards to this network's real z1 maps (the one trained with the network only ever saw what the z2 decoder hands it)."
      : "z1 is rebuilt by a layer-1 decoder fitted afterwards to this model's own z1 maps.";
  } else if (state.layer === 1) {
    text = "z1 is rebuilt by the layer-1 decoder trained together with this network" +
      (hasRefit(m) ? " (side by side: the other model has no refitted one, so both use their own)." : ".");
  } else {
    text = `${L.name} is rebuilt by ` + (m.kind === "random" || m.kind === "permuted"
      ? "a decoder fitted afterwards to this model's own maps." : "the decoder trained together with this network.");
  }
  const halved = m.precision === "float32" ? ""
    : m.precision.endsWith("decoder") ? " Its decoder's numbers are stored at half precision, to keep this page small (its predictions and maps are exact)."
    : " Its classifier's numbers are stored at half precision (predictions within 0.1 % of the full ones).";
  $("decoder-note").textContent = text + halved;
  $("lambda-note").textContent = LAMBDA_TEXT;
}

let galleryPending = true;  // until the first gallery marks: the note's numbers need every image
function renderModelNote(refit) {
  const m = state.model, text = MODEL_TEXT[m.kind] || MODEL_TEXT.other, L = layerOf(state.layer);
  if (galleryPending) { $("model-note").textContent = `${m.name}: measuring the test images here…`; return; }
  const acc = accuracyOf(m), chance = acc.of / DATA.classes.length;
  let line = `${m.name}: `;
  if (m === TRAINED) {
    line += `${acc.right} of the ${acc.of} test images here predicted right (chance: ${+chance.toFixed(1)}); rebuilt from ${L.name} at ${dB(meanPsnrOf(m, state.layer, refit))} on average.`;
  } else {
    line += `${text.what} `;
    // like with like: both models read by the same kind of decoder (at z1 the refitted one only
    // where both have it, else each one's own Task 2 decoder), and the note says which
    const alike = state.layer !== 1 || (hasRefit(m) && hasRefit(TRAINED));
    const ours = meanPsnrOf(m, state.layer, alike), theirs = meanPsnrOf(TRAINED, state.layer, alike);
    const how = state.layer !== 1 ? `each through its own ${L.name} decoder`
      : alike ? "each through a layer-1 decoder refitted to its own z1"
      : "each through the layer-1 decoder it was trained with";
    const base = accuracyOf(TRAINED);
    line += `Takeaway: ${acc.right} of ${acc.of} test images here right (trained: ${base.right}, chance: ${+chance.toFixed(1)}); ` +
      `rebuilt from ${L.name} at ${dB(ours)} on average against the trained model's ${dB(theirs)}, ${how}. `;
    if (acc.right <= 2 * chance && ours >= theirs - 2) line += "It classifies near chance yet rebuilds the pictures about as well: a good picture is no proof of learning. ";
    else if (ours > theirs + 0.5) line += "It rebuilds the pictures better than the trained model. ";
    line += text.look;
  }
  $("model-note").textContent = line;
  const note = $("compare-note");
  const mismatch = state.side && m !== TRAINED && state.layer === 1 && hasRefit(m) !== hasRefit(TRAINED);
  note.hidden = !mismatch;
  note.textContent = mismatch ? "Note: only one of the two models has a layer-1 decoder fitted to its own z1 maps, so both z1 pictures here use the decoder each network was trained with; the trained model's z1 picture therefore differs from the one shown without side by side." : "";
}

function renderPrediction(now) {
  const ranked = now.probabilities.map((p, k) => [p, k]).sort((a, b) => b[0] - a[0]).slice(0, 3);
  const top = ranked[0][1];
  $("top3").setAttribute("aria-label", "the three most probable classes, with the network's probabilities");
  $("top3").replaceChildren(...ranked.map(([p, k]) => el("li", {}, `${className(k)}: ${(100 * p).toFixed(1)} %`)));
  let text = `Predicted: ${className(top)} (${(100 * ranked[0][0]).toFixed(1)} %)`;
  if (now.label !== null) {
    text += top === now.label ? " ✓ right" : ` ✗ wrong: it is a ${className(now.label)}`;
  }
  if ($("prediction").textContent !== text) $("prediction").textContent = text;  // announced once per change
  $("prediction").className = now.label === null ? "" : top === now.label ? "right" : "wrong";
}
// --- the maps: one roving-tabindex grid (one Tab stop; arrow keys move between cells and maps) ---

function gridColumns(count, container, minWidth) {
  // as few rows as fit, all of them as full as can be: 16 maps where 9 fit are two rows of 8
  // (not 9 + 7), where 7 fit three rows of 6, 6 and 4
  const width = container.clientWidth || container.getBoundingClientRect().width || minWidth;
  const gap = parseFloat(getComputedStyle(container).columnGap) || 0;
  const fit = Math.max(1, Math.min(count, Math.floor((width + gap) / (minWidth + gap))));
  return Math.ceil(count / Math.ceil(count / fit));
}

const MANY_MAPS = 64;  // above this many channels a map's box holds its tick and name only
function mapColumns() {
  const channels = layerOf(state.layer).channels;
  return gridColumns(channels, $("maps"), channels > MANY_MAPS ? 56 : channels > 8 ? 72 : 100);
}

function layoutMaps() {
  const columns = mapColumns();
  for (const grid of [$("maps"), $("compare-maps")]) grid.style.gridTemplateColumns = `repeat(${columns}, minmax(0, 1fr))`;
}

function renderMaps(latents) {
  const L = layerOf(state.layer), maps = layerMaps(latents, state.layer), side = L.size;
  const energy = maps.map(m => m.reduce((a, v) => a + v * v, 0));
  const total = energy.reduce((a, b) => a + b, 0) || 1;
  const active = Math.min(state.card, L.channels - 1);
  const boxes = maps.map((values, c) => {
    const on = state.channels.includes(c), top = scaleTop(c, state.model), peak = maxOf(values);
    const canvas = el("canvas", { ariaHidden: "true" });
    drawMap(canvas, values, side, top);
    const view = el("button", { type: "button", className: "map-view", tabIndex: c === active ? 0 : -1,
      dataset: { key: `map-${c}`, channel: String(c) }, ariaKeyshortcuts: "Enter Space O",
      ariaLabel: `${L.name} channel ${c} map, largest value ${fmt(peak)}, ${on ? "ticked" : "not ticked"}. ` +
        "Enter: show its card; Space: tick or untick; O: this channel only; arrow keys: move over cells and maps" }, canvas);
    view.addEventListener("click", () => pinCard(c));
    view.addEventListener("mousemove", event => hoverCell(event, view, c));
    view.addEventListener("mouseleave", () => { if (document.activeElement !== view) clearCell(); });
    view.addEventListener("keydown", event => mapKeys(event, c));
    view.addEventListener("focus", () => {
      if (rendering) return;
      if (!state.cell || state.cell.channel !== c) showCell(c, 0, 0);
      if (state.card !== c) { state.card = c; renderCard(current()); markActive(); }
    });
    view.addEventListener("blur", () => { if (!rendering) clearCell(); });
    const check = el("input", { type: "checkbox", className: "toggle", checked: on, tabIndex: -1,
      dataset: { key: `check-${c}`, channel: String(c) }, ariaLabel: `tick ${L.name} channel ${c}` });
    check.addEventListener("change", () => toggle(c));
    const only = el("button", { type: "button", className: "only", tabIndex: -1, dataset: { key: `only-${c}` },
      ariaLabel: `only ${L.name} channel ${c}` }, "only");
    only.addEventListener("click", () => { state.channels = [c]; state.card = c; update(); });
    const share = el("span", { className: "share", title: "share of this layer's activation energy (sum of squares) for this image" },
      `${(100 * energy[c] / total).toFixed(0)} %`);
    // a layer of many channels keeps each box small: its tick and name (the "only" button has
    // the O key, the largest value and share are in the map's name and the cell readout)
    const many = L.channels > MANY_MAPS;
    const label = el("div", { className: "map-label" }, el("label", { className: "tick" }, check, ` ch ${c}`),
      ...(many ? [] : [only]));
    const parts = many ? [view, label] : [view, label, el("div", { className: "map-max" }, `max ${fmt(peak)} · `, share)];
    return el("div", { className: "map" + (on ? " on" : "") + (state.card === c ? " pinned" : ""), dataset: { channel: String(c) } },
      ...parts);
  });
  $("maps").replaceChildren(...boxes);
  $("maps").classList.toggle("many", L.channels > MANY_MAPS);
  $("maps").setAttribute("aria-label", `${L.name}: ${L.channels} maps, one Tab stop; arrow keys move between cells and maps`);
  $("maps-help").textContent = `${L.channels} maps of ${L.name}, one per channel (bright = strong). Tick to use a channel in the picture; click a map for its card.`;
  // side by side: the trained model's maps of the same image, on the same colour scale
  const comparing = state.side && state.model !== TRAINED;
  $("compare-heading").hidden = $("compare-maps").hidden = !comparing;
  if (comparing) {
    const trainedMaps = layerMaps(current(TRAINED).latents, state.layer);
    $("compare-heading").textContent = `The ${TRAINED.name} model's maps of the same image, ` +
      (state.separate ? "on its own colour scale" : "same colour scale");
    $("compare-maps").replaceChildren(...trainedMaps.map((values, c) => {
      const canvas = el("canvas", { role: "img", ariaLabel: `${TRAINED.name}: ${L.name} channel ${c} map, largest value ${fmt(maxOf(values))}` });
      drawMap(canvas, values, side, scaleTop(c, TRAINED));
      return el("div", { className: "map compare" }, canvas, el("div", { className: "map-max" }, `ch ${c} · max ${fmt(maxOf(values))}`));
    }));
  } else $("compare-maps").replaceChildren();
  layoutMaps();
  const top = state.scale === "map" ? null : scaleTop(0, state.model);
  state.shownScale = top;
  $("bar-high").textContent = top === null ? "each map's own max" : fmt(top);
  $("colour-bar").setAttribute("aria-label", `colour scale from 0 (dark purple) to ${top === null ? "each map's own maximum" : fmt(top)} (yellow)`);
  $("scale-note").textContent = `A map shows one ${L.name} channel: ${L.size}×${L.size} cells, ` +
    `each seeing a ${L.receptive_field}×${L.receptive_field}-pixel patch (${L.stride} px apart). ` +
    ({ map: "Colours: each map scaled to its own maximum, so a nearly silent map looks as bright as a strong one.",
       layer: "Colours: one scale for this image's maps of this layer, so weak maps look dark.",
       all: "Colours: one scale for every image in this page (this layer)." })[state.scale] +
    (comparing ? (state.separate ? " Side by side, each model on its own scale (a random model's weak maps stay visible; brightness is not comparable across models)."
      : " Side by side, both models share the scale.") : " Each model has its own scale unless shown side by side.") +
    " “max” is a map's largest value; “%” its share of the layer's sum of squares for this image.";
  if (state.cell) showCell(state.cell.channel, state.cell.i, state.cell.j);
}

function markActive() {
  for (const view of document.querySelectorAll("#maps .map-view")) view.tabIndex = Number(view.dataset.channel) === state.card ? 0 : -1;
  for (const box of document.querySelectorAll("#maps .map")) box.classList.toggle("pinned", Number(box.dataset.channel) === state.card);
}

function cellValue(c, i, j) {
  const L = layerOf(state.layer);
  return current().latents.z[state.layer - 1][(c * L.size + i) * L.size + j];
}

// the pixels unit u of layer L sees along one axis, cut to the image: [first, last] and whether
// its field reaches past the border (a padded net's deep units see zeros there)
function fieldSpan(L, u) {
  const start = u * L.stride - (L.offset || 0), end = start + L.receptive_field - 1;
  return { first: Math.max(0, start), last: Math.min(SIDE - 1, end), cut: start < 0 || end > SIDE - 1 };
}

function showCell(c, i, j) {
  const L = layerOf(state.layer), value = cellValue(c, i, j);
  state.cell = { channel: c, i, j };
  const down = fieldSpan(L, i), across = fieldSpan(L, j);
  const original = $("original"), scale = original.clientWidth / SIDE, box = $("field-box");
  box.style.left = `${original.clientLeft + across.first * scale}px`;  // inside the canvas's border
  box.style.top = `${original.clientTop + down.first * scale}px`;
  box.style.width = `${(across.last - across.first + 1) * scale}px`;
  box.style.height = `${(down.last - down.first + 1) * scale}px`;
  box.hidden = false;
  $("cell-readout").textContent = `${L.name} ch ${c}, row ${i}, column ${j}: ${fmt(value)}; sees pixels ` +
    `${down.first}–${down.last} down, ${across.first}–${across.last} across (yellow square)` +
    (down.cut || across.cut ? `; its ${L.receptive_field}×${L.receptive_field} field reaches past the border, where it sees zeros` : "");
  const top = state.scale === "map" ? maxOf(layerMaps(current().latents, state.layer)[c]) : scaleTop(c);
  const marker = $("bar-marker");
  marker.style.left = `${100 * Math.min(1, value / Math.max(top, 1e-12))}%`;
  marker.hidden = false;
}

function clearCell() {
  state.cell = null;
  $("field-box").hidden = true;
  $("bar-marker").hidden = true;
  $("cell-readout").textContent = "Point at a map (or use the arrow keys) to read a cell and see the pixels it looks at.";
}

function hoverCell(event, view, c) {
  const side = layerOf(state.layer).size, rect = view.getBoundingClientRect();
  const j = Math.max(0, Math.min(side - 1, Math.floor((event.clientX - rect.left) / rect.width * side)));
  const i = Math.max(0, Math.min(side - 1, Math.floor((event.clientY - rect.top) / rect.height * side)));
  showCell(c, i, j);
}

function focusMap(c, i, j) {
  state.card = c;
  state.cell = { channel: c, i, j };
  markActive();
  const view = document.querySelector(`#maps .map-view[data-channel="${c}"]`);
  rendering = true;  // the blur of the old map and the focus of the new one keep the cell
  view.focus();
  rendering = false;
  showCell(c, i, j);
  renderCard(current());
}

function mapKeys(event, c) {
  const L = layerOf(state.layer), side = L.size, columns = mapColumns();
  const cell = state.cell && state.cell.channel === c ? state.cell : { i: 0, j: 0 };
  let { i, j } = cell, target = c;
  if (event.key === "ArrowLeft") { if (j > 0) j--; else if (c > 0) { target = c - 1; j = side - 1; } }
  else if (event.key === "ArrowRight") { if (j < side - 1) j++; else if (c < L.channels - 1) { target = c + 1; j = 0; } }
  else if (event.key === "ArrowUp") { if (i > 0) i--; else if (c - columns >= 0) { target = c - columns; i = side - 1; } }
  else if (event.key === "ArrowDown") { if (i < side - 1) i++; else if (c + columns < L.channels) { target = c + columns; i = 0; } }
  else if (event.key === "PageDown" || (event.ctrlKey && event.key === "ArrowRight")) { target = Math.min(c + 1, L.channels - 1); }
  else if (event.key === "PageUp" || (event.ctrlKey && event.key === "ArrowLeft")) { target = Math.max(c - 1, 0); }
  else if (event.key === "Home") { target = 0; i = j = 0; }
  else if (event.key === "End") { target = L.channels - 1; i = j = 0; }
  else if (event.key === " " || event.key === "Spacebar") { event.preventDefault(); toggle(c); return; }
  else if (event.key === "o" || event.key === "O") { event.preventDefault(); state.channels = [c]; state.card = c; update(); return; }
  else if (event.key === "Enter") { event.preventDefault(); pinCard(c); return; }
  else return;
  event.preventDefault();
  if (target !== c) focusMap(target, i, j);
  else showCell(c, i, j);
}

function toggle(c) {
  state.channels = state.channels.includes(c)
    ? state.channels.filter(x => x !== c) : [...state.channels, c].sort((a, b) => a - b);
  state.card = c;  // the card follows the channel just ticked
  update();
}

const phone = () => window.matchMedia("(max-width: 759px)").matches;

function pinCard(c, opener = null) {  // opener: "overview" when the layer overview opened it
  state.card = c;
  render();
  if (phone()) openSheet(opener);
}

// on phones the card opens as a bottom sheet over the page, with a way back to the maps
function openSheet(opener = null) {
  state.sheet = true;
  state.sheetOpener = opener;
  $("card").classList.add("sheet");
  document.body.classList.add("sheet-open");
  updatePadding();
  // the tapped map stays in view above the sheet (a small scroll at most, never a jump); a
  // card opened from elsewhere (the layer overview) leaves the page where it is
  const view = document.querySelector(`#maps .map-view[data-channel="${state.card}"]`);
  if (view && !opener) view.scrollIntoView({ block: "nearest" });
}

function closeSheet() {
  state.sheet = false;
  $("card").classList.remove("sheet");
  document.body.classList.remove("sheet-open");
  updatePadding();
  // back where the card was opened from: the overview's row (drawn anew since), or the map
  const view = document.querySelector(state.sheetOpener === "overview"
    ? `#overview-body button[data-channel="${state.card}"]` : `#maps .map-view[data-channel="${state.card}"]`);
  if (view) view.focus({ preventScroll: false });
  state.sheetOpener = null;
}

// --- the channel card: a plain headline, top-9 patches, a verdict; the statistics in details ---

let cardPixels = null;  // the cards' test images (DATA.card_images), decoded on first use
function patchPixels([image, top, left], side) {
  // one top patch: the side x side square at (top, left) of a card image, zeros past its border
  cardPixels = cardPixels || bytesOf(DATA.card_images);
  const out = new Uint8Array(COLOURS * side * side), start = image * COLOURS * PLANE;
  for (let c = 0; c < COLOURS; c++)
    for (let y = Math.max(0, -top); y < Math.min(side, SIDE - top); y++)
      for (let x = Math.max(0, -left); x < Math.min(side, SIDE - left); x++)
        out[(c * side + y) * side + x] = cardPixels[start + c * PLANE + (top + y) * SIDE + left + x];
  return out;
}

function cardsOf() {  // the channel cards describe the default (trained) model only
  if (!DATA.cards || state.model !== TRAINED) return null;
  return DATA.cards[layerOf(state.layer).name] || null;
}

const CLAIM_WORDS = { class: "class share", colour: "colour", brightness: "brightness", darkness: "darkness",
  edge: "edges", look: "patches", selective: "selectivity" };

// --- the whole network in one view (what CNN Explainer gives a newcomer): every step with its
// shape and what it does; each latent a button that shows its maps; then the mirror ---

function renderNetwork() {
  const shape = (c, s) => `${c}×${s}×${s}`, step = (what, does, layer) => {
    const label = el("span", { className: "step-what" }, what);
    const item = el("li", {}, layer ? el("button", { type: "button", dataset: { layer: String(layer) },
      ariaLabel: `${what}: show its maps` }, label) : label, el("span", { className: "step-does" }, does));
    if (layer) item.querySelector("button").addEventListener("click", () => {
      document.querySelector(`input[name=layer][value='${layer}']`).click();
      $("maps").scrollIntoView({ block: "nearest" });
    });
    return item;
  };
  const forward = [step(`input ${shape(ARCH.image_channels, ARCH.image_size)}`, "the photo's red, green and blue values")];
  LAYERS.forEach((L, k) => {
    const padded = L.padding ? `, padding ${L.padding}` : "";
    forward.push(step(`conv${k + 1}: ${L.channels} filters ${L.kernel}×${L.kernel}${padded} → ${shape(L.channels, L.conv_size)}`,
      "each filter slides over the maps below and sums what it sees"));
    forward.push(step("ReLU", "negative values become zero"));
    forward.push(step(`max-pool ${L.pool}×${L.pool} → ${L.name} ${shape(L.channels, L.size)}`,
      `keeps the largest value of each ${L.pool}×${L.pool} block and remembers where it was (the switches)`, k + 1));
  });
  const widths = ARCH.fc;
  forward.push(step(`fully connected ${widths.join(" → ")}`, "the last maps flattened, then mixed into one score per class"));
  forward.push(step(`${DATA.classes.length} class scores`, "softmax turns them into the probabilities shown above"));
  $("network-steps").replaceChildren(...forward);
  const mirror = [];
  for (let k = LAYERS.length; k >= 1; k--) {
    const L = layerOf(k);
    mirror.push(step(`unpool ${L.name} → ${shape(L.channels, L.conv_size)}`, "each value goes back to where the switch says its maximum was; the rest is zero"));
    mirror.push(step("ReLU", "as in the network"));
    mirror.push(step(`deconv${k}: transposed convolution → ${k > 1 ? shape(layerOf(k - 1).channels, layerOf(k - 1).size) : `picture ${shape(ARCH.image_channels, ARCH.image_size)}`}`,
      "the filters run backwards, spreading each value over the pixels it came from"));
  }
  $("mirror-steps").replaceChildren(...mirror);
}

// --- the layer at a glance: one sortable row per channel, each opening its card ---

const OVERVIEW_COLUMNS = [
  { key: "channel", label: "channel", value: card => card.channel, text: card => `${layerOf(state.layer).name}:${card.channel}` },
  { key: "class", label: "top class (share)", value: card => topClass(card)[1],
    text: card => { const [name, share] = topClass(card); return `${name} ${share.toFixed(0)} %`; } },
  { key: "colour", label: "colour r", value: card => colourR(card), text: card => signed(colourR(card)) },
  { key: "luminance", label: "brightness r", value: card => card.correlations.luminance, text: card => signed(card.correlations.luminance) },
  { key: "edges", label: "edges r", value: card => card.correlations["gradient energy"], text: card => signed(card.correlations["gradient energy"]) },
  { key: "learned", label: "learned", value: card => (verdictOf(card) || { learned: [] }).learned.length,
    text: card => verdictWords(card, "learned") },
  { key: "single", label: "one channel’s", value: card => (verdictOf(card) || { single: [] }).single.length,
    text: card => verdictWords(card, "single") },
];
// a question's survivors, "none" when the channel was tested and nothing survived, "not tested"
const verdictWords = (card, key) => { const v = verdictOf(card); return !v ? "not tested" : v[key].join(", ") || "none"; };
const overviewSort = { key: "channel", descending: false };
const topClass = card => Object.entries(card.top_k_classes).sort((a, b) => b[1] - a[1])[0] || ["–", 0];
// the stronger of the two colour oppositions, with its sign (blue-yellow or red-green)
const colourR = card => [card.correlations["B-(R+G)/2"], card.correlations["R-G"]]
  .reduce((best, v) => Math.abs(v) > Math.abs(best) ? v : best, 0);
const signed = v => (v >= 0 ? "+" : "−") + Math.abs(v).toFixed(2);

function renderOverview() {
  const cards = cardsOf(), L = layerOf(state.layer);
  $("overview").hidden = !DATA.cards;
  if (!DATA.cards) return;
  $("overview-note").textContent = cards
    ? "Sort by a column; a channel's name opens its card. r: correlation over the test images with " +
      "colour opposition, brightness and edge strength; learned / one channel’s: what survived each of the report's two questions."
    : `The table describes the trained model; switch the model back to “${TRAINED.name}” to read it.`;
  $("overview-caption").textContent = `${L.name}: ${L.channels} channels` +
    (cards ? `, sorted by ${OVERVIEW_COLUMNS.find(c => c.key === overviewSort.key).label}` : "");
  $("overview-head").replaceChildren(...OVERVIEW_COLUMNS.map(column => {
    const sorted = overviewSort.key === column.key;
    const button = el("button", { type: "button", dataset: { sort: column.key } }, column.label);
    button.addEventListener("click", () => {
      overviewSort.descending = sorted ? !overviewSort.descending : column.key !== "channel";
      overviewSort.key = column.key;
      renderOverview();
      $("overview-head").querySelector(`button[data-sort="${column.key}"]`).focus();
    });
    return el("th", { scope: "col", ariaSort: sorted ? (overviewSort.descending ? "descending" : "ascending") : "none" }, button);
  }));
  if (!cards) { $("overview-body").replaceChildren(); return; }
  const column = OVERVIEW_COLUMNS.find(c => c.key === overviewSort.key);
  const rows = cards.slice().sort((a, b) => (column.value(a) - column.value(b)) * (overviewSort.descending ? -1 : 1) || a.channel - b.channel);
  $("overview-body").replaceChildren(...rows.map(card => {
    const open = el("button", { type: "button", className: "link", dataset: { channel: String(card.channel) },
      ariaLabel: `open the card of ${L.name} channel ${card.channel}` }, OVERVIEW_COLUMNS[0].text(card));
    open.addEventListener("click", () => { pinCard(card.channel, "overview"); $("card").focus({ preventScroll: true }); });
    return el("tr", { className: card.channel === state.card ? "pinned" : "" },
      el("th", { scope: "row" }, open), ...OVERVIEW_COLUMNS.slice(1).map(c => el("td", {}, c.text(card))));
  }));
}

function verdictOf(card) {
  // the report's two questions, each against its own null (Holm-corrected): which of the
  // channel's findings training made (against random networks), and which are a single
  // channel's rather than the layer's (against rotations of the trained layer); null: untested
  const claims = card.claims || [];
  if (!claims.length) return null;
  const words = key => [...new Set(claims.filter(claim => claim[key] === true).map(claim => CLAIM_WORDS[claim.rule] || String(claim.rule)))];
  return { learned: words("learned"), single: words("single_channel") };
}

function badgeOf(verdict) {
  if (verdict === null) return ["not tested", "untested"];
  const parts = [];
  if (verdict.learned.length) parts.push(`learned: ${verdict.learned.join(", ")}`);
  if (verdict.single.length) parts.push(`one channel’s: ${verdict.single.join(", ")}`);
  return parts.length ? [parts.join(" · "), "yes"] : ["same as random networks", "none"];
}

function headlineOf(card) {
  const roles = card.roles || [], look = roles.filter(r => r.kind === "look");
  const looks = (look.length ? look : roles.filter(r => r.kind !== "class" && r.kind !== "selective")).map(r => r.words);
  const ranked = Object.entries(card.top_k_classes).sort((a, b) => b[1] - a[1]);
  const chance = 100 / DATA.classes.length;
  const first = looks.length ? `Fires on ${looks.join(", ")}` : "No simple colour, brightness or edge rule fits";
  return `${first}; ${ranked[0][1].toFixed(0)} % of its ${card.top_k} strongest test images are ${ranked[0][0]} (chance ${+chance.toFixed(1)} %).`;
}

function renderCard(now) {
  const L = layerOf(state.layer), c = Math.min(state.card, L.channels - 1);
  const values = layerMaps(now.latents, state.layer)[c];
  $("card-title").textContent = `${L.name} channel ${c}`;
  $("card-now").textContent = `In this image: largest value ${fmt(maxOf(values))}, ` +
    `${values.filter(v => v > 0).length} of ${values.length} cells above zero; ` +
    `${state.channels.includes(c) ? "ticked" : "not ticked"}.`;
  for (const box of document.querySelectorAll("#maps .map")) box.classList.toggle("pinned", Number(box.dataset.channel) === c);
  const cards = cardsOf(), card = cards && cards[c];
  const patches = $("card-patches");
  if (!card) {
    $("card-badge").textContent = "";
    $("card-badge").className = "badge";
    $("card-headline").textContent = !DATA.cards ? "This page has no channel descriptions (build it with the channel statistics to add them)."
      : `The channel descriptions describe the trained model; switch the model back to “${TRAINED.name}” to read them.`;
    $("card-finding").textContent = "";
    patches.replaceChildren();
    $("card-classes").replaceChildren();
    $("card-correlations").replaceChildren();
    $("card-legend").replaceChildren();
    $("card-details").hidden = true;
    return;
  }
  $("card-details").hidden = false;
  const [badge, kind] = badgeOf(verdictOf(card));
  $("card-badge").textContent = badge;
  $("card-badge").className = `badge ${kind}`;
  $("card-headline").textContent = headlineOf(card);
  patches.replaceChildren(...card.patches.map((patch, k) => {
    const canvas = el("canvas", { role: "img", ariaLabel: `strongest patch ${k + 1}: ${card.patch_classes[k]}`, title: `strongest patch ${k + 1}: ${card.patch_classes[k]}` });
    // a patch is embedded (base64 pixels), or cut here from its test image (a wide field)
    drawPixels(canvas, typeof patch === "string" ? bytesOf(patch) : patchPixels(patch, card.patch_size), card.patch_size);
    return canvas;
  }));
  patches.setAttribute("aria-label", `the ${card.patches.length} test patches (${card.patch_size}×${card.patch_size} px, what one cell sees) where this channel is strongest`);
  $("card-finding").textContent = card.finding;
  const rows = Object.entries(card.top_k_classes).sort((a, b) => b[1] - a[1]);
  $("card-classes").replaceChildren(el("caption", {}, `classes of its top-${card.top_k} test images`),
    ...rows.map(([cls, share]) => {
      const bar = el("span", { className: "bar" });
      bar.style.width = `${Math.max(0, share)}px`;
      return el("tr", {}, el("td", {}, cls), el("td", {}, `${share.toFixed(0)} %`), el("td", {}, bar));
    }));
  $("card-correlations").replaceChildren(el("caption", {}, "correlation r with local image measures"),
    ...Object.entries(card.correlations).map(([measure, r]) => el("tr", {}, el("td", {}, measure), el("td", {}, r.toFixed(2)))));
  const terms = [
    ["learned", "a finding of this channel that is stronger than in hundreds of networks whose layers were reset to random numbers, after allowing for the number of findings tested: training made it."],
    ["one channel’s", "a finding stronger than in hundreds of mixes of the trained layer's channels along random directions: it belongs to this channel, not to the layer as a whole. “Same as random networks”: no finding passes either test."],
    ["baseline", "a network that has not learned (random layers, shuffled labels, or the trained channels mixed by a random rotation), measured the same way, to tell what training adds."],
    ["top-9 patches", "the pixels one cell sees, cut from the test images where this channel is largest."],
    ["class-dominant", "one class makes up at least a set share of the channel's strongest test images."],
    ["selectivity", "(best class − other classes) / (best class + other classes) of the channel's mean response: 0 = the same for all classes, 1 = only one class."],
    ["r", "Pearson correlation, over positions, between the channel and a measure of the patch it sees: luminance, R-G (red minus green), B-(R+G)/2 (blue minus yellow), gradient energy (edges)."],
    ["d", "effect size (Cohen's d) of the top patches against random patches; |d| ≥ 0.8 is large."],
    ["corrected p", "the p-value of the class share against chance, multiplied by the number of tests (Bonferroni)."],
    ["± … of N channels (seeds)", "how many channels of the baseline networks meet the same rule: mean ± standard deviation over the random networks drawn."],
    ["projections, mean r", "how alike the channel's nine top pictures rebuilt by the decoder are; more alike than the patches means they show the decoder more than the images."],
  ];
  $("card-legend").replaceChildren(...terms.flatMap(([term, text]) => [el("dt", {}, term), el("dd", {}, text)]));
}
// --- occlusion: computed in a Web Worker built from this page's own network code (chunks of rows
// on the main thread if a worker cannot start), so the page stays responsive ---

const WORKER_CODE = [padPlanes, conv2d, relu, maxPool, linear, normalize, encodeInput, classifyLatents, occlusionMaps];
let worker = null, workerFailed = false, jobSerial = 0;

function startWorker() {
  if (worker || workerFailed) return worker;
  try {
    const source = ["\"use strict\";",
      `const ARCH = ${JSON.stringify(ARCH)};`,
      "const LAYERS = ARCH.layers, SIDE = ARCH.image_size, COLOURS = ARCH.image_channels, PLANE = SIDE * SIDE;",
      `const range = ${range.toString()};`,
      ...WORKER_CODE.map(f => f.toString()),
      "onmessage = event => { const { id, pixels, target, size, stride, W } = event.data;",
      "  try { const maps = occlusionMaps(pixels, target, size, stride, W, (r, n) => postMessage({ id, progress: (r + 1) / n }));",
      "        postMessage({ id, maps }); } catch (error) { postMessage({ id, error: String(error) }); } };"].join("\n");
    const url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
    worker = new Worker(url);
    worker.addEventListener("error", event => { event.preventDefault(); workerFailed = true; worker = null; });
  } catch (error) {
    workerFailed = true;
    worker = null;
  }
  return worker;
}

// main-thread fallback: one row of positions per task, so no step blocks the page for long
function occlusionInChunks(pixels, target, size, stride, W, onProgress) {
  return new Promise((resolve, reject) => {
    const x0 = normalize(pixels), n = Math.floor((SIDE - size) / stride) + 1;
    const maps = { side: n, size, stride, target, probability: [], probabilities: [], layers: LAYERS.map(L => range(L.channels).map(() => [])) };
    let r = 0;
    const step = () => {
      try {
        for (let c = 0; c < n; c++) {
          const x = x0.slice();
          for (let ch = 0; ch < COLOURS; ch++) for (let y = r * stride; y < r * stride + size; y++) {
            x.fill(0, ch * PLANE + y * SIDE + c * stride, ch * PLANE + y * SIDE + c * stride + size);
          }
          const latents = encodeInput(x, W), p = classifyLatents(latents, W);
          maps.probabilities.push(p);
          maps.probability.push(p[target]);
          LAYERS.forEach((L, k) => {
            const z = latents.z[k], m = L.size * L.size;
            for (let q = 0; q < L.channels; q++) maps.layers[k][q].push(maxOf(z.subarray(q * m, (q + 1) * m)));
          });
        }
      } catch (error) { reject(error); return; }
      r++;
      onProgress(r / n);
      if (r < n) setTimeout(step, 0);
      else resolve(maps);
    };
    setTimeout(step, 0);
  });
}

function computeOcclusion(pixels, target, size, stride, model, onProgress) {
  const W = weightsOf(model), w = startWorker();
  if (!w) return occlusionInChunks(pixels, target, size, stride, W, onProgress);
  const id = ++jobSerial;
  return new Promise((resolve, reject) => {
    const listen = event => {
      if (event.data.id !== id) return;
      if (event.data.progress !== undefined) { onProgress(event.data.progress); return; }
      w.removeEventListener("message", listen);
      if (event.data.error) reject(new Error(event.data.error));
      else resolve(event.data.maps);
    };
    w.addEventListener("message", listen);
    w.postMessage({ id, pixels: Uint8Array.from(pixels), target, size, stride, W });
  });
}

function occlusionSettings() {
  return { size: Number($("occlusion-size").value), stride: Number($("occlusion-stride").value) };
}

function occlusionKey() {
  const { size, stride } = occlusionSettings();
  return [state.model.id, state.own ? `own:${state.own.serial}` : state.image, size, stride].join(":");
}

let occlusionRun = null;
function runOcclusion() {
  if (!$("occlusion-panel").open) $("occlusion-panel").open = true;
  const key = occlusionKey();
  if ((state.occlusion && state.occlusion.key === key) || (occlusionRun && occlusionRun.key === key)) { renderOcclusion(); return; }
  const { size, stride } = occlusionSettings(), now = current(), model = state.model;
  const run = occlusionRun = { key };
  $("occlusion-status").textContent = "computing… 0 %";
  computeOcclusion(now.pixels, argmax(now.probabilities), size, stride, model, fraction => {
    if (occlusionRun === run) $("occlusion-status").textContent = `computing… ${Math.round(100 * fraction)} %`;
  }).then(maps => {
    if (occlusionRun !== run) return;
    occlusionRun = null;
    state.occlusion = { key, maps, model: model.id };
    renderOcclusion();
  }).catch(error => {
    if (occlusionRun === run) { occlusionRun = null; $("occlusion-status").textContent = `could not compute: ${error.message}`; }
  });
}

function overlayOn(canvas, pixels, values, maps, low, high) {
  // each pixel takes the value of the square position centred nearest to it, over the photo
  canvas.width = canvas.height = SIDE;
  const ctx = canvas.getContext("2d"), image = ctx.createImageData(SIDE, SIDE), n = maps.side;
  const nearest = v => Math.max(0, Math.min(n - 1, Math.round((v + 0.5 - maps.size / 2) / maps.stride)));
  for (let y = 0; y < SIDE; y++) for (let x = 0; x < SIDE; x++) {
    const p = y * SIDE + x, colour = viridis((values[nearest(y) * n + nearest(x)] - low) / Math.max(high - low, 1e-12));
    for (let c = 0; c < 3; c++) image.data[4 * p + c] = Math.round(0.35 * pixels[Math.min(c, COLOURS - 1) * PLANE + p] + 0.65 * colour[c]);
    image.data[4 * p + 3] = 255;
  }
  ctx.putImageData(image, 0, 0);
}

function renderOcclusion() {
  const L = layerOf(state.layer), { size, stride } = occlusionSettings(), now = current();
  $("occlusion-note").textContent = `A ${size}×${size} grey square is moved over the image in steps of ${stride} px and the network is run ` +
    "for each position (Zeiler & Fergus 2014, Fig. 7). Left: the probability of the chosen class; right: the card's channel's largest value. " +
    "Dark where hiding that part of the image lowers it: that is what the network relies on.";
  $("occlusion-target").disabled = now.label === null;
  if (!$("occlusion-panel").open) return;
  if (!state.occlusion || state.occlusion.key !== occlusionKey()) {
    if (!occlusionRun || occlusionRun.key !== occlusionKey()) runOcclusion();
    return;
  }
  const maps = state.occlusion.maps, c = Math.min(state.card, L.channels - 1);
  const predicted = argmax(now.probabilities);
  const useTrue = $("occlusion-target").value === "true" && now.label !== null;
  const target = useTrue ? now.label : predicted;
  const values = maps.probabilities.map(p => p[target]);
  const own = $("occlusion-scale").value === "own";
  const low = own ? Math.min(...values) : 0, high = own ? Math.max(...values) : 1;
  const overlay = $("occlusion-overlay").checked;
  if (overlay) overlayOn($("occlusion-probability"), now.pixels, values, maps, low, high);
  else drawMap($("occlusion-probability"), values, maps.side, high, low);
  const kind = target === predicted ? "predicted class" : "true class";
  const range_ = `${fmt(Math.min(...values))} to ${fmt(Math.max(...values))}`;
  $("occlusion-probability-caption").textContent = `probability of ${className(target)} (${kind}), from ${range_}; colours ${fmt(low)}–${fmt(high)}`;
  $("occlusion-probability").setAttribute("aria-label", `occlusion map: probability of ${className(target)} for each position of the square, from ${range_}`);
  $("occlusion-low").textContent = fmt(low);
  $("occlusion-high").textContent = fmt(high);
  $("occlusion-bar").setAttribute("aria-label", `occlusion colour scale from ${fmt(low)} (dark purple) to ${fmt(high)} (yellow)`);
  const channel = maps.layers[state.layer - 1][c];
  const unoccluded = maxOf(layerMaps(now.latents, state.layer)[c]), top = Math.max(unoccluded, ...channel);
  const cLow = own ? Math.min(...channel) : 0, cHigh = own ? Math.max(...channel) : top;
  if (overlay) overlayOn($("occlusion-channel"), now.pixels, channel, maps, cLow, cHigh);
  else drawMap($("occlusion-channel"), channel, maps.side, cHigh, cLow);
  $("occlusion-channel-caption").textContent = `${L.name} channel ${c}'s largest value (${fmt(unoccluded)} without the square); colours ${fmt(cLow)}–${fmt(cHigh)}`;
  $("occlusion-channel").setAttribute("aria-label", `occlusion map: ${L.name} channel ${c}'s largest value for each position of the square`);
  $("occlusion-status").textContent = `done: ${maps.side}×${maps.side} positions`;
}

// --- the link: #test=3000&z=2&ch=3,5[&model=id], #train=N, #own ---

function hashOf() {
  const params = [];
  if (state.own) params.push("own");
  else params.push(`${images[state.image].split}=${images[state.image].index}`);
  params.push(`z=${state.layer}`, `ch=${state.channels.join(",")}`);
  if (state.model !== TRAINED) params.push(`model=${encodeURIComponent(state.model.id)}`);
  if (state.side && state.model !== TRAINED) params.push("side=1");
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
  const known = new Set(["test", "train", "own", "z", "ch", "model", "img", "side"]);
  for (const key of params.keys()) if (!known.has(key)) problems.push(`"${key}" is not a setting of this page (it knows test, train, z, ch, model, side)`);
  if (params.has("model")) {
    const model = modelById(params.get("model"));
    if (model) state.model = model;
    else problems.push(`there is no model "${params.get("model")}" (this page has ${MODELS.map(m => m.id).join(", ")})`);
  } else state.model = TRAINED;
  state.side = params.get("side") === "1";
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
  // a link that ticks channels opens the card of the first one it ticks (not channel 0's)
  if (params.has("ch") && state.channels.length && !state.channels.includes(state.card)) {
    state.card = state.channels[0];
  }
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

let markRun = 0;
function markGallery(done = () => {}) {
  // right/wrong marks for the current model: a few thumbnails per task, so that the page is
  // drawn and answers meanwhile (a deep net runs each gallery image through all its layers);
  // a newer call (another model) supersedes a running one
  const run = ++markRun, items = [...document.querySelectorAll("#gallery .thumb")];
  const step = start => {
    if (run !== markRun) return;
    const until = performance.now() + 30;  // under a frame's worth of work per task
    let k = start;
    for (; k < items.length && (k === start || performance.now() < until); k++) markThumb(items[k]);
    if (k < items.length) { setTimeout(() => step(k), 0); return; }
    filterGallery();
    done();
  };
  step(0);
}

function markThumb(item) {  // one thumbnail: right or wrong, in its mark and its name
  const i = Number(item.dataset.i), entry = images[i];
  const predicted = argmax(analysed(i).probabilities), right = predicted === entry.label;
  item.dataset.right = String(right);
  item.classList.toggle("wrong", !right);
  item.querySelector(".mark").textContent = right ? "" : "✗";
  item.setAttribute("aria-label", `${entry.split} image ${entry.index}: ${className(entry.label)}, predicted ${className(predicted)}` +
    (right ? "" : " (wrong)") + (entry.note ? `, ${entry.note}` : ""));
  item.title = item.getAttribute("aria-label");
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
  $("gallery-hint").textContent = (shown.length === 0
    ? `No image matches these filters (0 of ${images.length}); choose “all” in a filter to see more. `
    : `${shown.length === images.length ? "" : `${shown.length} of `}${images.length} images; `) +
    "✗ marks a wrong prediction of the chosen model. Keyboard: arrow keys move, Enter picks.";
}

function chooseImage(i) {
  state.own = null;
  state.image = i;
  clearFileError();
  showLinkProblems([]);  // an old link's problems no longer describe the view
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
  const probe = el("canvas", { width: SIDE, height: SIDE }).getContext("2d");  // any transparency?
  probe.drawImage(bitmap, sx, sy, square, square, 0, 0, SIDE, SIDE);
  const alpha = probe.getImageData(0, 0, SIDE, SIDE).data;
  let transparent = false;
  for (let p = 3; p < alpha.length; p += 4) if (alpha[p] < 255) { transparent = true; break; }
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
  return { name, width, height, square, crop: [sx, sy], pixels, transparent };
}

async function loadOwn(file, note = "") {
  const message = $("own-message");
  try {
    if (!file) return;
    message.textContent = `reading "${file.name}"…`;
    const image = await readOwnImage(file);
    state.own = lastOwn = { ...image, serial: ++ownSerial, byModel: new Map() };
    clearFileError();
    showLinkProblems([]);
    const cropped = image.width === image.height ? "already square, so not cropped"
      : `centre ${image.square}×${image.square} square cropped (${image.width > image.height ? "left and right" : "top and bottom"} cut off, not stretched)`;
    message.textContent = `${note}Your image "${image.name}" is ${image.width}×${image.height} px: ${cropped}, ` +
      `then resized to ${SIDE}×${SIDE}` + (image.transparent ? "; its transparent parts are shown on white" : "") +
      ". It is not in the link: own images cannot be shared.";
    update(true);
    // the answer where the user acted: the prediction beside the control, not only at the top
    message.textContent += ` The network's answer: ${$("prediction").textContent}`;
  } catch (error) {
    const text = error instanceof UserError ? error.message : `"${file && file.name}" could not be read (${error.message})`;
    message.textContent = "";
    $("file-error").textContent = `Your file was not used: ${text}. Still showing ${subjectName()}, as before.`;
    $("file-error").hidden = false;
  } finally {
    $("own-file").value = "";  // the same file chosen again is read again
  }
}

function dropped(event) {
  const files = [...event.dataTransfer.files];
  if (!files.length) {
    $("file-error").textContent = `Nothing was used: what was dropped is ${event.dataTransfer.types.includes("text/plain") ? "text" : "not a file"}; drop an image file (PNG or JPEG). Still showing ${subjectName()}.`;
    $("file-error").hidden = false;
    return;
  }
  loadOwn(files[0], files.length > 1 ? `${files.length} files were dropped; only the first, "${files[0].name}", is used. ` : "");
}
// --- layout helpers: focus is never hidden under the pinned pictures (or the bottom sheet) ---

function updatePadding() {
  const stage = $("stage"), sticky = getComputedStyle(stage).position === "sticky";
  const top = sticky ? stage.getBoundingClientRect().height + 8 : 8;
  document.documentElement.style.scrollPaddingTop = `${Math.ceil(top)}px`;
  const sheet = state.sheet ? $("card").getBoundingClientRect().height + 8 : 8;
  document.documentElement.style.scrollPaddingBottom = `${Math.ceil(sheet)}px`;
}

function setUp() {
  $("tagline").textContent = `A small network sorts photos into ${DATA.classes.length} classes; a decoder turns its maps back into a picture.`;
  $("about-text").textContent =
    `The network (${DATA.network === "tutorial" ? "the PyTorch CIFAR-10 tutorial's" : "built like the PyTorch CIFAR-10 tutorial's, with its own layers and channels"}) ` +
    `looks at a photo through ${LAYERS.length} layers. Each layer produces maps, one per channel: ` +
    "a bright cell means that channel responds strongly to the patch of the photo under it. A decoder that mirrors the network " +
    "(Zeiler & Fergus 2014: it undoes the pooling at the remembered positions, then runs the filters backwards) turns maps back into a picture. " +
    LAYERS.map(L => `${L.name}: ${L.channels} maps of ${L.size}×${L.size} cells, each seeing ${L.receptive_field}×${L.receptive_field} pixels.`).join(" ") +
    " Everything is computed in this page from the embedded network: predictions, maps, pictures and occlusion.";
  renderNetwork();
  const touch = window.matchMedia("(pointer: coarse)").matches;
  $("maps-keys").textContent = touch
    ? "Tap a map to read a cell and show its card; tap its box to tick it."
    : "Keys on a map: arrows move one cell; Page Up / Page Down (or Ctrl+arrows) the previous / next map; " +
      "Home / End the first / last map; Space ticks or unticks; O: this channel only; Enter: its card.";
  const steps = [
    touch ? "Tick one channel at a time (tap its box): the second picture is rebuilt from the ticked channels only."
      : "Tick one channel at a time (click its box, or Space on a focused map): the second picture is rebuilt from the ticked channels only.",
    touch ? "Tap a map: the yellow square on the photo shows the pixels that cell looks at."
      : "Point at a map, or use the arrow keys: the yellow square on the photo shows the pixels that cell looks at.",
    MODELS.length > 1 ? "Switch the model to a random one and tick “side by side”: do the pictures survive when the predictions do not?"
      : "Open “Occlusion” below: where does hiding part of the photo change the prediction?",
  ];
  $("try-steps").replaceChildren(...steps.map(text => el("li", {}, text)));
  // the model switch: trained first, the λ models in order, then the baselines; labels from metadata
  const models = $("model");
  const groups = [["", MODELS.filter(m => m === TRAINED)],
    ["same training, other λ", MODELS.filter(m => m !== TRAINED && m.kind === "lambda").sort((a, b) => a.lambda - b.lambda)],
    ["networks that did not learn", MODELS.filter(m => m !== TRAINED && (m.kind === "random" || m.kind === "permuted"))],
    ["other models", MODELS.filter(m => m !== TRAINED && !["lambda", "random", "permuted"].includes(m.kind))]];
  for (const [label, list] of groups) {
    if (!list.length) continue;
    const parent = label ? models.appendChild(el("optgroup", { label })) : models;
    for (const m of list) parent.appendChild(new Option(m.name, m.id));
  }
  models.disabled = MODELS.length < 2;
  $("side-label").hidden = MODELS.length < 2;
  models.addEventListener("change", () => {
    state.model = modelById(models.value);
    markGallery();
    update();
  });
  $("side-by-side").addEventListener("change", event => { state.side = event.target.checked; update(); });
  $("separate-scales").addEventListener("change", event => { state.separate = event.target.checked; render(); });
  $("layer-choice").replaceChildren(...LAYERS.map((L, k) => {
    const radio = el("input", { type: "radio", name: "layer", value: String(k + 1), checked: k === 0, dataset: { key: `layer-${k + 1}` } });
    radio.addEventListener("change", () => {
      // each layer keeps its own ticks and card: back on a layer, what was chosen there returns
      ticksByLayer.set(state.layer, { channels: state.channels, card: state.card });
      state.layer = k + 1;
      const kept = ticksByLayer.get(state.layer);
      state.channels = kept ? kept.channels : range(L.channels);
      state.card = kept ? kept.card : 0;
      clearCell();
      update();
    });
    return el("label", {}, radio, ` ${L.name} (${L.channels})`);
  }));
  drawColourBar($("colour-bar"));
  drawColourBar($("occlusion-bar"));
  for (const radio of document.querySelectorAll("input[name=scale]")) {
    radio.addEventListener("change", () => { state.scale = radio.value; render(); });
  }
  $("all-channels").addEventListener("click", () => { state.channels = range(layerOf(state.layer).channels); update(); });
  $("no-channels").addEventListener("click", () => { state.channels = []; update(); });
  $("contribution").addEventListener("change", event => { state.contribution = event.target.checked; render(); });
  $("occlusion-panel").addEventListener("toggle", () => { if ($("occlusion-panel").open) runOcclusion(); });
  $("occlusion-run").addEventListener("click", runOcclusion);
  for (const id of ["occlusion-size", "occlusion-stride"]) $(id).addEventListener("change", runOcclusion);
  for (const id of ["occlusion-target", "occlusion-scale", "occlusion-overlay"]) $(id).addEventListener("change", renderOcclusion);
  $("own-file").addEventListener("change", event => { loadOwn(event.target.files[0]); });
  const drop = $("drop");
  drop.addEventListener("dragover", event => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", event => {
    event.preventDefault();
    drop.classList.remove("over");
    dropped(event);
  });
  const step = d => {
    const list = visibleThumbs().map(t => Number(t.dataset.i));
    const order = list.length ? list : range(images.length);
    const at = state.own ? -1 : order.indexOf(state.image);
    chooseImage(order[(at + d + order.length) % order.length]);
  };
  $("previous-image").addEventListener("click", () => step(-1));
  $("next-image").addEventListener("click", () => step(1));
  $("card-back").addEventListener("click", closeSheet);
  document.addEventListener("keydown", event => { if (event.key === "Escape" && state.sheet) closeSheet(); });
  window.addEventListener("hashchange", followLink);
  window.addEventListener("popstate", followLink);
  buildGallery();
  if (location.hash.slice(1) === "") {
    // a first visit opens on something to see: the brightest channel of the image, alone
    const c = brightestChannel(current().latents, state.layer);
    state.channels = [c];
    state.card = c;
  }
  applyHash();
  clearCell();
  render();  // the picture and the maps first; the gallery's marks follow (markGallery)
  markGallery(() => { galleryPending = false; render(); window.explorer.ready = true; });
  writeHash(false);
  new ResizeObserver(() => { updatePadding(); layoutMaps(); }).observe($("stage"));
  new ResizeObserver(layoutMaps).observe($("maps"));
  window.addEventListener("resize", updatePadding);
  updatePadding();
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
  models: MODELS.map(({ id, label, name, kind, lambda, precision }) => ({ id, label, name, kind, lambda, precision })),
  images: images.map(({ index, label, split }) => ({ index, label, split })),
  pixels: i => Array.from(subjectOf(i, state.model).pixels),
  classify: (i, model) => subjectOf(i, modelArg(model)).probabilities.slice(),
  decode: (i, layer, channels, model, refit = true) => {
    if (!Number.isInteger(layer) || layer < 1 || layer > LAYERS.length) throw new RangeError(`layer must be 1 to ${LAYERS.length}`);
    const m = modelArg(model);
    return Array.from(decodeLatents(subjectOf(i, m).latents, layer, channels, weightsOf(m), refit));
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
  // what the occlusion panel last drew: {key, target class per position, every layer's channel maps}
  shownOcclusion: () => state.occlusion && { key: state.occlusion.key, model: state.occlusion.model,
    probabilities: state.occlusion.maps.probabilities, layers: state.occlusion.maps.layers, side: state.occlusion.maps.side,
    worker: Boolean(worker) },
  own: () => state.own && { pixels: Array.from(state.own.pixels), probabilities: ownAnalysed().probabilities.slice(),
                            width: state.own.width, height: state.own.height },
  state: () => ({ model: state.model.id, layer: state.layer, channels: state.channels.slice(), card: state.card,
                  image: state.own ? "own" : state.image, hash: location.hash, side: state.side && state.model !== TRAINED,
                  scaleTop: state.shownScale, cell: state.cell && { ...state.cell } }),
  ready: false,
};

setUp();  // window.explorer.ready once the gallery is marked too
