// The runs view: every run of RUNS_DIR in a sortable table. Tick runs to compare their
// curves; click a row to open that run in the training and model views.

const SHOWN = {
  name: (run) => run.name + (run.source !== "runs" ? ` (${run.source})` : ""),
  model: (run) => run.model + (run.features ? ` on ${run.features.join(",")}` : ""),
  dataset: (run) => run.dataset,
  status: (run) => run.status,
  epochs: (run) => `${run.epochs}/${run.epochs_total ?? "?"}`,
  test_accuracy: (run) => (run.test_accuracy === null ? "-" : run.test_accuracy.toFixed(4)),
  best_val_accuracy: (run) => (run.best_val_accuracy === null ? "-" : run.best_val_accuracy.toFixed(4)),
  seconds: (run) => duration(run.seconds),
  params: (run) => (run.params === null ? "-" : run.params.toLocaleString("en")),
};

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

export class RunsView {
  constructor(root, { onFocus, onSelect }) {
    this.body = root.querySelector("tbody");
    this.empty = root.querySelector("#runs-empty");
    this.onFocus = onFocus;
    this.onSelect = onSelect;
    this.runs = [];
    this.selected = new Set();
    this.focus = null;
    this.sort = { key: null, descending: false };
    for (const header of root.querySelectorAll("th[data-key]")) {
      header.addEventListener("click", () => this.sortBy(header.dataset.key));
    }
  }

  update(runs) {
    this.runs = runs;
    const names = new Set(runs.map((run) => run.name));
    for (const name of [...this.selected]) if (!names.has(name)) this.selected.delete(name);
    this.render();
  }

  sortBy(key) {
    this.sort = { key, descending: this.sort.key === key ? !this.sort.descending : false };
    this.render();
  }

  ordered() {
    const { key, descending } = this.sort;
    if (!key) return this.runs;
    const sign = descending ? -1 : 1;
    return [...this.runs].sort((a, b) => {
      if (a[key] === b[key]) return 0;
      if (a[key] === null) return 1;
      if (b[key] === null) return -1;
      return a[key] < b[key] ? -sign : sign;
    });
  }

  render() {
    this.empty.hidden = this.runs.length > 0;
    this.body.replaceChildren(...this.ordered().map((run) => this.row(run)));
  }

  row(run) {
    const row = document.createElement("tr");
    row.dataset.name = run.name;
    row.dataset.status = run.status;
    row.classList.toggle("focus", run.name === this.focus);
    const tick = document.createElement("input");
    tick.type = "checkbox";
    tick.checked = this.selected.has(run.name);
    tick.title = "compare this run's curves";
    tick.addEventListener("click", (event) => {
      event.stopPropagation();
      if (tick.checked) this.selected.add(run.name);
      else this.selected.delete(run.name);
      this.onSelect([...this.selected]);
    });
    const first = document.createElement("td");
    first.append(tick);
    row.append(first);
    for (const [key, show] of Object.entries(SHOWN)) {
      const cell = document.createElement("td");
      cell.textContent = show(run);
      cell.dataset.key = key;
      if (key === "status") cell.className = `status ${run.status}`;
      row.append(cell);
    }
    row.addEventListener("click", () => this.open(run.name));
    return row;
  }

  open(name) {
    this.focus = name;
    this.render();
    this.onFocus(name);
  }
}
