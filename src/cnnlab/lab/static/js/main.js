// The page's wiring: one view per part of the page (runs.js, training.js, model.js,
// input.js), the server through api.js, and the event stream that keeps them live.

import { subscribe } from "./api.js";
import { InputView } from "./input.js";
import { ModelView } from "./model.js";
import { RunsView } from "./runs.js";
import { TrainingView } from "./training.js";

const state = { focus: null, selected: [], waitingFor: null };

function message(text, kind = "info") {
  const element = document.querySelector("#message");
  element.textContent = text;
  element.dataset.kind = kind;
}

const training = new TrainingView(document.querySelector("#training-view"), {
  onMessage: message,
  onStarted: (name) => {
    state.waitingFor = name; // open it as soon as it appears in the list
  },
});
const model = new ModelView(document.querySelector("#model-view"), { onMessage: message });
const input = new InputView(document.querySelector("#input-view"), {
  onInput: (chosen) => model.inspect(chosen),
  onMessage: message,
});
const runs = new RunsView(document.querySelector("#runs-view"), {
  onFocus: (name) => open(name),
  onSelect: (names) => {
    state.selected = names;
    training.show(state.focus, names);
  },
});

async function open(name) {
  state.focus = name;
  training.show(name, state.selected);
  try {
    const summary = await model.showRun(name);
    input.source = null;
    await input.showRun(name, summary);
  } catch (error) {
    message(error.message, "error");
  }
}

function update({ runs: list, changed, training: job }) {
  runs.update(list);
  training.setRuns(list);
  training.updateJob(job);
  training.refresh(changed);
  const names = list.map((run) => run.name);
  if (state.waitingFor && names.includes(state.waitingFor)) {
    const name = state.waitingFor;
    state.waitingFor = null;
    runs.open(name);
  } else if (!state.focus && names.length) {
    runs.open(names[0]);
  }
  if (!document.body.dataset.ready) {
    performance.mark("cnnlab-ready"); // the run list is on the page: it is usable
    document.body.dataset.ready = "true";
  }
}

async function start() {
  await training.loadOptions();
  subscribe(update, (connection) => {
    const pill = document.querySelector("#connection");
    pill.textContent = connection;
    pill.dataset.state = connection;
  });
}

start().catch((error) => message(error.message, "error"));
