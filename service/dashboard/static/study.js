// The study page: progress, curves, parameters, importances, the trials table and the best
// config, redrawn while the study runs. Large studies stay light: the server sends columns
// (one row per trial), a few curves, and pages of trials, with ETags so unchanged data is a 304.
import {
  $, API, ApiError, FINISHED, valueAxis, PLOT_CONFIG, STATE_COLORS, api, badge, copyText, countsText,
  download, duration, el, elapsed, fill, fmt, latestOnly, live, paramsText, plotLayout, plotText,
  progressBar, runTime, showError, showMissing, toYaml,
} from "/assets/gentune.js";

const studyId = Number(window.location.pathname.split("/").filter(Boolean).pop());
const TRIALS_PAGE = 50;
const table = { sort: "number", order: "desc", offset: 0, state: "" };
let study = null;
let lastSeen = null;
let importancesFor = null;

for (const [id, format] of [["json", "json"], ["trials", "trials.csv"], ["metrics", "metrics.csv"]]) {
  $(`#export-${id}`).setAttribute("href", `/api/v1/studies/${studyId}/export?format=${format}`);
}
let bestConfigText = "";
let paretoIds = new Set();  // the Pareto set of the latest GET /best
let lastColumns = null;

function arrow() {
  return study.objective.direction === "maximize" ? "↑ higher is better" : "↓ lower is better";
}

function drawSummary() {
  document.title = `gentune · ${study.name}`;
  fill($("#title"), `${study.name} `, el("span", { class: "small" }, `#${study.id}`));
  fill(
    $("#subtitle"),
    `trainer ${study.trainer} · objective ${study.objective.metric} (${arrow()}) · `,
    el("a", { href: `/optuna/by-name/${encodeURIComponent(study.optuna_study_name)}` },
      `Optuna study ${study.optuna_study_name}`),
  );
  fill($("#progress"), progressBar(study.trial_counts, study.n_trials, true),
    el("div", { class: "small" }, countsText(study)));
  const best = study.best;
  const facts = [
    ["State", [badge(study.state), study.state_reason ? ` ${study.state_reason}` : "",
      study.cancel_requested && !FINISHED.has(study.state) ? " (cancelling)" : ""]],
    ["Best", best ? el("a", { href: `/trials/${best.trial_id}` }, `${fmt(best.value)} (trial #${best.number})`) : "–"],
    ["Vs defaults", baselineFact(study.baseline)],
    ["Elapsed", duration(elapsed(study.started_at, study.finished_at))],
    ["Created", new Date(study.created_at).toLocaleString()],
  ];
  if (study.submitted_by) facts.push(["Submitted by", study.submitted_by]);
  if (study.cancelled_by) facts.push(["Cancelled by", study.cancelled_by]);
  fill($("#facts"), facts.map(([label, value]) => el("div", {}, el("b", {}, label), el("span", {}, value))));
  $("#cancel").hidden = FINISHED.has(study.state) || study.cancel_requested;
  if (!$("#definition").textContent) $("#definition").textContent = toYaml(study.definition);
}

// The baseline trial (the trainer's defaults) in words, linked to its trial once it exists.
function baselineFact(baseline) {
  if (!baseline) return "no baseline (baseline: false)";
  const words = el("span", { id: "baseline-summary" }, baseline.summary);
  if (baseline.trial_id === null) return words;
  return [words, " · ", el("a", { href: `/trials/${baseline.trial_id}` }, `defaults trial #${baseline.number}`)];
}

// --- charts ----------------------------------------------------------------------------

function openTrialOnClick(node) {
  if (node.dataset.clickBound) return;
  node.dataset.clickBound = "1";
  node.on("plotly_click", (event) => {
    const id = event.points && event.points[0] && event.points[0].customdata;
    if (id) window.location.assign(`/trials/${id}`);
  });
}

function emptyChart(id, message) {
  const node = $(id);
  if (node.data) window.Plotly.purge(node);
  fill(node, el("div", { class: "empty" }, message));
}

