// advlab dashboard: interactive charts (uPlot, vendored under /static/vendor) from the JSON
// metrics API. Loaded after uplot.iife.min.js and before app.js on the pages that chart; app.js
// calls AdvCharts.* from its page init. Every chart container gets data-series (a JSON list of
// its series labels) so a test, or a curious user, can read what is drawn.
"use strict";

const AdvCharts = (() => {
  // distinct hues (tab10, then tab20's light half): neighbouring series never share a shade
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                   "#7f7f7f", "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896",
                   "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5"];
  const DASHES = [null, [6, 3], [2, 2], [8, 3, 2, 3]];  // beyond 20 series: same hues, dashed

  function color(i) { return PALETTE[i % PALETTE.length]; }

  // [{label, points: [[x, y], ...]}] → uPlot's columnar data: the union of x values, one
  // y column per series with null where that series has no point
  function align(series) {
    const xs = [...new Set(series.flatMap(s => s.points.map(p => p[0])))].sort((a, b) => a - b);
    const index = new Map(xs.map((x, i) => [x, i]));
    const columns = series.map(s => {
      const ys = new Array(xs.length).fill(null);
      for (const [x, y] of s.points) ys[index.get(x)] = (y === null || Number.isNaN(y)) ? null : y;
      return ys;
    });
    return [xs, ...columns];
  }

  // the mean over seeds at each step ([{seed, points}] of one metric → [[step, mean], ...])
  function meanOverSeeds(perSeed) {
    if (perSeed.length === 1) return perSeed[0].points;
    const at = new Map();
    for (const s of perSeed) {
      for (const [x, y] of s.points) {
        if (y === null || Number.isNaN(y)) continue;
        const acc = at.get(x) || [0, 0];
        acc[0] += y; acc[1] += 1;
        at.set(x, acc);
      }
    }
    return [...at.entries()].sort((a, b) => a[0] - b[0]).map(([x, [sum, n]]) => [x, sum / n]);
  }

  function fmt(v) {
    if (v === null || v === undefined) return "–";
    const a = Math.abs(v);
    return a !== 0 && (a < 1e-3 || a >= 1e5) ? v.toExponential(2) : (+v.toFixed(4)).toString();
  }

  // One chart in `container` (emptied first). opts: {title, xlabel, ylabel, series: [{label,
  // points}], yRange: [lo, hi] | undefined, log: bool}. The legend sits below the plot area
  // (uPlot's table legend): long labels never cover the lines.
  function lineChart(container, opts) {
    container.textContent = "";
    const labels = opts.series.map(s => s.label);
    container.dataset.series = JSON.stringify(labels);
    container.dataset.seriesCount = String(labels.length);
    if (!opts.series.length || !opts.series.some(s => s.points.length)) {
      container.classList.add("empty");
      container.textContent = "no data for this chart yet";
      return null;
    }
    container.classList.remove("empty");
    const data = align(opts.series);
    const width = Math.max(280, container.clientWidth || 600);
    const scaleY = opts.log ? {distr: 3} : (opts.yRange ? {range: opts.yRange} : {});
    const u = new uPlot({
      title: opts.title,
      width, height: opts.height || 260,
      scales: {x: {time: false}, y: scaleY},
      axes: [{label: opts.xlabel || "epoch"}, {label: opts.ylabel || "", size: 60}],
      legend: {live: true},
      cursor: {drag: {x: true, y: false}},
      series: [{label: opts.xlabel || "epoch"}, ...opts.series.map((s, i) => ({
        label: s.label, stroke: s.color || color(i), width: 1.6,
        dash: s.dash || DASHES[Math.floor(i / PALETTE.length) % DASHES.length] || undefined,
        spanGaps: true, points: {show: s.points.length < 40}, value: (u, v) => fmt(v),
      }))],
    }, data, container);
    container.uplot = u;
    return u;
  }

  // charts follow their container's width (the page grid reflows on resize)
  const charts = new Set();
  function track(container) { charts.add(container); }
  window.addEventListener("resize", () => {
    for (const c of charts) {
      if (c.uplot && c.clientWidth) c.uplot.setSize({width: c.clientWidth, height: c.uplot.height});
    }
  });

  // ---------------------------------------------------------------- one experiment

  const ROBUST = /^(fine\/)?(train|test)\/robust_accuracy\/(.+)@([^@]+)$/;

  // The panels of an experiment page, one per quantity: [{key, title, ylabel, names, yRange}]
  function panelsFor(names) {
    const panels = [];
    const loss = names.filter(n => /(^|\/)loss$/.test(n));
    if (loss.length) panels.push({key: "loss", title: "loss", ylabel: "loss", names: loss, log: true});
    const clean = names.filter(n => /clean_accuracy$/.test(n));
    if (clean.length) panels.push({key: "clean", title: "clean accuracy", ylabel: "accuracy",
                                   names: clean, yRange: [-0.02, 1.02]});
    for (const split of ["test", "train"]) {
      const robust = names.filter(n => { const m = ROBUST.exec(n); return m && m[2] === split; })
        .sort((a, b) => {
          const ma = ROBUST.exec(a), mb = ROBUST.exec(b);
          return (ma[1] || "").localeCompare(mb[1] || "") || ma[3].localeCompare(mb[3]) ||
                 parseFloat(ma[4]) - parseFloat(mb[4]);
        });
      if (robust.length) panels.push({key: "robust-" + split, title: `robust accuracy (${split})`,
                                      ylabel: "accuracy", names: robust, yRange: [-0.02, 1.02]});
    }
    const corr = names.filter(n => n.startsWith("corr/"));
    if (corr.length) panels.push({key: "corr", title: "correlations", ylabel: "correlation",
                                  names: corr});
    const shown = new Set(panels.flatMap(p => p.names));
    const rest = names.filter(n => !shown.has(n) && !n.startsWith("corr/"));
    if (rest.length && rest.length <= 12) panels.push({key: "other", title: "other metrics",
                                                        names: rest});
    return panels;
  }

  // robust accuracy: one colour per radius, solid for all attacks together (min_*), dashed
  // per single attack; other panels: the palette in order
  function style(name, panel, i) {
    if (!panel.key.startsWith("robust")) return {color: color(i)};
    const radii = [...new Set(panel.names.map(n => parseFloat(ROBUST.exec(n)[4])))]
      .sort((a, b) => a - b);
    const m = ROBUST.exec(name);
    const attacks = [...new Set(panel.names.map(n => ROBUST.exec(n)[3])
                                   .filter(a => !a.startsWith("min_")))].sort();
    const a = attacks.indexOf(m[3]);
    return {color: color(radii.indexOf(parseFloat(m[4])) + (m[1] ? 10 : 0)),
            dash: a < 0 ? undefined : DASHES[1 + (a % (DASHES.length - 1))]};
  }

  function label(name, panel) {
    if (panel.key.startsWith("robust")) {
      const m = ROBUST.exec(name);
      return (m[1] ? "fine " : "") + m[3] + " @ " + m[4];
    }
    return name;
  }

  // {name: [{seed, points}]} from a MetricsRead body
  function bySeries(body) {
    const out = {};
    for (const s of body.series) (out[s.name] = out[s.name] || []).push(s);
    return out;
  }

  function experimentCharts(root, id) {
    let metrics = {};
    const extra = [];  // user-added panels: metric names
    async function load() {
      const response = await fetch(`/v1/experiments/${id}/metrics?max_points=400`,
                                   {headers: {"Accept": "application/json"}});
      if (!response.ok) return;
      metrics = bySeries(await response.json());
      draw();
    }
    function panelBox(key, title, removable) {
      let box = root.querySelector(`.chart-panel[data-panel="${CSS.escape(key)}"]`);
      if (!box) {
        box = document.createElement("figure");
        box.className = "chart-panel";
        box.dataset.panel = key;
        const chart = document.createElement("div");
        chart.className = "chart";
        box.appendChild(chart);
        if (removable) {
          const close = document.createElement("button");
          close.className = "close";
          close.type = "button";
          close.textContent = "×";
          close.title = "remove this chart";
          close.addEventListener("click", () => {
            extra.splice(extra.indexOf(key.slice(7)), 1);
            box.remove();
          });
          box.appendChild(close);
        }
        root.querySelector(".charts").appendChild(box);
        track(chart);
      }
      return box.querySelector(".chart");
    }
    function draw() {
      const names = Object.keys(metrics).sort();
      const picker = root.querySelector("#metric-pick");
      if (picker && picker.options.length !== names.length) {
        const chosen = picker.value;
        picker.textContent = "";
        for (const n of names) picker.add(new Option(n, n, false, n === chosen));
      }
      for (const p of panelsFor(names)) {
        lineChart(panelBox(p.key, p.title), {
          title: p.title, ylabel: p.ylabel, yRange: p.yRange,
          log: p.log && p.names.every(n => meanOverSeeds(metrics[n]).every(([, y]) => y > 0)),
          series: p.names.map((n, i) => ({label: label(n, p), points: meanOverSeeds(metrics[n]),
                                          ...style(n, p, i)})),
        });
      }
      for (const name of extra) {
        lineChart(panelBox("metric:" + name, name, true), {
          title: name, ylabel: name.split("/").pop(),
          series: (metrics[name] || []).map(s => ({label: `seed ${s.seed}`, points: s.points})),
        });
      }
      root.dataset.loaded = "true";
    }
    const add = root.querySelector("#metric-add");
    if (add) {
      add.addEventListener("click", () => {
        const name = root.querySelector("#metric-pick").value;
        if (name && !extra.includes(name)) { extra.push(name); draw(); }
      });
    }
    return {load};
  }

  // ---------------------------------------------------------------- compare

  // One series per experiment of a /v1/compare body's aligned series (nulls: no point there)
  function compareChart(container, body, name, labels) {
    const aligned = body.series.find(s => s.name === name);
    const series = body.experiments.map((e, i) => ({
      label: labels[e.id] || e.name, color: color(i),
      points: aligned ? aligned.steps.map((x, j) => [x, aligned.values[e.id][j]])
                          .filter(([, y]) => y !== null) : [],
    }));
    return lineChart(container, {title: name, ylabel: name.split("/").pop(), series,
                                 yRange: /accuracy/.test(name) ? [-0.02, 1.02] : undefined, height: 360});
  }

  // final robust accuracy against radius, one line per experiment ({id: [[radius, acc]]})
  function radiusChart(container, perExperiment, threat, ids, labels) {
    const series = ids.map((id, i) => ({label: labels[id], color: color(i),
                                        points: perExperiment[id] || []}));
    return lineChart(container, {title: threat + " vs radius (last evaluation)",
                                 xlabel: "radius", ylabel: "robust accuracy", series,
                                 yRange: [-0.02, 1.02], height: 360});
  }

  return {lineChart, radiusChart, align, meanOverSeeds, panelsFor, experimentCharts, compareChart, track,
          color};
})();
