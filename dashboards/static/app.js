// evalctl dashboard: draws the charts whose data the server embedded (already downsampled,
// at most 2,000 points per series) and wires the few toggles. No other client logic.
(function () {
  "use strict";
  var COLORS = ["#0b57d0", "#b3261e", "#146c2e", "#8a3ffc", "#8a5300", "#007d79", "#d12771", "#4d5358"];

  function drawChart(holder) {
    var source = document.getElementById(holder.dataset.chart);
    if (!source || typeof uPlot === "undefined") return;
    var spec = JSON.parse(source.textContent);
    if (!spec.series.length) { holder.textContent = "No points recorded."; return; }
    var tables = spec.series.map(function (s) { return [s.x, s.y]; });
    var data = tables.length === 1 ? tables[0] : uPlot.join(tables);
    var series = [{ label: spec.x_label || "step" }].concat(spec.series.map(function (s, i) {
      return { label: s.label, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: true,
               points: { show: s.x.length < 60 } };
    }));
    var width = Math.max(320, holder.clientWidth || 600);
    holder.textContent = "";
    var plot = new uPlot({ title: spec.title, width: width, height: 240, series: series,
                           scales: { x: { time: false } },
                           axes: [{ label: spec.x_label || "step" }, { label: spec.y_label || "" }] },
                         data, holder);
    holder.setAttribute("role", "img");
    holder.setAttribute("aria-label", spec.title + ": " + spec.series.map(function (s) {
      return s.label + " (" + s.x.length + " points)"; }).join(", "));
    holder._plot = plot;
  }

  function drawAll(root) {
    (root || document).querySelectorAll("[data-chart]").forEach(drawChart);
  }

  document.addEventListener("DOMContentLoaded", function () { drawAll(document); });
  document.addEventListener("htmx:afterSwap", function (e) { drawAll(e.target); });

  // "Differences only" on the compare page: rows that agree get class "same".
  document.addEventListener("change", function (e) {
    var t = e.target;
    if (t.matches && t.matches("[data-toggle-same]")) {
      var table = document.getElementById(t.dataset.toggleSame);
      if (table) table.classList.toggle("show-same", !t.checked);
    }
    if (t.matches && t.matches("[data-select-run]")) {
      var n = document.querySelectorAll("[data-select-run]:checked").length;
      var button = document.getElementById("compare-button");
      if (button) { button.disabled = n < 2; button.textContent = "Compare selected (" + n + ")"; }
    }
  });
})();
