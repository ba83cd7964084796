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
                           axes: [{ label: spec.x_label || "step" },
                                  { label: spec.y_label || "", size: 64, values: tickLabels }] },
                         data, holder);
    holder.setAttribute("role", "img");
    holder.setAttribute("aria-label", spec.title + ": " + spec.series.map(function (s) {
      return s.label + " (" + s.x.length + " points)"; }).join(", "));
    holder._plot = plot;
  }

  // uPlot rounds ticks to 3 decimals (a learning rate of 2e-4 reads "0"); keep 3 digits.
  function tickLabels(u, ticks) {
    return ticks.map(function (v) {
      if (v === 0) return "0";
      var a = Math.abs(v);
      return a >= 1e4 || a < 1e-2 ? v.toExponential(1) : String(+v.toPrecision(3));
    });
  }

  // A wide table that scrolls sideways must be reachable by keyboard to be scrolled.
  function scrollableRegions(root) {
    (root || document).querySelectorAll(".table-wrap").forEach(function (wrap) {
      if (wrap.scrollWidth <= wrap.clientWidth) return;
      var table = wrap.querySelector("table");
      var caption = table && table.querySelector("caption");
      var label = (table && table.getAttribute("aria-label")) || (caption && caption.textContent);
      wrap.setAttribute("tabindex", "0");
      wrap.setAttribute("role", "region");
      wrap.setAttribute("aria-label", (label || "Table") + " (scrolls sideways)");
    });
  }

  function drawAll(root) {
    (root || document).querySelectorAll("[data-chart]").forEach(drawChart);
    scrollableRegions(root);
  }

  document.addEventListener("DOMContentLoaded", function () { drawAll(document); });
  document.addEventListener("htmx:afterSwap", function (e) { drawAll(e.target); });
  window.addEventListener("resize", function () { scrollableRegions(document); });

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
