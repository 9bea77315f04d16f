// Monitoring page: each key panel's series come from /api/monitoring/panel/<id> (the server runs the
// panel's PromQL against Prometheus's query_range); redrawn every 15 s.
(function () {
  "use strict";
  var el = document.getElementById("monitoring-panels");
  if (!el) { return; }
  var panels = JSON.parse(el.textContent);
  var status = document.getElementById("monitoring-status");
  var layout = {
    margin: { l: 60, r: 20, t: 10, b: 40 }, paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
    font: { color: "#c9d1d9", size: 12 }, legend: { orientation: "h", y: 1.15 },
    xaxis: { type: "date", gridcolor: "#30363d" }, yaxis: { gridcolor: "#30363d" }
  };
  function draw(panel) {
    fetch("/api/monitoring/panel/" + encodeURIComponent(panel.id) + "?minutes=60", { credentials: "same-origin" })
      .then(function (r) { return r.json().then(function (body) { return { ok: r.ok, body: body }; }); })
      .then(function (res) {
        if (!res.ok) { status.textContent = res.body.error || "Prometheus is not answering"; status.hidden = false; return; }
        status.hidden = true;
        var traces = res.body.series.map(function (s) {
          return { x: s.t.map(function (t) { return new Date(t * 1000); }), y: s.v, name: s.name, mode: "lines" };
        });
        document.getElementById("empty-" + panel.id).hidden = traces.length > 0;
        Plotly.react("panel-" + panel.id, traces, layout, { displaylogo: false, responsive: true });
        document.getElementById("panel-" + panel.id).setAttribute("data-series", String(traces.length));
      })
      .catch(function () { status.textContent = "The UI server is not answering"; status.hidden = false; });
  }
  function all() { panels.forEach(draw); }
  all();
  setInterval(all, 15000);
}());