async function drawColumns() {
  const columns = await api(`/studies/${studyId}/columns`);
  const n = columns.number.length;
  if (!n) {
    emptyChart("#chart-history", "No trials yet.");
    emptyChart("#chart-parallel", "No trials yet.");
    return;
  }
  const traces = [];
  for (const state of ["completed", "pruned", "failed", "running", "pending"]) {
    const idx = columns.state.map((s, i) => (s === state && columns.value[i] !== null ? i : -1)).filter((i) => i >= 0);
    if (!idx.length) continue;
    traces.push({
      type: "scattergl", mode: "markers", name: state,
      x: idx.map((i) => columns.number[i]), y: idx.map((i) => columns.value[i]),
      customdata: idx.map((i) => columns.trial_id[i]),
      text: idx.map((i) => plotText(columns.pruned_by[i] ? `stopped by ${columns.pruned_by[i]}` : state)),
      marker: { color: STATE_COLORS[state], size: 6, symbol: state === "pruned" ? "x" : "circle" },
      hovertemplate: "trial #%{x}: %{y:.4g}<br>%{text}<extra></extra>",
    });
  }
  traces.push({
    type: "scatter", mode: "lines", name: "best so far", x: columns.number, y: columns.best_so_far,
    line: { shape: "hv", color: "#1d2330", width: 2 }, hoverinfo: "skip",
  });
  const baseline = study.baseline;
  if (baseline && baseline.value !== null && columns.number.length) {
    traces.push({
      type: "scatter", mode: "lines", name: `defaults (${baseline.state})`,
      x: [Math.min(...columns.number), Math.max(...columns.number)], y: [baseline.value, baseline.value],
      line: { dash: "dash", color: "#8a6d00", width: 1.5 }, hovertemplate: `defaults: %{y:.4g}<extra></extra>`,
    });
  }
  const history = $("#chart-history");
  if (!history.data) fill(history);
  await window.Plotly.react(history, traces, plotLayout({
    showlegend: true, legend: { orientation: "h", y: 1.1 },
    xaxis: { title: { text: "trial" } },
    yaxis: valueAxis(columns.value, plotText(columns.objective.metric)),
  }), PLOT_CONFIG);
  openTrialOnClick(history);
  drawParallel(columns);
  lastColumns = columns;
  drawPareto();
}

// A multi-objective study: every completed trial on its first two objectives, the Pareto
// set (from GET /best) joined by a line, infeasible trials greyed.
function drawPareto() {
  const columns = lastColumns;
  const panel = $("#pareto-panel");
  if (!columns || columns.objectives.length < 2) { panel.hidden = true; return; }
  panel.hidden = false;
  const [ox, oy] = columns.objectives;
  const label = (o) => plotText(`${o.metric} ${o.direction === "maximize" ? "↑" : "↓"}`);
  const idx = columns.values.map((v, i) => (v ? i : -1)).filter((i) => i >= 0);
  if (!idx.length) { emptyChart("#chart-pareto", "Shown once a trial completes."); return; }
  const group = (name, keep, marker, mode = "markers") => {
    const rows = idx.filter(keep);
    if (mode === "lines+markers") rows.sort((a, b) => columns.values[a][0] - columns.values[b][0]);
    return {
      type: "scatter", mode, name, x: rows.map((i) => columns.values[i][0]),
      y: rows.map((i) => columns.values[i][1]), customdata: rows.map((i) => columns.trial_id[i]),
      text: rows.map((i) => `trial #${columns.number[i]}`), marker,
      line: { shape: "hv", color: "#c2410c" },
      hovertemplate: "%{text}<br>%{x:.4g}, %{y:.4g}<extra></extra>",
    };
  };
  const front = (i) => paretoIds.has(columns.trial_id[i]);
  const traces = [
    group("trials", (i) => !front(i) && columns.feasible[i] !== false, { color: "#64748b", size: 7 }),
    group("infeasible", (i) => columns.feasible[i] === false, { color: "#cbd5e1", size: 8, symbol: "x" }),
    group("Pareto set", front, { color: "#c2410c", size: 9 }, "lines+markers"),
  ].filter((trace) => trace.x.length);
  const node = $("#chart-pareto");
  if (!node.data) fill(node);
  window.Plotly.react(node, traces, plotLayout({
    showlegend: true, legend: { orientation: "h", y: 1.1 },
    xaxis: { title: { text: label(ox) } }, yaxis: { title: { text: label(oy) } },
  }), PLOT_CONFIG);
  openTrialOnClick(node);
  const more = columns.objectives.length > 2 ? ` Showing the first two of ${columns.objectives.length} objectives.` : "";
  $("#pareto-note").textContent = `${paretoIds.size} trial(s) in the Pareto set.${more}`;
}

