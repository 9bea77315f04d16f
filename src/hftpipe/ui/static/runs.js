// Runs chart: one line per key metric across runs (oldest to newest); data comes from an inert JSON block.
(function () {
  "use strict";
  var el = document.getElementById("runs-data");
  if (!el) { return; }
  var data = JSON.parse(el.textContent);
  var labels = data.runs.map(function (r) { return r.started + " · " + r.name + " (" + r.id + ")"; });
  var traces = data.metrics.map(function (m) {
    return { x: labels, y: data.runs.map(function (r) { return r.values[m]; }), name: m,
             mode: "lines+markers", connectgaps: false };
  });
  Plotly.newPlot("runs-chart", traces, {
    margin: { l: 60, r: 20, t: 10, b: 40 }, paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
    font: { color: "#c9d1d9", size: 12 }, legend: { orientation: "h", y: 1.15 },
    xaxis: { type: "category", showticklabels: false, gridcolor: "#30363d", title: { text: "runs, oldest → newest" } },
    yaxis: { gridcolor: "#30363d" }
  }, { displaylogo: false, responsive: true });
}());
