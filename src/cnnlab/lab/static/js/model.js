// The model view: inside the open run's model. Its summary (shapes, parameters, receptive
// field, jump); for the chosen input, the top classes and every layer's outputs; click any
// output to draw its receptive field on the input; the equivariance error of each layer for
// the current shift beside it.

import { get, post, runPath } from "./api.js";
import { decode, drawPicture, newCanvas } from "./pixels.js";

const INPUT_PIXELS = 224; // the input picture's size on screen, about
const MAP_PIXELS = 56; // each activation map's size on screen

function pair(value) {
  if (value === null || value === undefined) return "-";
  return value[0] === value[1] ? String(value[0]) : `${value[0]}x${value[1]}`;
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

export class ModelView {
  constructor(root, { onMessage }) {
    this.root = root;
    this.onMessage = onMessage;
    this.name = null;
    this.request = 0;
    this.field = null;
    this.inputCanvas = root.querySelector("#input-canvas");
    this.fieldOverlay = root.querySelector("#field-overlay");
    // Explanations (cnnlab.explain: saliency, Grad-CAM, occlusion, top patches) are to be
    // drawn on this canvas, above the input and below the receptive field, with their
    // controls in #explanations; not wired yet.
    this.explainOverlay = root.querySelector("#explain-overlay");
  }

  async showRun(name) {
    this.name = name;
    this.field = null;
    this.root.querySelector("#model-title").textContent = name;
    this.root.querySelector("#activations").replaceChildren();
    this.root.querySelector("#predictions").replaceChildren();
    this.root.querySelector("#field-caption").textContent = "";
    this.summary = await get(runPath(name, "summary"));
    this.renderSummary();
    return this.summary;
  }

  renderSummary(errors = {}) {
    const body = this.root.querySelector("#summary-table tbody");
    const input = document.createElement("tr");
    input.append(cell("input"), cell(""), cell(`(${this.summary.input_shape.join(", ")})`),
      cell("", "number"), cell("1", "number"), cell("1", "number"), cell("", "number"));
    const rows = this.summary.layers.map((layer) => {
      const row = document.createElement("tr");
      const error = errors[layer.name];
      row.append(cell(layer.name), cell(layer.type), cell(`(${layer.output_shape.join(", ")})`),
        cell(layer.params.toLocaleString("en"), "number"), cell(pair(layer.receptive_field), "number"),
        cell(pair(layer.jump), "number"),
        cell(error === undefined || error === null ? "-" : error.toFixed(4), "number"));
      return row;
    });
    const total = document.createElement("tr");
    total.append(cell("total"), cell(""), cell(""),
      cell(this.summary.total_params.toLocaleString("en"), "number"), cell(""), cell(""), cell(""));
    body.replaceChildren(input, ...rows, total);
  }

  // ----- one input -----
  async inspect({ name, source, shift }) {
    if (name !== this.name || !source) return;
    const request = ++this.request;
    const params = { dy: shift[0], dx: shift[1] };
    let body;
    if (source.kind === "test") params.test_index = source.index;
    else body = new Uint8Array(await source.blob.arrayBuffer()); // the file's bytes, as they are
    let result;
    try {
      result = await post(runPath(name, "inspect"), { params, body });
    } catch (error) {
      this.onMessage(error.message, "error");
      return;
    }
    if (request !== this.request) return; // a newer input is on its way
    this.result = result;
    this.drawInput(result, source);
    this.renderPredictions(result.predictions);
    this.renderLayers(result.layers);
    this.renderSummary(Object.fromEntries(result.layers.map((layer) => [layer.name, layer.equivariance_error])));
  }

  drawInput(result, source) {
    const { shape, bytes } = decode(result.input);
    const [channels, height, width] = shape;
    drawPicture(this.inputCanvas, bytes, 0, height, width, channels, true);
    this.scale = Math.max(1, Math.floor(INPUT_PIXELS / Math.max(height, width)));
    for (const canvas of [this.inputCanvas, this.fieldOverlay, this.explainOverlay]) {
      canvas.style.width = `${width * this.scale}px`;
      canvas.style.height = `${height * this.scale}px`;
    }
    for (const overlay of [this.fieldOverlay, this.explainOverlay]) {
      if (overlay.width !== width * this.scale || overlay.height !== height * this.scale) {
        overlay.width = width * this.scale;
        overlay.height = height * this.scale;
      }
    }
    const label = result.label === null ? "" : `, labelled ${this.summary.classes[result.label]}`;
    const what = source.kind === "test" ? `test image ${source.index}${label}` : source.kind === "drawing" ? "your drawing" : "your file";
    this.root.querySelector("#input-caption").textContent =
      `${what}, shifted by (${result.shift.join(", ")}); arrow keys shift it, 0 puts it back`;
    if (this.field) this.drawField(this.field);
  }

  renderPredictions(predictions) {
    const list = this.root.querySelector("#predictions");
    list.replaceChildren(...predictions.map((prediction) => {
      const item = document.createElement("li");
      item.dataset.index = String(prediction.index);
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.style.width = `${100 * prediction.probability}%`;
      const text = document.createElement("span");
      text.className = "label";
      text.textContent = `${prediction.class} ${prediction.probability.toFixed(3)}`;
      item.append(bar, text);
      return item;
    }));
  }

  renderLayers(layers) {
    const container = this.root.querySelector("#activations");
    container.replaceChildren(...layers.filter((layer) => layer.maps || layer.values).map((layer) => {
      const card = document.createElement("div");
      card.className = "layer";
      card.dataset.layer = layer.name;
      const title = document.createElement("h4");
      const error = layer.equivariance_error;
      title.textContent = `${layer.name} ${layer.type} (${layer.output_shape.join(", ")})` +
        (layer.spatial ? `  rf ${pair(layer.receptive_field)}, jump ${pair(layer.jump)}` : "") +
        (error === null || error === undefined ? "" : `  equivariance error ${error.toFixed(4)}`);
      const maps = document.createElement("div");
      maps.className = "maps";
      if (layer.maps) this.drawMaps(maps, layer);
      else this.drawValues(maps, layer);
      card.append(title, maps);
      return card;
    }));
  }

  drawMaps(container, layer) {
    const { shape, bytes } = decode(layer.maps);
    const [channels, height, width] = shape;
    for (let c = 0; c < channels; c += 1) {
      const canvas = drawPicture(newCanvas("pixelated map"), bytes, c * height * width, height, width, 1, true);
      canvas.style.width = `${MAP_PIXELS}px`;
      canvas.dataset.channel = String(c);
      canvas.title = `${layer.name}, channel ${c}: click an output for its receptive field`;
      canvas.addEventListener("click", (event) => {
        const row = Math.min(height - 1, Math.floor((event.offsetY / canvas.clientHeight) * height));
        const col = Math.min(width - 1, Math.floor((event.offsetX / canvas.clientWidth) * width));
        this.pick(layer.name, c, row, col);
      });
      container.append(canvas);
    }
  }

  drawValues(container, layer) {
    const { shape, bytes } = decode(layer.values);
    const canvas = drawPicture(newCanvas("pixelated strip"), bytes, 0, 1, shape[1], 1, true);
    canvas.style.width = `${Math.min(4 * shape[1], 640)}px`;
    canvas.title = `${layer.name}: ${shape[1]} outputs`;
    container.append(canvas);
  }

  // ----- receptive fields -----
  async pick(layer, channel, row, col) {
    try {
      this.field = await get(runPath(this.name, "receptive-field"), { layer, row, col });
    } catch (error) {
      this.onMessage(error.message, "error");
      return;
    }
    for (const canvas of this.root.querySelectorAll("#activations canvas.picked")) canvas.classList.remove("picked");
    const card = this.root.querySelector(`#activations [data-layer="${layer}"]`);
    card?.querySelector(`canvas[data-channel="${channel}"]`)?.classList.add("picked");
    this.drawField(this.field);
  }

  drawField(field) {
    const overlay = this.fieldOverlay;
    const context = overlay.getContext("2d");
    context.clearRect(0, 0, overlay.width, overlay.height);
    const [top, left, bottom, right] = field.box;
    const s = this.scale;
    const [x, y, w, h] = [left * s, top * s, (right - left + 1) * s, (bottom - top + 1) * s];
    context.fillStyle = "rgba(255, 64, 64, 0.25)";
    context.fillRect(x, y, w, h);
    context.strokeStyle = "rgb(255, 64, 64)";
    context.lineWidth = 2;
    context.strokeRect(x + 1, y + 1, w - 2, h - 2);
    overlay.dataset.box = field.box.join(",");
    this.root.querySelector("#field-caption").textContent =
      `${field.layer} output (${field.position.join(", ")}): receptive field ${pair(field.receptive_field)}, ` +
      `jump ${pair(field.jump)}; input rows ${top}..${bottom}, columns ${left}..${right}`;
  }
}
