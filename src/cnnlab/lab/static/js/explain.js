// The explanations view: why the model gave its answer for the chosen input, laid over it
// (saliency, Grad-CAM on a chosen layer, occlusion; for the predicted class or a chosen one),
// and what each channel of a layer looks for: its top patches of the test set. The server
// computes every map and patch with cnnlab.explain, as `cnnlab explain` and `cnnlab viz`
// do; this draws them.

import { get, post, runPath } from "./api.js";
import { inputRequest } from "./input.js";
import { fitOverlay, inputScale } from "./model.js";
import { decode, drawPicture, newCanvas } from "./pixels.js";

const TITLES = {
  saliency: "saliency |d score / d pixel|",
  gradcam: "Grad-CAM",
  occlusion: "occlusion: the drop in p when a patch is hidden",
};
const PATCH_PIXELS = 22; // each top patch's size on screen

function options(select, entries, chosen) {
  select.replaceChildren(...entries.map(([value, text]) => new Option(text, value, false, value === chosen)));
}

export class ExplainView {
  constructor(root, { overlay, onPickTest, onMessage }) {
    this.root = root;
    this.overlay = overlay;
    this.onPickTest = onPickTest;
    this.onMessage = onMessage;
    this.name = null;
    this.method = "";
    this.input = null;
    this.request = 0;
    for (const button of root.querySelectorAll("[data-method]")) {
      button.addEventListener("click", () => this.choose(button.dataset.method));
    }
    this.$("#explain-layer").addEventListener("change", () => this.refresh());
    this.$("#explain-target").addEventListener("change", () => this.refresh());
    this.$("#patches-button").addEventListener("click", () => this.showPatches());
  }

  $(selector) {
    return this.root.querySelector(selector);
  }

  showRun(name, summary) {
    this.name = name;
    this.summary = summary;
    this.input = null;
    const { methods, gradcam_layer: layer } = summary.explanations;
    const spatial = summary.layers.filter((record) => record.spatial).map((record) => [record.name, record.name]);
    this.$("#explain-controls").hidden = !methods.length;
    this.$("#explanations").hidden = !methods.length || !spatial.length;
    for (const button of this.root.querySelectorAll("[data-method]")) {
      button.hidden = button.dataset.method === "gradcam" && !layer;
    }
    options(this.$("#explain-layer"), spatial, layer);
    options(this.$("#explain-target"), [["", "the predicted one"], ...summary.classes.map((label, index) => [String(index), label])], "");
    options(this.$("#patches-layer"), spatial, layer);
    this.$("#patches-grid").replaceChildren();
    this.$("#patches-caption").textContent = "";
    const keep = methods.includes(this.method) && (this.method !== "gradcam" || layer);
    this.choose(keep ? this.method : "");
  }

  // ----- the overlay -----
  setInput(input) {
    this.input = input; // {name, source, shift}, as the model view gets it
    this.refresh();
  }

  choose(method) {
    this.method = method;
    for (const button of this.root.querySelectorAll("[data-method]")) {
      button.classList.toggle("active", button.dataset.method === method);
    }
    this.$("#explain-layer-label").hidden = method !== "gradcam";
    this.refresh();
  }

  async refresh() {
    const request = ++this.request;
    const input = this.input;
    if (!this.method || !input || input.name !== this.name || !input.source) {
      this.clear();
      return;
    }
    const { params, body } = await inputRequest(input);
    params.method = this.method;
    if (this.method === "gradcam") params.layer = this.$("#explain-layer").value;
    params.target = this.$("#explain-target").value || null;
    let result;
    try {
      result = await post(runPath(this.name, "explain"), { params, body });
    } catch (error) {
      if (request === this.request) {
        this.clear();
        this.onMessage(error.message, "error");
      }
      return;
    }
    if (request === this.request) this.draw(result);
  }

  clear() {
    const context = this.overlay.getContext("2d");
    context.clearRect(0, 0, this.overlay.width, this.overlay.height);
    delete this.overlay.dataset.method;
    delete this.overlay.dataset.shift;
    this.$("#explain-caption").textContent = "";
  }

