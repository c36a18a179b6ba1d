// The page of `resnetkit serve`: one file in, the API's answers out. No framework, no CDN.
"use strict";

const $ = (id) => document.getElementById(id);
let model = null;
let previewUrl = null;

async function apiError(response) {
  // FastAPI answers {"detail": "..."}; a validation error's detail is a list.
  try {
    const body = await response.json();
    const detail = Array.isArray(body.detail) ? body.detail.map((d) => d.msg).join("; ") : body.detail;
    return `${response.status}: ${detail || response.statusText}`;
  } catch (_) {
    return `${response.status}: ${response.statusText}`;
  }
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

async function loadModel() {
  try {
    const response = await fetch("/v1/model");
    if (!response.ok) throw new Error(await apiError(response));
    model = await response.json();
    $("model-info").textContent =
      `${model.name}: ${model.kind}${model.task === "multilabel" ? " multi-label" : ""} classification, ` +
      `${model.num_classes} ${model.task === "multilabel" ? "labels" : "classes"}` +
      (model.parameters ? `, ${model.parameters.toLocaleString()} parameters` : "");
    if (model.task === "multilabel") $("bars-title").textContent = "Labels (each its own probability)";
    $("accepts").textContent = model.kind === "audio"
      ? "WAV, FLAC, OGG or AIFF audio" : "JPEG, PNG, GIF, BMP, WebP or TIFF images";
  } catch (err) {
    showError(`cannot reach the model: ${err.message}`);
  }
}

function drawBars(topK) {
  const list = $("bars");
  list.replaceChildren();
  for (const entry of topK) {
    const item = document.createElement("li");
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = entry.class;
    const track = document.createElement("span");
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.style.width = `${(100 * entry.probability).toFixed(1)}%`;
    track.appendChild(bar);
    const prob = document.createElement("span");
    prob.className = "prob";
    prob.textContent = `${(100 * entry.probability).toFixed(1)}%`;
    item.append(name, track, prob);
    list.appendChild(item);
  }
  list.dataset.top1 = topK.length ? topK[0].class : "";
}

// --- the spectrogram of an audio file, drawn in the browser (Web Audio decodes it) ---------
function fft(re, im) {
  const n = re.length;
  for (let i = 1, j = 0; i < n; i++) {
    let bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) { [re[i], re[j]] = [re[j], re[i]]; [im[i], im[j]] = [im[j], im[i]]; }
  }
  for (let len = 2; len <= n; len <<= 1) {
    const angle = -2 * Math.PI / len;
    for (let i = 0; i < n; i += len) {
      for (let k = 0; k < len / 2; k++) {
        const wr = Math.cos(angle * k), wi = Math.sin(angle * k);
        const a = i + k, b = a + len / 2;
        const xr = re[b] * wr - im[b] * wi, xi = re[b] * wi + im[b] * wr;
        re[b] = re[a] - xr; im[b] = im[a] - xi; re[a] += xr; im[a] += xi;
      }
    }
  }
}

function colour(v) {  // 0..1 -> dark blue, purple, orange, yellow (a magma-like ramp)
  const stops = [[0, 0, 4], [80, 18, 123], [182, 54, 121], [251, 136, 97], [252, 253, 191]];
  const x = Math.min(Math.max(v, 0), 1) * (stops.length - 1);
  const i = Math.min(Math.floor(x), stops.length - 2), t = x - i;
  return stops[i].map((c, k) => Math.round(c + t * (stops[i + 1][k] - c)));
}

