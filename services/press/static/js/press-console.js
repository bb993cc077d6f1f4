/* The press office console's charts (ECharts, vendored under /press/static/vendor/echarts/).
 *
 * Each element with data-chart-source names a <script type="application/json"> block holding
 * {"labels": [...], "series": [{"name", "id", "data": [...]}, ...]}; it becomes a line chart.
 * Its data-axis-name, if any, names the y axis in the page's language.
 * No inline script: the page's CSP allows only scripts from this origin.
 */
(function () {
  "use strict";

  var PALETTE = ["#c0392b", "#2c6fbb", "#27ae60", "#d68910", "#8e44ad", "#16a085", "#7f8c8d"];

  function readData(id) {
    var block = document.getElementById(id);
    if (!block) { return null; }
    try { return JSON.parse(block.textContent || "null"); } catch (error) { return null; }
  }

  function draw(element) {
    var data = readData(element.getAttribute("data-chart-source"));
    if (!data || !window.echarts) { return null; }
    var chart = window.echarts.init(element, null, { renderer: "canvas" });
    var series = (data.series || []).map(function (item) {
      return {
        name: item.name,
        type: "line",
        smooth: false,
        showSymbol: data.labels.length <= 31,
        data: item.data,
        emphasis: { focus: "series" }
      };
    });
    chart.setOption({
      color: PALETTE,
      animation: false,
      tooltip: { trigger: "axis" },
      legend: { type: "scroll", top: 0 },
      grid: { left: 40, right: 20, top: 40, bottom: 30, containLabel: true },
      xAxis: { type: "category", boundaryGap: false, data: data.labels },
      yAxis: { type: "value", minInterval: 1, name: element.getAttribute("data-axis-name") || "留言数" },
      series: series
    });
    element.setAttribute("data-chart-ready", series.length ? "1" : "0");
    return chart;
  }

  function start() {
    var charts = [];
    var elements = document.querySelectorAll("[data-chart-source]");
    for (var i = 0; i < elements.length; i += 1) {
      var chart = draw(elements[i]);
      if (chart) { charts.push(chart); }
    }
    window.addEventListener("resize", function () {
      charts.forEach(function (chart) { chart.resize(); });
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
}());
