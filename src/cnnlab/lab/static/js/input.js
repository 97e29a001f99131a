// The input view: which image the model looks at. A test image (by class, the misclassified
// ones, or a cell of the confusion matrix), an image file (chosen or dropped on the page), or
// one drawn at the model's resolution; the arrow keys shift it (0 puts it back).

import { get, runPath } from "./api.js";
import { decode, drawPicture, newCanvas } from "./pixels.js";

const PAGE = 48;
const KEYS = { ArrowLeft: [0, -1], ArrowRight: [0, 1], ArrowUp: [-1, 0], ArrowDown: [1, 0] };

export class InputView {
  constructor(root, { onInput, onMessage }) {
    this.root = root;
    this.onInput = onInput;
    this.onMessage = onMessage;
    this.name = null;
    this.source = null;
    this.shift = [0, 0];
    this.filter = { label: null, predicted: null, misclassified: false, offset: 0 };
    for (const button of root.querySelectorAll("[data-tab]")) {
      button.addEventListener("click", () => this.tab(button.dataset.tab));
    }
    this.$("#test-class").addEventListener("change", (event) => {
      const value = event.target.value;
      this.browse({ label: value === "" ? null : Number(value), predicted: null, offset: 0 });
    });
    this.$("#test-misclassified").addEventListener("change", (event) => {
      this.browse({ misclassified: event.target.checked, predicted: null, offset: 0 });
    });
    this.$("#test-previous").addEventListener("click", () => this.browse({ offset: Math.max(0, this.filter.offset - PAGE) }));
    this.$("#test-next").addEventListener("click", () => this.browse({ offset: this.filter.offset + PAGE }));
    this.$("#upload-input").addEventListener("change", (event) => {
      if (event.target.files.length) this.choose({ kind: "file", blob: event.target.files[0] });
    });
    const drop = this.$("#drop-zone");
    drop.addEventListener("dragover", (event) => event.preventDefault());
    drop.addEventListener("drop", (event) => {
      event.preventDefault();
      if (event.dataTransfer.files.length) this.choose({ kind: "file", blob: event.dataTransfer.files[0] });
    });
    this.setUpDrawing();
    document.addEventListener("keydown", (event) => this.key(event));
  }

  $(selector) {
    return this.root.querySelector(selector);
  }

  tab(name) {
    for (const button of this.root.querySelectorAll("[data-tab]")) button.classList.toggle("active", button.dataset.tab === name);
    for (const pane of this.root.querySelectorAll("[data-pane]")) pane.hidden = pane.dataset.pane !== name;
  }

  async showRun(name, summary) {
    this.name = name;
    this.summary = summary;
    this.$("#test-class").replaceChildren(new Option("all", ""),
      ...summary.classes.map((label, index) => new Option(label, String(index))));
    this.$("#test-misclassified").checked = false;
    this.filter = { label: null, predicted: null, misclassified: false, offset: 0 };
    this.clearDrawing();
    await Promise.all([this.browse({}), this.showConfusion()]);
  }

  // ----- test images -----
  async browse(change) {
    Object.assign(this.filter, change);
    const { label, predicted, misclassified, offset } = this.filter;
    const grid = this.$("#test-grid");
    let page;
    try {
      page = await get(runPath(this.name, "test-images"), { label, predicted, misclassified, offset, limit: PAGE });
    } catch (error) {
      grid.replaceChildren();
      this.$("#test-count").textContent = error.message;
      return;
    }
    const { shape, bytes } = decode(page.images);
    const [, channels, height, width] = shape;
    const each = channels * height * width;
    grid.replaceChildren(...page.indices.map((index, n) => {
      const canvas = drawPicture(newCanvas(), bytes, n * each, height, width, channels, true);
      canvas.dataset.index = String(index);
      canvas.title = `test image ${index}: ${page.classes[page.labels[n]]}` +
        (page.predicted ? `, predicted ${page.classes[page.predicted[n]]}` : "");
      canvas.addEventListener("click", () => this.choose({ kind: "test", index, label: page.labels[n] }));
      return canvas;
    }));
    const shown = predicted === null ? "" : `, predicted as ${page.classes[predicted]}`;
    this.$("#test-count").textContent = `${page.total} images${shown}; from ${offset + 1}`;
    this.$("#test-previous").disabled = offset === 0;
    this.$("#test-next").disabled = offset + PAGE >= page.total;
    if (!this.source && page.indices.length) {
      this.choose({ kind: "test", index: page.indices[0], label: page.labels[0] });
    }
  }