async function drawSpectrogram(file) {
  const canvas = $("spectrogram");
  const rate = 16000, size = 512, hop = 128;
  // Up to the model's Nyquist frequency (4 kHz for 8 kHz models): above it the model sees nothing.
  const topHz = Math.min(rate / 2, model && model.input.sample_rate ? model.input.sample_rate / 2 : rate / 2);
  const context = new OfflineAudioContext(1, 1, rate);
  const audio = await context.decodeAudioData(await file.arrayBuffer());
  const wave = audio.getChannelData(0);
  const frames = Math.max(1, Math.floor((wave.length - size) / hop) + 1);
  const bins = Math.round((size / 2) * topHz / (rate / 2));
  const db = new Float32Array(frames * bins);
  const window = Float32Array.from({ length: size }, (_, i) => 0.5 - 0.5 * Math.cos(2 * Math.PI * i / size));
  let top = -Infinity;
  for (let f = 0; f < frames; f++) {
    const re = new Float32Array(size), im = new Float32Array(size);
    for (let i = 0; i < size; i++) re[i] = (wave[f * hop + i] || 0) * window[i];
    fft(re, im);
    for (let b = 0; b < bins; b++) {
      const v = 10 * Math.log10(re[b] * re[b] + im[b] * im[b] + 1e-10);
      db[f * bins + b] = v;
      top = Math.max(top, v);
    }
  }
  const ctx = canvas.getContext("2d");
  const left = 44, bottom = 26, w = canvas.width - left - 6, h = canvas.height - bottom - 6;
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  const image = ctx.createImageData(w, h);
  for (let x = 0; x < w; x++) {
    const f = Math.min(frames - 1, Math.floor(x * frames / w));
    for (let y = 0; y < h; y++) {
      const b = Math.min(bins - 1, Math.floor((h - 1 - y) * bins / h));
      const [r, g, bl] = colour((db[f * bins + b] - (top - 80)) / 80);  // 80 dB range below the peak
      const o = 4 * (y * w + x);
      image.data[o] = r; image.data[o + 1] = g; image.data[o + 2] = bl; image.data[o + 3] = 255;
    }
  }
  ctx.putImageData(image, left, 6);
  ctx.fillStyle = "#333";
  ctx.font = "11px sans-serif";
  for (const hz of [0, 1000, 2000, 3000, 4000, 6000, 8000].filter((f) => f <= topHz)) {
    const y = 6 + h - (hz / topHz) * h;
    ctx.fillText(hz >= 1000 ? `${hz / 1000} kHz` : `${hz}`, 4, Math.min(Math.max(y + 4, 12), 6 + h));
  }
  const seconds = wave.length / rate;
  for (let s = 0; s <= seconds + 1e-9; s += seconds > 2 ? 1 : 0.25) {
    ctx.fillText(`${s.toFixed(2)}`, left + (s / seconds) * w - 10, canvas.height - 12);
  }
  ctx.fillText("time (s)", left + w / 2 - 20, canvas.height - 1);
  canvas.hidden = false;
}

function showInput(file) {
  $("file-name").textContent = file.name ? `(${file.name})` : "";
  if (previewUrl) URL.revokeObjectURL(previewUrl);
  previewUrl = URL.createObjectURL(file);
  const isAudio = file.type.startsWith("audio/") || /\.(wav|flac|ogg|aiff?)$/i.test(file.name);
  $("preview").hidden = true;
  $("player").hidden = true;
  $("spectrogram").hidden = true;
  if (isAudio) {
    $("player").src = previewUrl;
    $("player").hidden = false;
    drawSpectrogram(file).catch(() => { $("spectrogram").hidden = true; });
  } else {
    $("preview").src = previewUrl;
    $("preview").hidden = false;
    $("preview").onerror = () => { $("preview").hidden = true; };
  }
}

async function classify(file) {
  showError("");
  $("result").hidden = false;
  showInput(file);
  $("bars").replaceChildren();
  delete $("bars").dataset.top1;
  $("latency").textContent = "";
  $("overlay").hidden = true;
  $("overlay").removeAttribute("src");
  $("explain-status").textContent = "computing…";
  $("explain-status").hidden = false;

  const send = (path) => {
    const form = new FormData();
    form.append("file", file, file.name || "upload");
    return fetch(path, { method: "POST", body: form });
  };
  const [prediction, explanation] = await Promise.allSettled([send("/v1/predict"), send("/v1/explain")]);

  if (prediction.status === "rejected") {
    showError(`request failed: ${prediction.reason}`);
  } else if (!prediction.value.ok) {
    showError(await apiError(prediction.value));
    $("result").hidden = true;
    return;
  } else {
    const body = await prediction.value.json();
    drawBars(body.top_k);
    // Multi-label models: the labels at or above their thresholds (each bar is that label's own probability).
    const labels = $("labels");
    labels.hidden = !body.labels;
    if (body.labels) {
      labels.textContent = body.labels.length ? `Labels: ${body.labels.join(", ")}` : "Labels: none above its threshold";
      labels.dataset.labels = body.labels.join(",");
    }
    $("latency").textContent = `${body.model}, ${body.latency_ms.toFixed(1)} ms in the server`;
  }

  if (explanation.status === "rejected") {
    $("explain-status").textContent = `request failed: ${explanation.reason}`;
  } else if (!explanation.value.ok) {
    $("explain-status").textContent = await apiError(explanation.value);
  } else {
    const blob = await explanation.value.blob();
    const overlay = $("overlay");
    overlay.onload = () => { $("explain-status").hidden = true; overlay.hidden = false; };
    overlay.src = URL.createObjectURL(blob);
  }
}

function pick(files) {
  if (files && files.length) classify(files[0]);
}

$("file").addEventListener("change", (event) => pick(event.target.files));
const drop = $("drop");
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  pick(event.dataTransfer.files);
});
drop.addEventListener("keydown", (event) => { if (event.key === "Enter") $("file").click(); });
loadModel();