function drawParallel(columns) {
  const rows = columns.value.map((v, i) => (v === null ? -1 : i)).filter((i) => i >= 0);
  const space = study.definition.search_space || {};
  if (rows.length < 2 || !Object.keys(space).length) {
    emptyChart("#chart-parallel", "Shown once two trials have a value.");
    return;
  }
  const dimensions = Object.entries(space).map(([name, spec]) => {
    const raw = rows.map((i) => columns.params[name][i]);
    if (spec.type === "categorical") {
      const labels = spec.choices.map(String);
      return { label: plotText(name), values: raw.map((v) => labels.indexOf(String(v))),
        tickvals: labels.map((_, i) => i), ticktext: labels.map(plotText), range: [0, Math.max(labels.length - 1, 1)] };
    }
    if (spec.log) {
      return { label: plotText(`log10 ${name}`), values: raw.map((v) => Math.log10(v)),
        range: [Math.log10(spec.low), Math.log10(spec.high)] };
    }
    return { label: plotText(name), values: raw, range: [spec.low, spec.high] };
  });
  const values = rows.map((i) => columns.value[i]);
  dimensions.push({ label: plotText(columns.objective.metric), values });
  const node = $("#chart-parallel");
  if (!node.data) fill(node);
  window.Plotly.react(node, [{
    type: "parcoords", dimensions,
    line: { color: values, colorscale: "Viridis", reversescale: study.objective.direction === "minimize", showscale: true },
  }], plotLayout({ margin: { l: 60, r: 60, t: 56, b: 20 } }), PLOT_CONFIG);
}

async function drawCurves() {
  const data = await api(`/studies/${studyId}/curves?best=30&recent=20`);
  fill($("#curves-title"), `${data.metric} over steps`);
  fill($("#curves-note"), data.total_trials > data.trials.length
    ? `The ${data.trials.length} best and latest of ${data.total_trials} trials; dotted lines were pruned (hover for why), click one to open it.`
    : "Dotted lines were pruned (hover for why); click a line to open its trial.");
  const withPoints = data.trials.filter((t) => t.steps.length);
  if (!withPoints.length) {
    emptyChart("#chart-curves", "No evaluations reported yet.");
    return;
  }
  const traces = [];
  for (const t of withPoints) {
    const why = t.state === "pruned" ? `pruned by ${t.pruned_by || "?"}: ${t.reason || ""}` : t.reason || t.state;
    traces.push({
      type: "scatter", mode: "lines+markers", name: `#${t.number}`,
      x: t.steps, y: t.values, customdata: t.steps.map(() => t.trial_id),
      line: { color: STATE_COLORS[t.state] || "#888", width: 1.5, dash: t.state === "pruned" ? "dot" : "solid" },
      marker: { size: 3 },
      text: t.steps.map(() => plotText(why.slice(0, 160))),
      hovertemplate: `trial #${t.number} (${t.state})<br>step %{x}: %{y:.4g}<br>%{text}<extra></extra>`,
    });
    if (t.state === "pruned") {
      const last = t.steps.length - 1;
      traces.push({
        type: "scatter", mode: "markers", x: [t.steps[last]], y: [t.values[last]],
        customdata: [t.trial_id], text: [plotText(why.slice(0, 300))],
        marker: { symbol: "x", size: 10, color: STATE_COLORS.pruned },
        hovertemplate: `trial #${t.number} stopped at step %{x}<br>%{text}<extra></extra>`,
      });
    }
  }
  const node = $("#chart-curves");
  if (!node.data) fill(node);
  await window.Plotly.react(node, traces, plotLayout({
    xaxis: { title: { text: "step (evaluation)" } },
    yaxis: valueAxis(withPoints.flatMap((t) => t.values), plotText(data.metric)),
  }), PLOT_CONFIG);
  openTrialOnClick(node);
}

