// Talking to the lab's server: JSON in and out, the session token, the event stream.
// Every number the page shows comes from here; the page computes nothing of its own.

const token = document.querySelector('meta[name="cnnlab-token"]').content;

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function url(path, params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== null && value !== undefined) query.set(key, String(value));
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

async function answer(response) {
  const body = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) throw new ApiError(response.status, body.error || response.statusText);
  return body;
}

export function runPath(name, rest) {
  return `/api/runs/${encodeURIComponent(name)}/${rest}`;
}

export function get(path, params) {
  return fetch(url(path, params)).then(answer);
}

// POST a JSON value (json) or raw bytes (body: a Blob); withToken for what starts or stops
// training.
export function post(path, { params, json, body, withToken } = {}) {
  const headers = {};
  if (withToken) headers["X-Cnnlab-Token"] = token;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  return fetch(url(path, params), { method: "POST", headers, body }).then(answer);
}

// Server-sent events: onUpdate({runs, changed, training}) whenever a run moves on;
// onConnection("live" | "reconnecting").
export function subscribe(onUpdate, onConnection) {
  const source = new EventSource("/api/events");
  source.addEventListener("update", (event) => onUpdate(JSON.parse(event.data)));
  source.addEventListener("open", () => onConnection("live"));
  source.addEventListener("error", () => onConnection("reconnecting"));
  return source;
}
