// Renders findings.json (embedded above) into the page. Plain DOM, no libraries, no network:
// the page opens from disk. Every string from the data goes through textContent.
"use strict";
(function () {
  const D = JSON.parse(document.getElementById("clf-data").textContent);
  const S = D.summary;
  const $ = (id) => document.getElementById(id);
  const REMOVED = "_removed";

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("data-")) node.setAttribute(k, v);
      else node[k] = v;
    }
    for (const c of children) if (c != null) node.append(c);
    return node;
  }
  const pct = (x) => (x == null ? "n/a" : (100 * x).toFixed(1) + "%");
  const num = (x, d = 3) => (x == null ? "n/a" : Number(x).toFixed(d));

  function picture(id, useHeat) {
    const img = D.images[id];
    const src = useHeat && img.heat ? img.heat : img.thumb;
    if (!src) return el("div", { class: "empty", text: "(no thumbnail)" });
    return el("img", { src: src, alt: img.file, title: img.file });
  }

  function card(id, lines, extra) {
    const node = el("div", { class: "card", "data-image": String(id) }, picture(id, false));
    for (const [text, cls] of lines) node.append(el("div", { class: cls || "", text: text }));
    node.append(el("div", { class: "file", text: D.images[id].file }));
    if (extra) node.append(extra);
    return node;
  }

  function empty(target, text) { target.append(el("p", { class: "empty", text: text })); }

  // Summary
  $("run-line").textContent = D.run + " (data: " + D.data + ")";
  const stats = [
    [S.images, "images inspected (" + S.train + " train, " + S.validation + " validation)"],
    [pct(S.validation_accuracy), "validation accuracy (the run's model)"],
    [pct(S.oof_accuracy), S.folds + "-fold out-of-fold accuracy"],
    [S.label_issues, "suspected label issues"],
    [S.worst_errors, "misclassified validation images"],
    [S.outliers, "outliers"],
    [S.near_duplicates, "near-duplicate pairs (" + S.leaks + " across splits, " + S.cross_class_duplicates + " across classes)"],
    [num(S.ece), "expected calibration error"],
  ];
  for (const [value, label] of stats) $("stats").append(el("div", { class: "stat" }, el("b", { text: String(value) }), el("span", { text: label })));

  // Confusion matrix and the validation gallery it filters
  const names = D.class_names;
  const cm = D.validation.confusion_matrix;
  const gallery = $("gallery");
  const cards = [];
  for (const p of D.validation.predictions) {
    const ok = p.true === p.predicted;
    const c = card(p.image, [[p.true + " \u2192 " + p.predicted + " (" + pct(p.probability) + ")", ok ? "right" : "wrong"]]);
    c.dataset.true = p.true;
    c.dataset.predicted = p.predicted;
    cards.push(c);
    gallery.append(c);
  }
  if (!cards.length) empty(gallery, "The run has no validation images.");
  function filter(t, p, cell) {
    let shown = 0;
    for (const c of cards) {
      const keep = t == null || (c.dataset.true === t && c.dataset.predicted === p);
      c.hidden = !keep;
      if (keep) shown += 1;
    }
    for (const td of document.querySelectorAll("#matrix td.cell")) td.classList.toggle("selected", td === cell);
    $("filter-note").textContent = t == null ? "Showing all " + cards.length + " validation images, highest loss first."
      : "Showing " + shown + " image(s) of true class " + t + " predicted as " + p + ".";
  }
  const head = el("tr", {}, el("th", { text: "true \\ predicted" }));
  for (const n of names) head.append(el("th", { text: n }));
  $("matrix").append(head);
  cm.forEach((row, i) => {
    const tr = el("tr", {}, el("th", { text: names[i] }));
    row.forEach((count, j) => {
      const td = el("td", { class: "cell" + (i !== j && count ? " off" : ""), text: String(count) });
      td.dataset.true = names[i];
      td.dataset.predicted = names[j];
      td.addEventListener("click", () => filter(names[i], names[j], td));
      tr.append(td);
    });
    $("matrix").append(tr);
  });
  $("show-all").addEventListener("click", () => filter(null, null, null));
  filter(null, null, null);

  // Suspected label issues, with the fix each one proposes
  const fixes = [];
  const issues = D.label_issues.slice(0, D.shown.label_issues);
  for (const it of issues) {
    // Unticked: a suspect is often the model's mistake, not the label's; the user ticks
    // the fixes they agree with after looking.
    const tick = el("input", { type: "checkbox", checked: false });
    const choice = el("select", {});
    for (const n of [...names, REMOVED]) if (n !== it.label) choice.append(el("option", { value: n, text: n, selected: n === it.suggested }));
    const extra = el("div", {}, el("label", {}, tick, " move to "), choice);
    $("issue-gallery").append(card(it.image, [["labelled " + it.label + ", looks like " + it.suggested, "wrong"],
      ["p(" + it.label + ") " + num(it.p_label, 2) + ", p(" + it.suggested + ") " + num(it.p_suggested, 2)]], extra));
    fixes.push({ file: it.file, label: it.label, tick: tick, target: () => choice.value });
  }
  if (!issues.length) empty($("issue-gallery"), "No suspected label issues.");
  else if (D.label_issues.length > issues.length) $("issue-gallery").before(el("p", { class: "note", text: "Showing the first " + issues.length + " of " + D.label_issues.length + " (all are in findings.json)." }));

  // Worst errors, with heatmaps
  const hm = D.heatmaps;
  $("heat-note").textContent = hm.method ? (hm.method === "cam" ? "Heatmaps: class activation maps (exact for this linear head)." : "Heatmaps: Grad-CAM.")
    : "No heatmaps: " + (hm.reason || "none were made") + ".";
  const errorCards = [];
  for (const e of D.worst_errors.slice(0, D.shown.worst_errors)) {
    const c = card(e.image, [["true " + e.true + ", predicted " + e.predicted + " (" + pct(e.probability) + ")", "wrong"], ["loss " + num(e.loss, 2)]]);
    errorCards.push(c);
    $("error-gallery").append(c);
  }
  if (!errorCards.length) empty($("error-gallery"), "No misclassified validation images.");
  function showHeat(on) {
    for (const c of errorCards) {
      const id = Number(c.dataset.image);
      c.replaceChild(picture(id, on), c.firstChild);
    }
  }
  $("show-heat").addEventListener("change", (ev) => showHeat(ev.target.checked));
  $("show-heat").disabled = !hm.method;
  showHeat(!!hm.method);

  // Outliers: below the known score's threshold
  const ks = D.known_score;
  $("outlier-note").textContent = ks
    ? ks.kind + " score" + (ks.source === "run" ? " of the run's model" : " (the run has none: calibrated here, as --unknown auto would)")
      + ", threshold " + num(ks.threshold, 3) + ", accepting " + pct(ks.accept_known) + " of the training images out of fold"
    : "No known score: a class has fewer than 2 training images.";
  for (const o of D.outliers.slice(0, D.shown.outliers)) {
    const tick = el("input", { type: "checkbox", checked: false });
    $("outlier-gallery").append(card(o.image, [["class " + o.label + " (" + o.split + "), known score " + num(o.score, 3)]], el("label", {}, tick, " remove")));
    fixes.push({ file: o.file, label: o.label, tick: tick, target: () => REMOVED });
  }
  if (!D.outliers.length) empty($("outlier-gallery"), "No outliers.");

  // Near duplicates
  for (const p of D.near_duplicates.slice(0, D.shown.near_duplicates)) {
    const a = D.images[p.a], b = D.images[p.b];
    const node = el("div", { class: "card pair" }, el("div", { class: "images" }, picture(p.a, false), picture(p.b, false)),
      el("div", { text: "similarity " + num(p.similarity, 3) }));
    if (p.cross_split) node.append(el("span", { class: "badge leak", text: a.split + " / " + b.split + " leak" }));
    if (p.cross_class) node.append(el("span", { class: "badge classes", text: a.label + " / " + b.label }));
    node.append(el("div", { class: "file", text: a.file }), el("div", { class: "file", text: b.file }));
    $("pair-gallery").append(node);
  }
  if (!D.near_duplicates.length) empty($("pair-gallery"), "No near duplicates.");

  // The fixes CSV: file (relative to the data folder), its current class, the new class
  // A cell that starts like a spreadsheet formula gets a leading quote (clf.files.csv_cell).
  function csvField(s) {
    if (/^[=+\-@\t\r]/.test(s)) s = "'" + s;
    return /[",\n\r]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }
  $("download").addEventListener("click", () => {
    const rows = fixes.filter((f) => f.tick.checked).map((f) => [f.file, f.label, f.target()]);
    const seen = new Set();
    const unique = rows.filter((r) => (seen.has(r[0]) ? false : seen.add(r[0])));
    if (!unique.length) { $("download-note").textContent = "Nothing ticked."; return; }
    const text = ["file,label,new_label", ...unique.map((r) => r.map(csvField).join(","))].join("\n") + "\n";
    const a = el("a", { href: URL.createObjectURL(new Blob([text], { type: "text/csv" })), download: "fixes.csv" });
    document.body.append(a);
    a.click();
    a.remove();
    $("download-note").textContent = unique.length + " fix(es) in fixes.csv.";
  });

  // Reliability diagram: one bar per confidence bin (its accuracy), the diagonal for reference
  const cal = D.calibration;
  $("ece").textContent = "Expected calibration error " + num(cal.ece) + " on " + cal.images + " validation images.";
  const W = 360, H = 260, L = 40, B = 30, NS = "http://www.w3.org/2000/svg";
  function svg(tag, attrs) { const n = document.createElementNS(NS, tag); for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v); return n; }
  const plot = svg("svg", { width: W + L + 10, height: H + B + 10, role: "img", "aria-label": "reliability diagram" });
  const x = (v) => L + v * W, y = (v) => 5 + (1 - v) * H;
  plot.append(svg("rect", { x: L, y: 5, width: W, height: H, fill: "none", stroke: "#d9dee5" }));
  for (const bin of cal.bins) {
    if (!bin.count) continue;
    plot.append(svg("rect", { x: x(bin.lower) + 1, y: y(bin.accuracy), width: W * (bin.upper - bin.lower) - 2, height: H * bin.accuracy, fill: "#2557d6", opacity: 0.75 }));
    const gap = svg("rect", { x: x(bin.lower) + 1, y: y(Math.max(bin.accuracy, bin.confidence)), width: W * (bin.upper - bin.lower) - 2,
      height: H * Math.abs(bin.accuracy - bin.confidence), fill: "#c62828", opacity: 0.25 });
    gap.append(svg("title", {}));
    gap.firstChild.textContent = bin.count + " images, confidence " + num(bin.confidence, 2) + ", accuracy " + num(bin.accuracy, 2);
    plot.append(gap);
  }
  plot.append(svg("line", { x1: x(0), y1: y(0), x2: x(1), y2: y(1), stroke: "#1d2430", "stroke-dasharray": "4 3" }));
  for (const t of [0, 0.5, 1]) {
    const tx = svg("text", { x: x(t), y: H + 22, "text-anchor": "middle" }); tx.textContent = String(t); plot.append(tx);
    const ty = svg("text", { x: L - 6, y: y(t) + 4, "text-anchor": "end" }); ty.textContent = String(t); plot.append(ty);
  }
  const lx = svg("text", { x: L + W / 2, y: H + 36, "text-anchor": "middle" }); lx.textContent = "confidence"; plot.append(lx);
  $("reliability").append(plot);
})();