async function drawImportances() {
  const key = `${study.trial_counts.completed}-${study.state}`;
  if (importancesFor === key) return;
  const data = await api(`/studies/${studyId}/importances`);
  importancesFor = key;  // only once fetched: a failed fetch is tried again next time
  const entries = Object.entries(data.importances).sort((a, b) => a[1] - b[1]);
  fill($("#importances-note"), data.note || `${data.method.split(".").pop()} over ${data.n_trials} completed trials.`);
  if (!entries.length) {
    emptyChart("#chart-importances", data.note || "No importances yet.");
    return;
  }
  const node = $("#chart-importances");
  if (!node.data) fill(node);
  await window.Plotly.react(node, [{
    type: "bar", orientation: "h", x: entries.map((e) => e[1]), y: entries.map((e) => plotText(e[0])),
    marker: { color: "#3b5bdb" }, hovertemplate: "%{y}: %{x:.3f}<extra></extra>",
  }], plotLayout({ margin: { l: 120, r: 16, t: 10, b: 40 }, xaxis: { title: { text: "importance" } } }), PLOT_CONFIG);
}

// --- best config -----------------------------------------------------------------------

async function drawBest() {
  if (!study.best) {
    fill($("#best"), el("div", { class: "empty" }, "No completed trial yet."));
    return;
  }
  let best;
  try {
    best = await api(`/studies/${studyId}/best`);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      fill($("#best"), el("div", { class: "empty" }, error.message));
      return;
    }
    throw error;
  }
  paretoIds = new Set((best.pareto || []).map((p) => p.trial_id));
  drawPareto();
  bestConfigText = toYaml(best.config) + "\n";
  fill(
    $("#best"),
    el("div", { class: "small" }, "Trial ", el("a", { href: `/trials/${best.trial_id}` }, `#${best.number} (id ${best.trial_id})`),
      `: ${study.objective.metric} ${fmt(best.value)} at step ${best.step}`),
    el("pre", { class: "config", id: "best-config" }, bestConfigText),
  );
  $("#copy-config").disabled = false;
  $("#download-config").disabled = false;
  const refine = $("#refine");
  refine.hidden = false;
  refine.setAttribute("href", `/?refine=${studyId}#submit-panel`);
  const link = $("#download-checkpoint");
  link.hidden = !best.checkpoint_url;
  if (best.checkpoint_url) link.setAttribute("href", `${API}/trials/${best.trial_id}/checkpoint?kind=best`);
}

// --- trials table ----------------------------------------------------------------------

function trialRow(t) {
  const why = t.state === "pruned"
    ? [el("b", {}, t.pruned_by || "pruned"), t.pruned_step !== null ? ` at step ${t.pruned_step}: ` : ": ", t.reason || ""]
    : t.reason || "";
  return el(
    "tr",
    { dataset: { trialId: t.id, state: t.state } },
    el("td", { class: "num" }, t.number),
    el("td", { class: "num" }, el("a", { href: `/trials/${t.id}` }, t.id)),
    el("td", {}, badge(t.state)),
    el("td", { class: "num" }, fmt(t.value), t.feasible === false
      ? el("div", { class: "small infeasible", title: "breaks a constraint: never the best" }, "infeasible") : null),
    el("td", { class: "num" }, t.last_step === null ? "–" : t.last_step),
    el("td", { class: "num rating" }, t.rating_mean === null ? "–" : `${fmt(t.rating_mean)} (${t.rating_count})`,
      t.wins || t.losses ? el("div", { class: "small" }, `${t.wins}–${t.losses}`) : null),
    el("td", { class: "params mono" }, paramsText(t.params)),
    el("td", { class: "reason" }, why),
    el("td", { class: "small" }, t.finished_at
      ? `${new Date(t.finished_at).toLocaleTimeString()} (${runTime(t)})`
      : t.state === "pending" ? "waiting for resources" : `running (${runTime(t)})`),
  );
}

