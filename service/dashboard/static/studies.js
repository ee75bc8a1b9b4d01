// The studies page: every study with its progress, and a form to submit a definition.
import {
  $, api, badge, countsText, duration, el, elapsed, fill, fmt, latestOnly, live, progressBar,
  showError,
} from "/assets/gentune.js";

const PAGE_SIZE = 25;
let offset = 0;

function studyRow(study) {
  const best = study.best
    ? el("a", { href: `/trials/${study.best.trial_id}` }, fmt(study.best.value))
    : "–";
  const arrow = study.objective.direction === "maximize" ? "↑" : "↓";
  return el(
    "tr",
    { dataset: { studyId: study.id } },
    el("td", { class: "num" }, el("a", { href: `/studies/${study.id}` }, study.id)),
    el("td", {}, el("a", { href: `/studies/${study.id}` }, study.name)),
    el("td", {}, study.trainer),
    el("td", {}, badge(study.state), study.cancel_requested && study.state === "running"
      ? el("div", { class: "small" }, "cancelling") : null),
    el("td", {}, progressBar(study.trial_counts, study.n_trials),
      el("div", { class: "small" }, countsText(study))),
    el("td", { class: "num" }, best, el("div", { class: "small" }, `${study.objective.metric} ${arrow}`)),
    el("td", { class: "num" }, duration(elapsed(study.started_at, study.finished_at))),
    el("td", { class: "small" }, new Date(study.created_at).toLocaleString()),
  );
}

const studiesRequest = latestOnly();

async function refresh() {
  const state = $("#state-filter").value;
  const query = new URLSearchParams({ offset, limit: PAGE_SIZE });
  if (state) query.set("state", state);
  const current = studiesRequest();
  const page = await api(`/studies?${query}`);
  if (!current()) return;  // the filter or page changed while this was on its way
  const rows = page.data.map(studyRow);
  fill(
    $("#studies tbody"),
    rows.length ? rows : el("tr", {}, el("td", { colspan: 8, class: "empty" },
      state ? `No ${state} studies.` : "No studies yet: submit one below.")),
  );
  const last = Math.min(offset + PAGE_SIZE, page.count);
  fill(
    $("#pager"),
    el("span", { class: "small" }, page.count ? `${offset + 1}–${last} of ${page.count}` : ""),
    el("button", { disabled: offset === 0, onclick: () => { offset = Math.max(0, offset - PAGE_SIZE); refresh(); } }, "Newer"),
    el("button", { disabled: last >= page.count, onclick: () => { offset += PAGE_SIZE; refresh(); } }, "Older"),
  );
}

// --- the definition editor -------------------------------------------------------------

const editor = $("#definition");
const gutter = $("#gutter");
let errorLines = new Map();

function drawGutter() {
  const count = editor.value.split("\n").length;
  const lines = [];
  for (let i = 1; i <= count; i++) {
    const message = errorLines.get(i);
    lines.push(message ? el("span", { class: "bad", title: message }, String(i)) : String(i), "\n");
  }
  fill(gutter, lines);
  gutter.scrollTop = editor.scrollTop;
}

function selectLine(line) {
  const starts = [0];
  editor.value.split("\n").forEach((text, i) => starts.push(starts[i] + text.length + 1));
  editor.focus();
  editor.setSelectionRange(starts[line - 1], starts[line] - 1);
  editor.scrollTop = Math.max(0, (line - 4) * 18);
}

function showErrors(errors) {
  errorLines = new Map();
  for (const error of errors) {
    if (error.line) {
      const before = errorLines.get(error.line);
      errorLines.set(error.line, (before ? before + "\n" : "") + `${error.field}: ${error.message}`);
    }
  }
  fill(
    $("#errors"),
    errors.map((error) =>
      el(
        "li",
        { dataset: { field: error.field, line: error.line || "" },
          onclick: () => error.line && selectLine(error.line) },
        error.line ? `line ${error.line} · ` : "",
        el("code", {}, error.field),
        ` ${error.message}`,
      ),
    ),
  );
  drawGutter();
}

async function submit() {
  const result = $("#submit-result");
  fill(result);
  showErrors([]);
  if (!editor.value.trim()) {
    showErrors([{ field: "body", message: "is empty: paste a definition or load a file" }]);
    return;
  }
  $("#submit").disabled = true;
  try {
    const study = await api("/studies/yaml", {
      method: "POST",
      headers: { "Content-Type": "application/yaml" },
      body: editor.value,
    });
    fill(result, el("div", { class: "notice" }, `Study ${study.id} (${study.name}) queued. Opening its page…`));
    window.location.assign(`/studies/${study.id}`);
  } catch (error) {
    showError(result, error);
    if (error.errors) showErrors(error.errors);
  } finally {
    $("#submit").disabled = false;
  }
}

editor.addEventListener("input", () => { errorLines = new Map(); drawGutter(); });
editor.addEventListener("scroll", () => { gutter.scrollTop = editor.scrollTop; });
$("#definition-file").addEventListener("change", async (event) => {
  const file = event.target.files[0];
  if (!file) return;
  editor.value = await file.text();
  showErrors([]);
  fill($("#submit-result"));
});
$("#submit").addEventListener("click", submit);

// /?refine=ID (the study page's Refine button): the follow-up definition, ready to edit.
async function loadRefined(sourceId) {
  const result = $("#submit-result");
  try {
    const definition = await api(`/studies/${encodeURIComponent(sourceId)}/refined`);
    editor.value = JSON.stringify(definition, null, 2) + "\n";  // JSON is YAML too
    showErrors([]);
    fill(result, el("div", { class: "notice" },
      `The definition of study ${sourceId} narrowed around its best trial, warm-started from its best trials: edit it and submit.`));
    editor.scrollIntoView();
  } catch (error) {
    showError(result, error);
  }
}
const refineFrom = new URLSearchParams(window.location.search).get("refine");
if (refineFrom) loadRefined(refineFrom);
$("#state-filter").addEventListener("change", () => { offset = 0; refresh(); });
drawGutter();
live(refresh, 3000);
