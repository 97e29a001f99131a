// The training view: loss and accuracy curves of the open run (or of the ticked runs, to
// compare them) that move within epochs; the first layer's filters or templates, epoch by
// epoch; speed and time left; and training from the page (Start, Stop, Resume).

import { get, post, runPath } from "./api.js";
import { drawGrid } from "./pixels.js";
import { drawChart } from "./plot.js";
import { duration } from "./runs.js";

const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"];

export class TrainingView {
  constructor(root, { onMessage, onStarted }) {
    this.root = root;
    this.onMessage = onMessage;
    this.onStarted = onStarted;
    this.curves = new Map();
    this.runs = new Map();
    this.shown = [];
    this.focus = null;
    this.firstLayer = null;
    this.job = { state: "idle" };
    this.form = root.querySelector("#train-form");
    this.slider = root.querySelector("#first-layer-epoch");
    this.slider.addEventListener("input", () => this.drawFirstLayer());
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.start();
    });
    this.form.elements.model.addEventListener("change", () => this.placeholders());
    root.querySelector("#stop-button").addEventListener("click", () => this.stop());
    root.querySelector("#resume-button").addEventListener("click", () => this.resume());
  }

  async loadOptions() {
    this.options = await get("/api/options");
    const fill = (select, names, chosen) => {
      select.replaceChildren(...names.map((name) => new Option(name, name, false, name === chosen)));
    };
    fill(this.form.elements.model, this.options.models, "cnn");
    fill(this.form.elements.dataset, this.options.datasets, "fashion-mnist");
    this.placeholders();
  }

  placeholders() {
    const defaults = this.options.defaults[this.form.elements.model.value];
    this.form.elements.epochs.placeholder = String(defaults.epochs);
    this.form.elements.lr.placeholder = String(defaults.lr);
  }

  // ----- which runs are shown -----
  setRuns(runs) {
    this.runs = new Map(runs.map((run) => [run.name, run]));
    this.renderNumbers();
    this.renderButtons();
  }

  async show(focus, selected) {
    const focusChanged = focus !== this.focus;
    this.focus = focus;
    this.shown = selected.length ? selected : focus ? [focus] : [];
    this.root.querySelector("#training-title").textContent = this.shown.join(", ");
    await Promise.all(this.shown.filter((name) => !this.curves.has(name)).map((name) => this.fetchCurves(name)));
    this.plot();
    this.renderNumbers();
    this.renderButtons();
    if (focusChanged) await this.fetchFirstLayer(true);
  }

  async refresh(changed) {
    const names = changed.filter((name) => this.shown.includes(name));
    await Promise.all(names.map((name) => this.fetchCurves(name)));
    if (names.length) this.plot();
    const run = this.runs.get(this.focus);
    if (run && changed.includes(this.focus) && run.epochs !== this.firstLayerEpochs) {
      await this.fetchFirstLayer(false); // recorded after each epoch: only then anything new
    }
  }

  async fetchCurves(name) {
    try {
      this.curves.set(name, await get(runPath(name, "curves")));
    } catch (error) {
      this.curves.delete(name);
      this.onMessage(error.message, "error");
    }
  }

  // ----- the curves -----
  plot() {
    const loss = [];
    const accuracy = [];
    const legend = this.root.querySelector("#chart-legend");
    legend.replaceChildren();
    this.shown.forEach((name, index) => {
      const curves = this.curves.get(name);
      if (!curves) return;
      const color = COLORS[index % COLORS.length];
      for (const [series, train, val] of [[loss, "train_loss", "val_loss"],
        [accuracy, "train_accuracy", "val_accuracy"]]) {
        series.push({ color, points: curves.points.map((p) => [p.position, p[train]]) });
        series.push({ color, dots: true, points: curves.epochs.map((e) => [e.epoch, e[train]]) });
        series.push({ color, dots: true, dash: true, points: curves.epochs.map((e) => [e.epoch, e[val]]) });
      }
      const item = document.createElement("span");
      item.style.color = color;
      item.textContent = `\u25A0 ${name}`;
      legend.append(item);
    });
    drawChart(this.root.querySelector("#loss-chart"), loss);
    drawChart(this.root.querySelector("#accuracy-chart"), accuracy);
    const points = this.curves.get(this.focus)?.points || [];
    if (points.length) this.root.querySelector("#loss-chart").dataset.newest = String(points[points.length - 1].time);
  }

  renderNumbers() {
    const list = this.root.querySelector("#live-numbers");
    const run = this.runs.get(this.focus);
    if (!run) {
      list.replaceChildren();
      return;
    }
    const rows = [
      ["status", run.status],
      ["epoch", `${run.position.toFixed(2)} of ${run.epochs_total}`],
      ["images/s", run.images_per_second === null ? "-" : run.images_per_second.toFixed(0)],
      ["time left", run.status === "training" ? duration(run.eta_seconds) : "-"],
      ["validation accuracy", run.val_accuracy === null ? "-" : run.val_accuracy.toFixed(4)],
      ["test accuracy", run.test_accuracy === null ? "-" : run.test_accuracy.toFixed(4)],
      ["options", `lr ${run.lr}, batch ${run.batch_size}${run.augment ? ", augmented" : ""}` +
        (run.limit_train ? `, ${run.limit_train} images` : "")],
    ];
    list.replaceChildren(...rows.flatMap(([term, value]) => {
      const dt = document.createElement("dt");
      const dd = document.createElement("dd");
      dt.textContent = term;
      dd.textContent = value;
      dd.dataset.term = term;
      return [dt, dd];
    }));
  }

  // ----- the first layer, epoch by epoch -----
  async fetchFirstLayer(reset) {
    if (!this.focus) return;
    const atEnd = reset || !this.firstLayer || Number(this.slider.value) === this.firstLayer.epochs.length;
    this.firstLayerEpochs = this.runs.get(this.focus)?.epochs;
    try {
      this.firstLayer = await get(runPath(this.focus, "first-layer"));
    } catch (error) {
      this.firstLayer = null;
      this.onMessage(error.message, "error");
    }
    const count = this.firstLayer ? this.firstLayer.epochs.length : 0;
    this.slider.max = String(Math.max(count, 1));
    this.slider.disabled = count < 2;
    if (atEnd) this.slider.value = String(Math.max(count, 1));
    this.drawFirstLayer();
  }

  drawFirstLayer() {
    const grid = this.root.querySelector("#first-layer-grid");
    const label = this.root.querySelector("#first-layer-epoch-label");
    const title = this.root.querySelector("#first-layer-title");
    const layer = this.firstLayer;
    if (!layer || !layer.kind || !layer.epochs.length) {
      grid.replaceChildren();
      title.textContent = "first layer: a CNN's filters or a linear model's class templates, " +
        "recorded after each epoch (none here yet)";
      label.textContent = "";
      return;
    }
    const index = Number(this.slider.value) - 1;
    title.textContent = layer.kind === "templates" ? "class templates (rows of W)" : "first-layer filters";
    label.textContent = `${layer.epochs[index]} of ${layer.epochs[layer.epochs.length - 1]}`;
    drawGrid(grid, layer.snapshots[index], { titles: layer.titles, size: layer.kind === "templates" ? 56 : 28 });
  }

  // ----- training from the page -----
  formOptions() {
    const elements = this.form.elements;
    const number = (input) => (input.value === "" ? null : Number(input.value));
    return {
      model: elements.model.value,
      dataset: elements.dataset.value,
      epochs: number(elements.epochs),
      lr: number(elements.lr),
      limit_train: number(elements.limit_train),
      augment: elements.augment.checked,
      name: elements.name.value.trim() || null,
    };
  }

  async start() {
    try {
      const job = await post("/api/training", { json: this.formOptions(), withToken: true });
      this.onMessage(`training ${job.run}: ${job.command}`);
      this.updateJob(job);
      this.onStarted(job.run);
    } catch (error) {
      this.onMessage(error.message, "error");
    }
  }

  async stop() {
    try {
      this.updateJob(await post("/api/training/stop", { withToken: true }));
    } catch (error) {
      this.onMessage(error.message, "error");
    }
  }

  async resume() {
    const input = this.root.querySelector("#resume-epochs");
    const epochs = input.value === "" ? null : Number(input.value);
    try {
      const job = await post(runPath(this.focus, "resume"), { json: { epochs }, withToken: true });
      this.onMessage(`training ${job.run}: ${job.command}`);
      this.updateJob(job);
    } catch (error) {
      this.onMessage(error.message, "error");
    }
  }

  updateJob(job) {
    this.job = job;
    const pill = document.querySelector("#job-state");
    pill.textContent = job.run ? `${job.state}: ${job.run}` : job.state;
    pill.dataset.state = job.state;
    this.root.querySelector("#train-log").textContent = (job.log || []).join("\n");
    this.renderButtons();
  }

  renderButtons() {
    const busy = this.job.state === "running" || this.job.state === "stopping";
    const run = this.runs.get(this.focus);
    this.root.querySelector("#start-button").disabled = busy;
    this.root.querySelector("#stop-button").disabled = this.job.state !== "running";
    this.root.querySelector("#resume-button").disabled =
      busy || !run || !run.editable || run.status === "training";
  }
}