  async showConfusion() {
    const table = this.$("#confusion-table");
    let confusion;
    try {
      confusion = await get(runPath(this.name, "confusion"));
    } catch (error) {
      table.replaceChildren();
      return;
    }
    const clickable = confusion.split === "test";
    this.$("#confusion-title").textContent = `confusion matrix (${confusion.split} set` +
      (clickable ? "; click a cell for its images)" : ")");
    if (!confusion.matrix) {
      table.replaceChildren();
      return;
    }
    const header = document.createElement("tr");
    header.append(document.createElement("th"), ...confusion.classes.map((_, j) => {
      const cell = document.createElement("th");
      cell.textContent = String(j);
      cell.title = `predicted ${confusion.classes[j]}`;
      return cell;
    }));
    const rows = confusion.matrix.map((counts, i) => {
      const row = document.createElement("tr");
      const name = document.createElement("th");
      name.textContent = `${i} ${confusion.classes[i]}`;
      row.append(name, ...counts.map((count, j) => {
        const cell = document.createElement("td");
        cell.textContent = String(count);
        cell.className = i === j ? "diagonal" : count ? "error" : "";
        if (clickable && count) {
          cell.classList.add("clickable");
          cell.addEventListener("click", () => {
            this.$("#test-class").value = String(i);
            this.$("#test-misclassified").checked = false;
            this.browse({ label: i, predicted: j, misclassified: false, offset: 0 });
          });
        }
        return cell;
      }));
      return row;
    });
    table.replaceChildren(header, ...rows);
  }

  // ----- drawing at the model's resolution -----
  setUpDrawing() {
    const canvas = this.$("#draw-canvas");
    let drawing = false;
    const point = (event) => [event.offsetX * (canvas.width / canvas.clientWidth),
      event.offsetY * (canvas.height / canvas.clientHeight)];
    canvas.addEventListener("pointerdown", (event) => {
      drawing = true;
      canvas.setPointerCapture(event.pointerId);
      const context = canvas.getContext("2d");
      context.beginPath();
      context.moveTo(...point(event));
    });
    canvas.addEventListener("pointermove", (event) => {
      if (!drawing) return;
      const context = canvas.getContext("2d");
      context.lineTo(...point(event));
      context.stroke();
    });
    canvas.addEventListener("pointerup", () => {
      drawing = false;
      canvas.toBlob((blob) => this.choose({ kind: "drawing", blob }), "image/png");
    });
    this.$("#draw-clear").addEventListener("click", () => this.clearDrawing());
  }

  clearDrawing() {
    const canvas = this.$("#draw-canvas");
    const [, height, width] = this.summary ? this.summary.image_shape : [1, 28, 28];
    canvas.width = width;
    canvas.height = height;
    canvas.style.width = `${Math.max(width, height) >= 64 ? width * 3 : width * 8}px`;
    const context = canvas.getContext("2d");
    context.fillStyle = "#000";
    context.fillRect(0, 0, width, height);
    context.strokeStyle = "#fff";
    context.lineWidth = Math.max(1.5, height / 14);
    context.lineCap = "round";
    context.lineJoin = "round";
  }

  // ----- the chosen input and its shift -----
  choose(source) {
    this.source = source;
    this.shift = [0, 0];
    this.emit();
  }

  key(event) {
    const tag = event.target.tagName;
    if (!this.source || tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA") return;
    if (event.key in KEYS) {
      const [dy, dx] = KEYS[event.key];
      const [, height, width] = this.summary.image_shape;
      const limit = (value, size) => Math.max(1 - size, Math.min(size - 1, value));
      this.shift = [limit(this.shift[0] + dy, height), limit(this.shift[1] + dx, width)];
    } else if (event.key === "0") {
      this.shift = [0, 0];
    } else {
      return;
    }
    event.preventDefault();
    this.emit();
  }

  emit() {
    this.onInput({ name: this.name, source: this.source, shift: this.shift });
  }
}
