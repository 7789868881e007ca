// driftgate console: draws each `.plot[data-series]` with uPlot and shows unix times as local times.
// The series come from the server as JSON in a data attribute ({"x": [...], "series": {"name": [...]}}).
(function () {
  "use strict";
  var COLOURS = ["#2d6cdf", "#d9822b", "#b3261e", "#1e8a4c", "#7b4bd1", "#5b6477"];

  function draw(el) {
    var data = JSON.parse(el.dataset.series || "{}");
    var names = Object.keys(data.series || {});
    if (!data.x || data.x.length < 2 || names.length === 0) {
      el.textContent = "Not enough points yet.";
      el.classList.add("note");
      return;
    }
    var width = Math.max(200, el.clientWidth);
    var series = [{}].concat(names.map(function (name, i) {
      var dashed = /threshold|clear/.test(name);
      return { label: name, stroke: COLOURS[i % COLOURS.length], width: 1.5, dash: dashed ? [6, 4] : undefined, spanGaps: true };
    }));
    var rows = [data.x].concat(names.map(function (name) { return data.series[name]; }));
    el.textContent = "";
    var plot = new uPlot({ width: width, height: 200, series: series, legend: { live: false } }, rows, el);
    el.dataset.drawn = "1";
    window.addEventListener("resize", function () { plot.setSize({ width: Math.max(200, el.clientWidth), height: 200 }); });
  }

  function times(root) {
    root.querySelectorAll("time[data-unix]").forEach(function (el) {
      var when = new Date(parseFloat(el.dataset.unix) * 1000);
      el.dateTime = when.toISOString();
      el.textContent = when.toLocaleString();
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll(".plot[data-series]").forEach(draw);
    times(document);
  });
})();
