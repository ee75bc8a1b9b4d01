// Shared by the dashboard's pages: API calls, safe DOM building, formatting, live polling.
// Every value from the API reaches the page through textContent or attributes, never HTML.

export const API = "/api/v1";
const CSRF_COOKIE = "gentune_csrf";

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.detail) || `request failed with status ${status}`);
    this.status = status;
    this.errors = (body && body.errors) || [];
  }
}

function cookie(name) {
  const found = document.cookie.split("; ").find((part) => part.startsWith(`${name}=`));
  return found ? decodeURIComponent(found.slice(name.length + 1)) : "";
}

/** The login page, coming back here afterwards. */
export function loginUrl() {
  return `/login?next=${encodeURIComponent(window.location.pathname + window.location.search)}`;
}

/** Call the REST API; resolves to the JSON body, rejects with an ApiError in the API's words.
 * The login cookie goes along by itself; a change also sends the CSRF cookie's value in a
 * header, which a page of another site cannot read. */
export async function api(path, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  if (options.method && options.method !== "GET" && cookie(CSRF_COOKIE)) {
    headers["X-CSRF-Token"] = cookie(CSRF_COOKIE);
  }
  const response = await fetch(API + path, { ...options, headers, credentials: "same-origin" });
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    body = null;
  }
  if (!response.ok) {
    const error = new ApiError(response.status, body);
    if (response.status === 401) error.message += " Log in to go on.";
    throw error;
  }
  return body;
}

/** Fill the header's login corner: who is logged in and a way out, or a way in. */
async function showSession() {
  const corner = document.querySelector("#session");
  if (!corner) return;
  let session;
  try {
    session = await api("/session");
  } catch (_) {
    return;
  }
  if (!session.auth) return;
  if (session.name) {
    const out = el("a", { href: "#", onclick: async (event) => {
      event.preventDefault();
      await fetch(`${API}/session`, { method: "DELETE", credentials: "same-origin" });
      window.location.assign(session.protect_reads ? loginUrl() : window.location.href);
    } }, "Log out");
    fill(corner, "Logged in as ", el("strong", {}, session.name), " · ", out);
  } else {
    fill(corner, el("a", { href: loginUrl() }, "Log in"), " to submit or cancel studies");
  }
}

/** Build an element: el("a", {href: url, class: "x"}, "text", child...). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function $(selector) {
  return document.querySelector(selector);
}

export function fill(target, ...children) {
  target.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
}

export function fmt(value) {
  if (value === null || value === undefined) return "–";
  if (typeof value !== "number") return String(value);
  if (!Number.isFinite(value)) return String(value);
  if (Number.isInteger(value) && Math.abs(value) < 1e6) return String(value);
  const abs = Math.abs(value);
  if (abs !== 0 && (abs < 1e-3 || abs >= 1e5)) return value.toExponential(2);
  return value.toPrecision(4).replace(/\.?0+$/, "");
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "–";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

export function elapsed(start, end) {
  if (!start) return null;
  const to = end ? Date.parse(end) : Date.now();
  return (to - Date.parse(start)) / 1000;
}

export function badge(state) {
  return el("span", { class: `badge ${state}` }, state);
}

export function progressBar(counts, total, wide = false) {
  const parts = ["completed", "pruned", "failed", "running", "pending"];
  const denominator = Math.max(total, 1);
  return el(
    "div",
    { class: wide ? "bar wide" : "bar", title: parts.map((p) => `${counts[p] || 0} ${p}`).join(", ") },
    parts.map((p) =>
      el("span", { class: p, style: `width:${(100 * (counts[p] || 0)) / denominator}%` }),
    ),
  );
}

export function countsText(study) {
  const c = study.trial_counts;
  const done = c.completed + c.pruned + c.failed;
  const extra = [];
  if (c.pruned) extra.push(`${c.pruned} pruned`);
  if (c.failed) extra.push(`${c.failed} failed`);
  if (c.running) extra.push(`${c.running} running`);
  if (c.pending) extra.push(`${c.pending} waiting for resources`);
  return `${done}/${study.n_trials} done` + (extra.length ? ` · ${extra.join(" · ")}` : "");
}

export function paramsText(params) {
  return Object.entries(params || {})
    .map(([k, v]) => `${k}=${fmt(v)}`)
    .join("  ");
}

export const FINISHED = new Set(["completed", "failed", "cancelled"]);
export const STATE_COLORS = {
  completed: "#2f9e44",
  pruned: "#e8890c",
  failed: "#d6336c",
  running: "#1c7ed6",
  pending: "#868e96",
};

/** Whether a trial is still going: training, or waiting for a worker with free resources. */
export function active(state) {
  return state === "running" || state === "pending";
}

