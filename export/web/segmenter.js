// The browser side of `deconvnet serve-web` and of the test that drives it
// (tests/export/web_gpu_delegate_test.py): MediaPipe Tasks' ImageSegmenter on one of
// the exported TFLite files, with the GPU or the CPU delegate.
//
// `window.deconvnet.segment({model, delegate, image})` returns the category mask and
// how many WebGL draw calls `segment()` made (0: nothing ran on the GPU).
// config.json (written by the server) says where MediaPipe's files and the models are.

const drawCalls = { count: 0 };
for (const api of [self.WebGLRenderingContext, self.WebGL2RenderingContext]) {
  if (!api) continue;
  for (const name of ["drawArrays", "drawElements", "drawArraysInstanced",
                      "drawElementsInstanced", "drawRangeElements", "drawBuffers"]) {
    const original = api.prototype[name];
    if (!original || original.__counted) continue;
    const counted = function (...args) { drawCalls.count += 1; return original.apply(this, args); };
    counted.__counted = true;
    api.prototype[name] = counted;
  }
}

const config = await (await fetch("config.json")).json();
const vision = await import(config.mediapipe + "/vision_bundle.mjs");
const fileset = await vision.FilesetResolver.forVisionTasks(config.mediapipe + "/wasm");
const segmenters = new Map();

async function segmenterFor(model, delegate) {
  const key = model + "|" + delegate;
  if (!segmenters.has(key)) {
    // A canvas of its own per GPU segmenter: MediaPipe's WebGL context lives on it.
    const canvas = delegate === "GPU" ? document.createElement("canvas") : undefined;
    segmenters.set(key, await vision.ImageSegmenter.createFromOptions(fileset, {
      baseOptions: { modelAssetPath: model, delegate },
      runningMode: "IMAGE",
      outputCategoryMask: true,
      outputConfidenceMasks: false,
      canvas,
    }));
  }
  return segmenters.get(key);
}

async function loadImage(source) {
  const image = new Image();
  image.src = source;
  await image.decode();
  return image;
}

async function segment({ model, delegate = "GPU", image }) {
  const segmenter = await segmenterFor(model, delegate);
  const element = typeof image === "string" ? await loadImage(image) : image;
  const before = drawCalls.count;
  const start = performance.now();
  const result = segmenter.segment(element);
  const mask = result.categoryMask;
  const labels = mask.getAsUint8Array();
  const milliseconds = performance.now() - start;
  const answer = {
    width: mask.width, height: mask.height, mask: Array.from(labels),
    drawCalls: drawCalls.count - before, milliseconds,
    labels: segmenter.getLabels ? segmenter.getLabels() : [],
  };
  result.close();
  return answer;
}

window.deconvnet = { segment, config };

// The demo: pick a model and an image, see the mask.
const palette = [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128],
  [128, 0, 128], [0, 128, 128], [128, 128, 128], [64, 0, 0], [192, 0, 0], [64, 128, 0],
  [192, 128, 0], [64, 0, 128], [192, 0, 128], [64, 128, 128], [192, 128, 128],
  [0, 64, 0], [128, 64, 0], [0, 192, 0], [128, 192, 0], [0, 64, 128]];
const select = document.getElementById("model");
for (const [name, file] of Object.entries(config.models || {})) {
  const option = document.createElement("option");
  option.value = file;
  option.textContent = name;
  select.append(option);
}
const status = document.getElementById("status");

async function show() {
  const file = document.getElementById("file").files[0];
  if (!file || !select.value) return;
  const img = document.getElementById("image");
  img.src = URL.createObjectURL(file);
  await img.decode();
  const delegate = document.getElementById("delegate").value;
  status.textContent = "Segmenting...";
  try {
    const out = await segment({ model: select.value, delegate, image: img });
    const canvas = document.getElementById("mask");
    canvas.width = out.width;
    canvas.height = out.height;
    const context = canvas.getContext("2d");
    const pixels = context.createImageData(out.width, out.height);
    const present = new Set();
    out.mask.forEach((label, i) => {
      present.add(label);
      const [r, g, b] = palette[label % palette.length];
      pixels.data.set([r, g, b, 255], 4 * i);
    });
    context.putImageData(pixels, 0, 0);
    const names = [...present].sort((a, b) => a - b).map((i) => out.labels[i] ?? i);
    status.textContent = `${delegate}: ${out.milliseconds.toFixed(1)} ms, ` +
      `${out.drawCalls} WebGL draw calls. Classes: ${names.join(", ")}`;
  } catch (error) {
    status.textContent = `${delegate} failed: ${error}`;
  }
}

for (const id of ["file", "model", "delegate"]) {
  document.getElementById(id).addEventListener("change", show);
}