const trialsRequest = latestOnly();

async function drawTrials() {
  const query = new URLSearchParams({ sort: table.sort, order: table.order, offset: table.offset, limit: TRIALS_PAGE });
  if (table.state) query.set("state", table.state);
  const current = trialsRequest();
  const page = await api(`/studies/${studyId}/trials?${query}`);
  if (!current()) return;  // a newer request (another page or sort) has been sent since
  fill($("#trials tbody"), page.data.length ? page.data.map(trialRow)
    : el("tr", {}, el("td", { colspan: 9, class: "empty" }, table.state ? `No ${table.state} trials.` : "No trials yet.")));
  for (const th of document.querySelectorAll("#trials th.sortable")) {
    const active = th.dataset.sort === table.sort;
    th.querySelector(".arrow")?.remove();
    if (active) th.append(el("span", { class: "arrow" }, table.order === "asc" ? "▲" : "▼"));
  }
  const last = Math.min(table.offset + TRIALS_PAGE, page.count);
  fill(
    $("#trials-pager"),
    el("span", { class: "small", id: "trials-count" }, page.count ? `${table.offset + 1}–${last} of ${page.count}` : ""),
    el("button", { disabled: table.offset === 0, onclick: () => { table.offset = Math.max(0, table.offset - TRIALS_PAGE); drawTrials(); } }, "Previous"),
    el("button", { disabled: last >= page.count, onclick: () => { table.offset += TRIALS_PAGE; drawTrials(); } }, "Next"),
  );
}

// --- live ------------------------------------------------------------------------------

async function tick() {
  try {
    study = await api(`/studies/${studyId}`);
  } catch (error) {
    if (showMissing(error)) return false;
    throw error;
  }
  drawSummary();
  const seen = JSON.stringify([study.state, study.trial_counts, study.best, study.baseline && study.baseline.value]);
  const going = study.trial_counts.running + (study.trial_counts.pending || 0);
  const running = going > 0 || study.state === "running";
  if (seen !== lastSeen || running) {
    await Promise.all([drawColumns(), drawCurves(), drawTrials(), drawImportances()]);
    if (seen !== lastSeen) await drawBest();
  }
  lastSeen = seen;
  return !FINISHED.has(study.state) || going > 0;
}

for (const th of document.querySelectorAll("#trials th.sortable")) {
  th.addEventListener("click", () => {
    if (table.sort === th.dataset.sort) table.order = table.order === "asc" ? "desc" : "asc";
    else { table.sort = th.dataset.sort; table.order = (th.dataset.sort === "value" && study?.objective.direction === "maximize") || th.dataset.sort === "rating" ? "desc" : "asc"; }
    table.offset = 0;
    drawTrials();
  });
}
$("#trial-state").addEventListener("change", (event) => { table.state = event.target.value; table.offset = 0; drawTrials(); });
$("#copy-config").addEventListener("click", (event) => copyText(bestConfigText, event.target));
$("#download-config").addEventListener("click", () => download(`study${studyId}-best.yaml`, bestConfigText));
$("#cancel").addEventListener("click", async () => {
  if (!window.confirm(`Cancel study ${study.name}? Running trials are stopped.`)) return;
  try {
    study = await api(`/studies/${studyId}/cancel`, { method: "POST" });
    drawSummary();
  } catch (error) {
    showError($("#cancel-result"), error);
  }
});
live(tick, 2000);
