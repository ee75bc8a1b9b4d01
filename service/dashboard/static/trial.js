// The trial page: every metric over steps with the stability thresholds, the sample grids
// over training time, the config, the reproducibility record and the checkpoints.
import {
  $, PLOT_CONFIG, STATE_COLORS, active, api, plotText, valueAxis, badge, duration, el, elapsed, fill, fmt, live, plotLayout, showError,
  showMissing, toYaml,
} from "/assets/gentune.js";

const trialId = Number(window.location.pathname.split("/").filter(Boolean).pop());
const GROUPS = [
  ["quality", /^(fid|kid|is|inception|precision|recall|density|coverage|psnr|ssim|mode|hq|elbo|nll|bpd)/],
  ["losses", /loss/],
  ["gradients", /grad/],
  ["stability", /^stability\//],
  ["timing", /(seconds|_s$|time)/],
];
let study = null;
const charts = new Map();
let sampleCount = -1;
let followLatest = true;

function group(name) {
  for (const [index, [, pattern]] of GROUPS.entries()) if (pattern.test(name)) return index + 1;
  return GROUPS.length + 1;
}

function drawSummary(trial) {
  document.title = `gentune · trial ${trial.id}`;
  fill($("#title"), `Trial #${trial.number} `, el("span", { class: "small" }, `id ${trial.id}`));
  fill($("#subtitle"), "study ", el("a", { href: `/studies/${trial.study_id}` }, study ? `${study.name} (#${study.id})` : `#${trial.study_id}`),
    study ? ` · objective ${study.objective.metric} (${study.objective.direction})` : "");
  const facts = [
    ["State", badge(trial.state)],
    ["Value", trial.value === null ? "–" : `${fmt(trial.value)} at step ${trial.best_step}`],
    ["Last step", trial.last_step === null ? "–" : trial.last_step],
    ["Node", trial.node ? `${trial.node}${trial.ray_node_id ? ` (Ray ${trial.ray_node_id.slice(0, 8)})` : ""}` : "–"],
    ["GPUs", trial.gpu_ids || "none"],
    ["Attempts", trial.attempts],
    ["Config from", trial.origin || "the sampler"],
    ["Waited", trial.started_at ? duration(elapsed(trial.created_at, trial.started_at)) : "–"],
    ["Trained", trial.started_at ? duration(elapsed(trial.started_at, trial.finished_at)) : "–"],
  ];
  fill($("#facts"), facts.map(([label, value]) => el("div", {}, el("b", {}, label), el("span", {}, value))));
  if (trial.state === "pruned" || trial.state === "failed") {
    const values = trial.prune_values
      ? Object.entries(trial.prune_values).map(([k, v]) => `${k} = ${fmt(v)}`).join(", ") : "";
    fill($("#verdict"), el("div", { class: "notice error", id: "reason" },
      el("b", {}, trial.state === "pruned" ? `Pruned by ${trial.pruned_by || "the pruner"}` : "Failed"),
      trial.pruned_step !== null && trial.pruned_step !== undefined ? ` at step ${trial.pruned_step}` : "",
      values ? ` (${values})` : "", trial.reason ? `: ${trial.reason}` : ""));
  } else {
    fill($("#verdict"));
  }
}

function drawMetrics(trial) {
  const container = $("#metrics");
  const objective = study ? study.objective.metric : null;
  const names = Object.keys(trial.metrics).sort((a, b) =>
    (a === objective ? 0 : group(a)) - (b === objective ? 0 : group(b)) || a.localeCompare(b));
  const color = STATE_COLORS[trial.state] || "#1c7ed6";
  if (names.length) container.querySelector(":scope > .empty")?.remove();
  for (const name of names) {
    let chart = charts.get(name);
    if (!chart) {
      // ids stay unique even for names that differ only in punctuation (d/loss, d_loss)
      const slug = `metric-${name.replace(/[^a-z0-9]+/gi, "-")}`;
      const id = document.getElementById(slug) ? `${slug}-${charts.size}` : slug;
      chart = el("div", { class: "chart small", id, dataset: { metric: name } });
      charts.set(name, chart);
      container.append(el("div", { class: "panel" }, el("h2", {}, name, name === objective ? " (objective)" : ""), chart));
    }
    const points = trial.metrics[name];
    const traces = [{
      type: "scatter", mode: "lines+markers", x: points.map((p) => p.step), y: points.map((p) => p.value),
      line: { color, width: 2 }, marker: { size: 4 }, hovertemplate: "step %{x}: %{y:.4g}<extra></extra>",
    }];
    const shapes = [];
    const annotations = [];
    const finite = points.map((p) => p.value).filter((v) => v !== null && Number.isFinite(v));
    const low = Math.min(...finite, 0);
    const high = Math.max(...finite, 0);
    const span = Math.max(high - low, Math.abs(high) * 0.1, 1e-9);
    let offChart = 0;
    for (const line of trial.thresholds.filter((t) => t.metric === name)) {
      const text = plotText(`${line.label} ${fmt(line.value)}`);
      // A bound far beyond the data would flatten the curve: name it instead of drawing it.
      if (finite.length && (line.value > high + 2 * span || line.value < low - 2 * span)) {
        annotations.push({ xref: "paper", yref: "paper", x: 1, y: 1 - 0.08 * offChart++,
          xanchor: "right", yanchor: "top", showarrow: false, font: { size: 10, color: "#d6336c" },
          text: `${text} (${line.value > high ? "above" : "below"} the chart)` });
        continue;
      }
      shapes.push({ type: "line", xref: "paper", x0: 0, x1: 1, y0: line.value, y1: line.value,
        line: { color: "#d6336c", dash: "dash", width: 1.5 } });
      annotations.push({ xref: "paper", x: 1, y: line.value, xanchor: "right", yanchor: "bottom",
        text, showarrow: false, font: { size: 10, color: "#d6336c" } });
    }
    if (trial.pruned_step !== null && trial.pruned_step !== undefined) {
      shapes.push({ type: "line", yref: "paper", y0: 0, y1: 1, x0: trial.pruned_step, x1: trial.pruned_step,
        line: { color: "#868e96", dash: "dot", width: 1.5 } });
    }
    window.Plotly.react(chart, traces, plotLayout({
      shapes, annotations, margin: { l: 50, r: 10, t: 6, b: 30 },
      xaxis: { title: { text: "step" } },
      yaxis: valueAxis(points.map((p) => p.value), ""),
    }), PLOT_CONFIG);
  }
  if (!names.length) fill(container, el("div", { class: "empty" }, "No evaluation reported yet."));
}

let samples = [];

function drawSamples(trial) {
  samples = trial.samples;
  if (!samples.length || samples.length === sampleCount) return;
  const container = $("#samples");
  let slider = $("#sample-slider");
  if (!slider) {
    slider = el("input", { type: "range", id: "sample-slider", min: 0, step: 1 });
    fill(container, el("img", { id: "sample-image", alt: "sample grid" }), slider, el("div", { class: "small", id: "sample-label" }));
    slider.addEventListener("input", () => {
      followLatest = Number(slider.value) === samples.length - 1;
      showSample(Number(slider.value));
    });
  }
  sampleCount = samples.length;
  slider.max = samples.length - 1;
  if (followLatest) slider.value = samples.length - 1;
  showSample(Number(slider.value));
}

function showSample(index) {
  const sample = samples[index];
  $("#sample-image").setAttribute("src", new URL(sample.url).pathname);
  fill($("#sample-label"), `step ${sample.step} · grid ${index + 1} of ${samples.length}`);
}

function drawDetails(trial) {
  $("#config").textContent = toYaml(trial.config);
  const record = { ...trial.run_info };
  if (trial.config.seed !== undefined) record.seed = String(trial.config.seed);
  if (study) record["study definition"] = `study ${study.id}, sampler ${study.definition.sampler?.type}`;
  $("#reproduce-command").textContent = `gentune reproduce ${trial.id}`;
  $("#manifest-link").setAttribute("href", `/api/v1/trials/${trial.id}/manifest`);
  fill($("#run-info"), Object.entries(record).sort().flatMap(([k, v]) => [el("dt", {}, k), el("dd", { class: "mono" }, v)]));
  fill($("#checkpoints"), trial.checkpoints.length ? trial.checkpoints.map((c) =>
    el("div", {}, el("a", { href: new URL(c.url).pathname, download: "" }, `${c.kind} checkpoint`),
      ` · step ${c.step} · ${(c.size_bytes / 1024).toFixed(0)} KiB`)) : "None yet.");
}

async function tick() {
  let trial;
  try {
    trial = await api(`/trials/${trialId}`);
  } catch (error) {
    if (showMissing(error)) return false;
    throw error;
  }
  if (!study) study = await api(`/studies/${trial.study_id}`);
  drawSummary(trial);
  drawMetrics(trial);
  drawSamples(trial);
  drawDetails(trial);
  drawRating(trial);
  return active(trial.state);
}

function drawRating(trial) {
  const score = trial.rating_mean === null ? "no score yet" : `${fmt(trial.rating_mean)} from ${trial.rating_count} score(s)`;
  $("#rating-summary").textContent = `${score} · picked over other trials ${trial.wins} time(s), passed over ${trial.losses} time(s)`;
}

async function sendRating(body) {
  const result = $("#rate-result");
  fill(result);
  try {
    const rating = await api(`/trials/${trialId}/ratings`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    drawRating(await api(`/trials/${trialId}`));  // the summary counts it before the notice shows
    fill(result, el("div", { class: "notice" }, rating.score !== null
      ? `Scored ${rating.score} by ${rating.rater}.` : `Picked over trial ${rating.better_than} by ${rating.rater}.`));
  } catch (error) {
    showError(result, error);
  }
}

for (const button of document.querySelectorAll("#rate [data-score]")) {
  button.addEventListener("click", () => sendRating({ score: Number(button.dataset.score) }));
}
$("#pick").addEventListener("click", () => {
  const other = Number($("#better-than").value);
  sendRating(other ? { better_than: other } : {});
});

live(tick, 2000);
