// advlab dashboard: a little vanilla JS over the JSON API. No inline scripts (the CSP forbids
// them): each page says what it is in <body data-page=...> and carries its data in data-*.
"use strict";

const TERMINAL = new Set(["succeeded", "failed", "canceled"]);

function $(selector, root = document) { return root.querySelector(selector); }

function setBadge(el, status) {
  if (!el) return;
  el.textContent = status;
  el.dataset.status = status;
  el.className = "badge status-" + status;
}

// with ADVLAB_AUTH=tokens the session cookie authenticates; a write also sends the page's
// CSRF token (the server refuses a cookie-authenticated write without it)
function csrfHeaders() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? {"X-CSRF-Token": meta.content} : {};
}

async function postJson(url, body) { return sendJson("POST", url, body); }

async function sendJson(method, url, body) {
  const response = await fetch(url, {
    method,
    headers: {"Content-Type": "application/json", "Accept": "application/json", ...csrfHeaders()},
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  return {ok: response.ok, status: response.status, data};
}

function errorText(result) {
  const detail = result.data && result.data.detail;
  if (Array.isArray(detail)) return detail.map(d => d.msg).join("\n");
  return "HTTP " + result.status + ": " + (detail || "request failed");
}

// Set while a retry or delete navigates away: the live stream's `end` (a deleted job ends
// too) must not reload the page over that navigation.
let leaving = false;

// retry → the new experiment's page; delete → the table; tags and notes saved in place
function wireExperimentActions() {
  const errors = $("#action-errors");
  const show = text => { if (errors) { errors.textContent = text; errors.hidden = !text; } };
  const retry = $("#retry");
  if (retry) {
    retry.addEventListener("click", async () => {
      retry.disabled = true;
      const result = await postJson(retry.dataset.url);
      if (!result.ok) { retry.disabled = false; show(errorText(result)); return; }
      leaving = true;
      window.location.href = "/experiments/" + result.data.id;
    });
  }
  const del = $("#delete");
  if (del) {
    del.addEventListener("click", async () => {
      if (!window.confirm("Delete this experiment with all its data?")) return;
      del.disabled = true;
      leaving = true;
      const result = await sendJson("DELETE", del.dataset.url);
      if (!result.ok) leaving = false;
      if (!result.ok) { del.disabled = false; show(errorText(result)); return; }
      window.location.href = "/";
    });
  }
  const form = $("#meta-form");
  if (form) {
    form.addEventListener("submit", async event => {
      event.preventDefault();
      show("");
      const tags = $("#tags-input").value.split(",").map(t => t.trim()).filter(Boolean);
      const result = await sendJson("PATCH", form.dataset.url,
                                    {tags, notes: $("#notes-input").value});
      if (!result.ok) { show(errorText(result)); return; }
      const box = $("#tags");
      box.textContent = "";
      for (const t of result.data.tags) {
        const a = document.createElement("a");
        a.className = "tag";
        a.href = "/?tag=" + encodeURIComponent(t);
        a.textContent = t;
        box.append(a, " ");
      }
      $("#notes-view").textContent = result.data.notes || "–";
      $("#meta-result").textContent = "saved";
    });
  }
}

function wireCancel() {
  const button = $("#cancel");
  if (!button) return;
  button.addEventListener("click", async () => {
    button.disabled = true;
    const result = await postJson(button.dataset.url);
    if (!result.ok) { button.disabled = false; alert(errorText(result)); return; }
    window.location.reload();
  });
}

// ------------------------------------------------------------------ experiments table

// Selected rows live in sessionStorage: they survive the live row refresh, paging and the
// filters, and are forgotten with the tab.
const SELECTED_KEY = "advlab.selected";

function loadSelected() {
  try { return new Set(JSON.parse(sessionStorage.getItem(SELECTED_KEY) || "[]")); }
  catch (e) { return new Set(); }
}

function initExperiments() {
  const table = $("#experiments");
  const query = table.dataset.query;
  const selected = loadSelected();
  const save = () => sessionStorage.setItem(SELECTED_KEY, JSON.stringify([...selected]));
  const result = $("#action-result");

  function syncSelection() {
    for (const box of document.querySelectorAll("#rows input.pick")) {
      box.checked = selected.has(box.value);
    }
    const n = selected.size;
    const count = $("#selected-count");
    count.textContent = n + " selected";
    count.dataset.count = String(n);
    const compare = $("#compare-selected");
    compare.disabled = n < 1 || n > 20;  // GET /v1/compare takes 1 to 20 runs
    compare.title = n > 20 ? "compare at most 20 runs at a time" : "";
    for (const id of ["#retry-selected", "#delete-selected", "#clear-selected"]) $(id).disabled = n < 1;
    const boxes = [...document.querySelectorAll("#rows input.pick")];
    $("#select-all").checked = boxes.length > 0 && boxes.every(b => b.checked);
  }

  // while a row is queued or running, refresh every 1.5 s; otherwise every 10 s (new jobs
  // submitted from the CLI or another tab appear without a reload)
  let idle = 0;
  async function reloadRows() {
    const response = await fetch("/ui/rows" + (query ? "?" + query : ""));
    if (response.ok) { $("#rows").innerHTML = await response.text(); syncSelection(); }
  }
  async function refresh() {
    const live = [...document.querySelectorAll("#rows tr.exp-row")]
      .some(row => !TERMINAL.has(row.dataset.status));
    if (!live && ++idle < 7) return;
    idle = 0;
    await reloadRows();
  }
  setInterval(() => { refresh().catch(() => {}); }, 1500);

  $("#rows").addEventListener("change", event => {
    const box = event.target;
    if (!box.classList || !box.classList.contains("pick")) return;
    if (box.checked) selected.add(box.value); else selected.delete(box.value);
    save();
    syncSelection();
  });
  $("#select-all").addEventListener("change", event => {
    for (const box of document.querySelectorAll("#rows input.pick")) {
      if (event.target.checked) selected.add(box.value); else selected.delete(box.value);
    }
    save();
    syncSelection();
  });
  $("#clear-selected").addEventListener("click", () => { selected.clear(); save(); syncSelection(); });
  $("#compare-selected").addEventListener("click", () => {
    window.location.href = "/compare?ids=" + [...selected].join(",");
  });

  // one request per selected experiment; the summary says what each answered
  async function each(label, method, urlOf, after) {
    const ids = [...selected];
    const failures = [];
    let done = 0;
    for (const id of ids) {
      const r = await sendJson(method, urlOf(id));
      if (r.ok) { done += 1; after(id, r); } else failures.push(id.slice(0, 8) + ": " + errorText(r));
    }
    result.textContent = label + " " + done + "/" + ids.length + (failures.length ? " — " + failures.join("; ") : "");
    result.dataset.done = String(done);
    save();
    await reloadRows();
  }
  $("#retry-selected").addEventListener("click", () => each(
    "retried", "POST", id => "/v1/experiments/" + id + "/retry", () => {}).catch(() => {}));
  $("#delete-selected").addEventListener("click", () => {
    if (!window.confirm("Delete " + selected.size + " experiment(s) with all their data?")) return;
    each("deleted", "DELETE", id => "/v1/experiments/" + id, id => selected.delete(id))
      .catch(() => {});
  });
  const spec = $("#col-spec");  // a typed spec path becomes a `spec.` column
  if (spec) {
    $("#filters").addEventListener("submit", () => {
      const v = spec.value.trim();
      if (v && !v.startsWith("spec.")) spec.value = "spec." + v;
    });
  }
  syncSelection();
}

// ------------------------------------------------------------------ one experiment

// A plot's load in flight: until it settles, the image is not asked for again. Under load a
// render can take longer than the refresh interval, and a new src cancels the pending request,
// so re-asking on every `metrics` event would keep a running job's plots from ever arriving
// (while the server still renders every canceled request).
function trackLoad(img) {
  const figure = img.closest("figure");
  img.dataset.loading = "true";
  img.onload = () => { delete img.dataset.loading; figure.classList.remove("pending", "failed"); };
  img.onerror = () => { delete img.dataset.loading; figure.classList.add("failed"); };
}

// A figure is asked for once a metric name its plot reads has arrived (data-needs, a pattern
// over names): before that the server would answer 409.
function refreshPlots(names) {
  for (const img of document.querySelectorAll("#plots img")) {
    const figure = img.closest("figure");
    if (figure.dataset.ready !== "true") {
      const needs = new RegExp(figure.dataset.needs);
      if (!names.some(n => needs.test(n))) continue;
      figure.dataset.ready = "true";
    }
    if (img.dataset.loading === "true") continue;
    trackLoad(img);
    img.src = img.dataset.src + "?t=" + Date.now();
  }
}

function initExperiment() {
  const body = document.body;
  wireCancel();
  wireExperimentActions();
  const explorer = $("#explorer");
  const charts = explorer && typeof AdvCharts !== "undefined"
    ? AdvCharts.experimentCharts(explorer, body.dataset.id) : null;
  if (charts) charts.load().catch(() => {});
  for (const img of document.querySelectorAll("#plots img")) {
    const figure = img.closest("figure");
    img.addEventListener("error", () => figure.classList.add("failed"));
    if (img.complete && img.getAttribute("src") && img.naturalWidth === 0) figure.classList.add("failed");
    if (!img.complete) trackLoad(img);  // the server-rendered src is still loading
  }
  if (body.dataset.terminal === "true") return;
  const live = $("#live");
  const events = new EventSource("/v1/experiments/" + body.dataset.id + "/events");
  let lastPlot = 0;
  events.addEventListener("open", () => { live.textContent = "live"; });
  events.addEventListener("status", e => {
    const data = JSON.parse(e.data);
    setBadge($("#status"), data.status);
    body.dataset.status = data.status;
    if (data.started_at) $("#started").textContent = data.started_at.slice(0, 19).replace("T", " ");
    $("#worker").textContent = (data.worker || "–") + " (attempt " + data.attempts + ")";
  });
  events.addEventListener("progress", e => {
    const p = JSON.parse(e.data);
    const bar = $("#progress");
    bar.max = p.total || 1;
    bar.value = p.step;
    $("#progress-text").textContent = p.step + "/" + p.total;
    $("#eta").textContent = p.eta_s == null ? "" : "ETA " + p.eta_s.toFixed(1) + " s";
  });
  const names = new Set();
  events.addEventListener("metrics", e => {
    const data = JSON.parse(e.data);
    for (const n of data.names || []) names.add(n);
    for (const p of data.points || []) names.add(p[0]);
    const now = Date.now();
    if (now - lastPlot > 3000) {
      lastPlot = now;
      refreshPlots([...names]);
      if (charts) charts.load().catch(() => {});
    }
  });
  events.addEventListener("end", () => {
    events.close();
    if (!leaving) window.location.reload();  // the server renders the summary and final plots
  });
  events.addEventListener("error", () => { live.textContent = "reconnecting…"; });
}

// ------------------------------------------------------------------ sweeps

function initSweep() {
  wireCancel();
  const metric = $("#metric");
  if (metric) {
    metric.addEventListener("change", () => {
      $("#band").src = "/v1/sweeps/" + document.body.dataset.id + "/plots/" + metric.value + ".png";
    });
  }
  if (document.body.dataset.terminal !== "true") {
    setTimeout(() => window.location.reload(), 3000);
  }
}

// ------------------------------------------------------------------ compare

function initCompare() {
  const select = $("#compare-metric");
  const chart = $("#compare-chart");
  if (!select || !chart || typeof AdvCharts === "undefined") return;
  const ids = document.body.dataset.ids;
  const labels = JSON.parse(chart.dataset.labels);
  AdvCharts.track(chart);
  const radius = JSON.parse(chart.dataset.radius || "{}");
  async function draw() {
    const name = select.value;
    chart.dataset.metric = name;
    delete chart.dataset.loaded;
    if (name.startsWith("radius:")) {  // from the summaries: no request
      const threat = name.slice(7);
      AdvCharts.radiusChart(chart, radius[threat] || {}, threat, ids.split(","), labels);
      chart.dataset.loaded = name;
      return;
    }
    const response = await fetch("/v1/compare?ids=" + encodeURIComponent(ids) + "&names=" +
                                 encodeURIComponent(name) + "&max_points=500",
                                 {headers: {"Accept": "application/json"}});
    if (!response.ok) { chart.textContent = "HTTP " + response.status; return; }
    AdvCharts.compareChart(chart, await response.json(), name, labels);
    chart.dataset.loaded = name;
  }
  select.addEventListener("change", () => { draw().catch(() => {}); });
  draw().catch(() => {});
}

// ------------------------------------------------------------------ submit

function initSubmit() {
  const errors = $("#errors");
  const show = text => { errors.textContent = text; errors.hidden = !text; };
  $("#template").addEventListener("change", () => $("#template-form").submit());

  function spec() {
    try { return JSON.parse($("#spec").value); }
    catch (e) { show("The spec is not valid JSON: " + e.message); return null; }
  }

  $("#submit-experiment").addEventListener("click", async event => {
    event.preventDefault();
    show("");
    const body = spec();
    if (body === null) return;
    const result = await postJson(event.target.dataset.url, body);
    if (!result.ok) { show(errorText(result)); return; }
    window.location.href = "/experiments/" + result.data.id;
  });

  $("#submit-sweep").addEventListener("click", async event => {
    event.preventDefault();
    show("");
    const base = spec();
    if (base === null) return;
    let grid;
    try { grid = JSON.parse($("#grid").value); }
    catch (e) { show("The grid is not valid JSON: " + e.message); return; }
    const seeds = $("#seeds").value.split(",").map(s => s.trim()).filter(Boolean).map(Number);
    const result = await postJson(event.target.dataset.url, {
      name: base.name || "sweep", tags: base.tags || [], base, grid, seeds,
      seed_mode: $("#separate").checked ? "separate" : "batched",
    });
    if (!result.ok) { show(errorText(result)); return; }
    window.location.href = "/sweeps/" + result.data.id;
  });
}

const PAGES = {experiments: initExperiments, experiment: initExperiment, sweep: initSweep,
               submit: initSubmit, compare: initCompare};

document.addEventListener("DOMContentLoaded", () => {
  const init = PAGES[document.body.dataset.page];
  if (init) init();
});