  // The map's cells as they are sent (0..255: its positive part over its largest magnitude),
  // each a block of the overlay over the input pixels it covers: opacity and yellowness grow
  // with the value.
  draw(result) {
    const { shape, bytes } = decode(result.shown);
    const [height, width] = shape;
    const cells = newCanvas();
    cells.width = width;
    cells.height = height;
    const cellContext = cells.getContext("2d");
    const image = cellContext.createImageData(width, height);
    for (let p = 0; p < height * width; p += 1) {
      image.data[4 * p] = 255;
      image.data[4 * p + 1] = bytes[p];
      image.data[4 * p + 3] = bytes[p];
    }
    cellContext.putImageData(image, 0, 0);
    const [, imageHeight, imageWidth] = this.summary.image_shape;
    const scale = inputScale(imageHeight, imageWidth);
    fitOverlay(this.overlay, imageHeight, imageWidth, scale);
    const context = this.overlay.getContext("2d");
    context.clearRect(0, 0, this.overlay.width, this.overlay.height);
    context.imageSmoothingEnabled = false;
    const [top, left, bottom, right] = result.box;
    context.drawImage(cells, left * scale, top * scale, (right - left) * scale, (bottom - top) * scale);
    this.overlay.dataset.method = result.method;
    this.overlay.dataset.shift = result.shift.join(",");
    const [low, high] = result.range;
    const { target, occlusion } = result;
    this.$("#explain-caption").textContent =
      `${TITLES[result.method]}${result.layer ? ` on ${result.layer}` : ""} for ${target.class} ` +
      `(p ${target.probability.toFixed(3)}): a ${height}x${width} map from ${low.toPrecision(3)} to ` +
      `${high.toPrecision(3)}` + (occlusion ? `, a ${occlusion.patch}x${occlusion.patch} patch every ${occlusion.stride} pixels` : "") +
      "; brighter, more yellow: higher";
  }

  // ----- top patches of the test set -----
  async showPatches() {
    const name = this.name;
    const layer = this.$("#patches-layer").value;
    const caption = this.$("#patches-caption");
    const button = this.$("#patches-button");
    caption.textContent = `ranking the test set on ${layer} (once per layer; it takes a while)`;
    button.disabled = true;
    let result;
    try {
      result = await get(runPath(name, "top-patches"), { layer });
    } catch (error) {
      caption.textContent = error.message;
      return;
    } finally {
      button.disabled = false;
    }
    if (name !== this.name) return;
    const { shape, bytes } = decode(result.patches);
    const [, count, channels, height, width] = shape;
    const each = channels * height * width;
    const grid = this.$("#patches-grid");
    grid.dataset.layer = layer;
    grid.replaceChildren(...result.channels.map((patches, channel) => {
      const figure = document.createElement("figure");
      figure.dataset.channel = String(channel);
      const row = document.createElement("div");
      row.className = "patch-row";
      patches.forEach((patch, n) => {
        const canvas = drawPicture(newCanvas(), bytes, (channel * count + n) * each, height, width, channels, true);
        canvas.style.width = `${PATCH_PIXELS}px`;
        const [y0, x0, y1, x1] = patch.box;
        canvas.title = `test image ${patch.image}, rows ${y0}..${y1 - 1}, columns ${x0}..${x1 - 1}: ` +
          `${patch.activation.toFixed(3)}; click to look at it`;
        canvas.addEventListener("click", () => this.onPickTest(patch.image));
        row.append(canvas);
      });
      const label = document.createElement("figcaption");
      label.textContent = `${channel}: ${patches[0].activation.toFixed(2)}`;
      figure.append(row, label);
      return figure;
    }));
    caption.textContent = `${layer}: each channel's ${count} most activating regions of the ` +
      `${result.images} test images, best first (${result.receptive_field.join("x")} pixels, its ` +
      "receptive field; grey: outside the image); click one to look at its image";
  }
}