/** A trial's run time: from when it started training (not while it waited) to its end. */
export function runTime(trial) {
  return trial.started_at ? duration(elapsed(trial.started_at, trial.finished_at)) : "–";
}

/** A flat YAML rendering of a config (what `gentune best` prints). */
export function toYaml(value, indent = "") {
  if (value === null || typeof value !== "object") return JSON.stringify(value);
  const lines = [];
  for (const [key, item] of Object.entries(value)) {
    if (item !== null && typeof item === "object" && !Array.isArray(item)) {
      lines.push(`${indent}${key}:`, toYaml(item, indent + "  "));
    } else {
      lines.push(`${indent}${key}: ${JSON.stringify(item)}`);
    }
  }
  return lines.join("\n");
}

export function download(filename, text, type = "application/yaml") {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = el("a", { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

export async function copyText(text, button) {
  const before = button.textContent;
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = "Copied";
  } catch (_) {
    button.textContent = "Select and copy";
  }
  setTimeout(() => (button.textContent = before), 1500);
}

/**
 * Run `tick` now and every `ms` while the tab is visible; `tick` returns false to stop.
 * Failures show in the header ("reconnecting") and polling goes on.
 */
export function live(tick, ms = 2000) {
  const status = $("#live");
  let timer = null;
  let inFlight = false;
  let stopped = false;
  async function run() {
    timer = null;
    if (stopped || inFlight) return;
    inFlight = true;
    try {
      const more = await tick();
      if (status) {
        status.className = "live";
        status.textContent = more === false ? "final" : `live · ${new Date().toLocaleTimeString()}`;
      }
      if (more === false) stopped = true;
    } catch (error) {
      if (status) {
        status.className = "live off";
        status.textContent = `reconnecting: ${error.message}`;
      }
      console.warn("gentune: refresh failed", error);
    } finally {
      inFlight = false;
    }
    if (!document.hidden && !stopped) timer = setTimeout(run, ms);
  }
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && !timer && !inFlight && !stopped) run();
  });
  run();
}

export const PLOT_CONFIG = { displaylogo: false, responsive: true };

export function plotLayout(extra = {}) {
  return {
    margin: { l: 56, r: 16, t: 10, b: 40 },
    paper_bgcolor: "rgba(0,0,0,0)",
    plot_bgcolor: "rgba(0,0,0,0)",
    font: { size: 11 },
    hovermode: "closest",
    showlegend: false,
    ...extra,
  };
}

/** "log" when positive values span more than 30x (FID from 2000 down to 40, say). */
export function axisType(values) {
  const finite = values.filter((v) => v !== null && Number.isFinite(v));
  if (!finite.length || finite.some((v) => v <= 0)) return "linear";
  return Math.max(...finite) / Math.min(...finite) > 30 ? "log" : "linear";
}

/** A y axis for `values`: logarithmic with a tick per decade when they span >30x. */
export function valueAxis(values, title) {
  const type = axisType(values);
  if (type === "log") return { title: { text: title }, type, dtick: 1 };
  const axis = { title: { text: title }, type, tickformat: "~g" };
  const finite = values.filter((v) => v !== null && Number.isFinite(v));
  if (finite.length && finite.every((v) => v === finite[0]) && finite[0] !== 0) {
    const v = finite[0];  // a constant (a fixed learning rate, say) centred, not drawn as 0
    axis.range = [v - Math.abs(v) / 2, v + Math.abs(v) / 2];
  }
  return axis;
}

/** Plotly reads labels and hover text as a little HTML: show names and reasons as written. */
export function plotText(value) {
  return String(value).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/** Returns a function that says whether a response is still the latest one asked for. */
export function latestOnly() {
  let asked = 0;
  return () => {
    const mine = ++asked;
    return () => mine === asked;
  };
}

/** On a 404, replace the page with the API's sentence and a way back; true if it did. */
export function showMissing(error) {
  if (!(error instanceof ApiError) || error.status !== 404) return false;
  fill($("main"), el("div", { class: "panel notice error" }, error.message, " ", el("a", { href: "/" }, "All studies")));
  return true;
}

export function showError(target, error) {
  fill(target, el("div", { class: "notice error" }, error.message || String(error)));
}

showSession();
