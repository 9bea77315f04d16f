// Live replay: one EventSource per replay; ticks update the charts, tiles and outcome table in place.
(function () {
  "use strict";
  var root = document.getElementById("live");
  if (!root) { return; }
  var streamUrl = root.getAttribute("data-stream-url");
  var form = document.getElementById("replay-form");
  var startBtn = document.getElementById("replay-start");
  var stopBtn = document.getElementById("replay-stop");
  var statusEl = document.getElementById("replay-status");
  var noteEl = document.getElementById("replay-note");
  var MAX_POINTS = 3000;
  var NAMES = ["down", "stationary", "up"];
  var source = null;
  var date = "1970-01-01";
  var total = 0;
  var speed = 0;
  var horizon = null;
  var timeByIndex = {};
  var lastPnl = null;

  function $(id) { return document.getElementById(id); }

  function clock(seconds) {
    var ms = Math.round(seconds * 1000);
    var h = Math.floor(ms / 3600000), m = Math.floor(ms / 60000) % 60, s = Math.floor(ms / 1000) % 60;
    var pad = function (v, n) { return String(v).padStart(n || 2, "0"); };
    return pad(h) + ":" + pad(m) + ":" + pad(s) + "." + pad(ms % 1000, 3);
  }
  function stamp(seconds) { return date + " " + clock(seconds); }

  var layoutBase = {
    margin: { l: 60, r: 20, t: 10, b: 40 },
    paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
    font: { color: "#c9d1d9", size: 12 },
    xaxis: { type: "date", gridcolor: "#30363d", tickformat: "%H:%M:%S" },
    yaxis: { gridcolor: "#30363d", tickformat: ".2f" },
    showlegend: true, legend: { orientation: "h", y: 1.12 }
  };
  var config = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"] };

  var hasData = false;
  var EMPTY = { "xaxis.visible": false, "yaxis.visible": false, annotations: [{
    text: "No data yet: choose a trading day and press Start replay", showarrow: false,
    xref: "paper", yref: "paper", x: 0.5, y: 0.5, font: { color: "#8b949e", size: 14 } }] };

  function showAxes() {
    if (hasData) { return; }
    hasData = true;
    ["mid-chart", "pnl-chart"].forEach(function (id) {
      Plotly.relayout(id, { "xaxis.visible": true, "yaxis.visible": true, annotations: [] });
    });
  }

  function resetCharts() {
    hasData = false;
    Plotly.newPlot("mid-chart", [
      { x: [], y: [], name: "mid", mode: "lines", line: { color: "#58a6ff", width: 1.5 } },
      { x: [], y: [], name: "up signal", mode: "markers", marker: { symbol: "triangle-up", size: 7, color: "#3fb950" } },
      { x: [], y: [], name: "down signal", mode: "markers", marker: { symbol: "triangle-down", size: 7, color: "#f85149" } }
    ], layoutBase, config);
    Plotly.newPlot("pnl-chart", [
      { x: [], y: [], name: "net PnL", mode: "lines", line: { color: "#d29922", width: 1.5 } }
    ], Object.assign({}, layoutBase, { showlegend: false, yaxis: { gridcolor: "#30363d", tickformat: ".3f", zeroline: true, zerolinecolor: "#8b949e" } }), config);
    Plotly.relayout("mid-chart", EMPTY);
    Plotly.relayout("pnl-chart", EMPTY);
    document.querySelector("#outcomes tbody").innerHTML = "";
  }

  function setSignal(tick) {
    var el = $("signal");
    if (!tick.ready) {
      el.className = "signal signal-none";
      el.textContent = "warming up";
      return;
    }
    el.className = "signal signal-" + NAMES[tick.cls];
    el.textContent = (tick.label || NAMES[tick.cls]).toUpperCase();
    var ids = ["down", "stat", "up"];
    for (var i = 0; i < 3; i++) {
      var p = tick.p ? tick.p[i] : 0;
      $("p-" + ids[i]).style.width = (100 * p).toFixed(1) + "%";
      $("pv-" + ids[i]).textContent = (100 * p).toFixed(1) + "%";
    }
  }

  function addOutcomes(list) {
    var body = document.querySelector("#outcomes tbody");
    list.forEach(function (o) {
      var tr = document.createElement("tr");
      var cells = [
        timeByIndex[o.index] !== undefined ? clock(timeByIndex[o.index]) : "#" + o.index,
        NAMES[o.predicted], NAMES[o.realised], o.ret_bps.toFixed(2), o.hit ? "✔ hit" : "✘ miss"
      ];
      cells.forEach(function (c, i) {
        var td = document.createElement("td");
        td.textContent = c;
        if (i === 1 || i === 2) { td.className = "cls-" + (i === 1 ? o.predicted : o.realised); }
        if (i === 4) { td.className = o.hit ? "hit" : "miss"; }
        tr.appendChild(td);
      });
      body.insertBefore(tr, body.firstChild);
      delete timeByIndex[o.index];
    });
    while (body.children.length > 12) { body.removeChild(body.lastChild); }
  }

  function setStats(stats) {
    if (!stats) { return; }
    if (stats.hit_rate !== null) {
      $("hit-rate").textContent = (100 * stats.hit_rate).toFixed(1) + "%";
      $("hit-detail").textContent = stats.hits + " of " + stats.scored + " realised outcomes (horizon " + horizon + ")";
    }
    if (stats.baselines) {
      var parts = [];
      ["persistence", "momentum"].forEach(function (name) {
        var b = stats.baselines[name];
        if (b && b.hit_rate !== null) { parts.push(name + " " + (100 * b.hit_rate).toFixed(1) + "%"); }
      });
      if (parts.length) { $("hit-baselines").textContent = "baselines: " + parts.join(" · "); }
    }
    var pnl = $("pnl");
    pnl.textContent = (stats.net_pnl >= 0 ? "+" : "\u2212") + "$" + Math.abs(stats.net_pnl).toFixed(3);
    pnl.className = "big " + (stats.net_pnl > 0 ? "pos" : stats.net_pnl < 0 ? "neg" : "");
    $("pnl-detail").textContent = stats.trades + " round trips · " + stats.net_pnl_bps.toFixed(1) +
      " bps summed · position " + (stats.position > 0 ? "long" : stats.position < 0 ? "short" : "flat");
  }

  function onTicks(msg) {
    var ticks = msg.ticks;
    if (!ticks.length) { return; }
    var xs = [], mids = [], upX = [], upY = [], dnX = [], dnY = [], outcomes = [];
    ticks.forEach(function (t) {
      var x = stamp(t.t);
      xs.push(x); mids.push(t.mid);
      if (t.ready && t.cls === 2) { upX.push(x); upY.push(t.mid); }
      if (t.ready && t.cls === 0) { dnX.push(x); dnY.push(t.mid); }
      if (t.ready) { timeByIndex[t.i] = t.t; }
      outcomes = outcomes.concat(t.outcomes);
    });
    showAxes();
    Plotly.extendTraces("mid-chart", { x: [xs, upX, dnX], y: [mids, upY, dnY] }, [0, 1, 2], MAX_POINTS);
    var last = ticks[ticks.length - 1];
    if (msg.stats && msg.stats.net_pnl !== lastPnl) {
      lastPnl = msg.stats.net_pnl;
      Plotly.extendTraces("pnl-chart", { x: [[stamp(last.t)]], y: [[msg.stats.net_pnl]] }, [0], MAX_POINTS);
    }
    setSignal(last);
    $("signal-time").textContent = clock(last.t);
    $("mid-now").textContent = "bid " + last.bid.toFixed(2) + " · ask " + last.ask.toFixed(2);
    $("window-fill").textContent = last.ready ? "" : "the model server is filling its window of book states";
    addOutcomes(outcomes);
    setStats(msg.stats);
    statusEl.textContent = "Replaying event " + (last.i + 1).toLocaleString() + " of " + total.toLocaleString() +
      " at " + (speed > 0 ? speed + " events/s" : "full speed") + " · " + clock(last.t);
  }

  function onStart(msg) {
    date = msg.date; total = msg.events; speed = msg.speed;
    var m = msg.model;
    horizon = m.horizon_text || (m.horizon + " events");  // "10 events" or "1 s"
    var version = m.version ? (/^[0-9]+$/.test(m.version) ? "v" + m.version : m.version) : "";
    $("model-name").textContent = (m.name || "model") + (version ? " · " + version : "");
    $("model-detail").textContent = m.horizon !== null
      ? "horizon " + horizon + " · alpha " + (m.alpha * 1e4).toFixed(3) + " bps · " + m.label + " label · " + m.sampling + " events (from " + m.source + ")"
      : "";
    noteEl.hidden = !msg.note;
    noteEl.textContent = msg.note || "";
    if (msg.start === 0) { resetCharts(); }
    statusEl.textContent = "Replaying " + msg.symbol + " " + msg.date + " (" + msg.events.toLocaleString() + " events)…";
  }

  function stop(text) {
    if (source) { source.close(); source = null; }
    startBtn.hidden = false; stopBtn.hidden = true;
    if (text) { statusEl.textContent = text; }
  }

  function start() {
    stop();
    var params = new URLSearchParams({ file: $("replay-file").value, speed: $("replay-speed").value });
    source = new EventSource(streamUrl + "?" + params.toString());
    startBtn.hidden = true; stopBtn.hidden = false;
    statusEl.textContent = "Connecting to the model server…";
    source.onmessage = function (e) {
      var msg = JSON.parse(e.data);
      if (msg.type === "start") { onStart(msg); }
      else if (msg.type === "ticks") { onTicks(msg); }
      else if (msg.type === "serving_down") {
        statusEl.textContent = "Model server unavailable: retrying in " + msg.retry_in + " s (replay paused).";
        if (window.hftpipeServing) { window.hftpipeServing.down(msg.detail, msg.retry_in); }
      } else if (msg.type === "serving_up") {
        if (window.hftpipeServing) { window.hftpipeServing.up(); }
      } else if (msg.type === "fatal") {
        stop("Replay stopped: " + msg.detail);
      } else if (msg.type === "done") {
        setStats(msg.stats);
        stop("End of the trading day: " + total.toLocaleString() + " events replayed.");
      }
    };
    source.onerror = function () {
      // EventSource reconnects by itself and resumes at the last event id; say so meanwhile.
      if (source && source.readyState === EventSource.CONNECTING) {
        statusEl.textContent = "Connection to the UI server lost: reconnecting…";
      }
    };
  }

  form.addEventListener("submit", function (e) { e.preventDefault(); start(); });
  stopBtn.addEventListener("click", function () { stop("Stopped."); });
  resetCharts();
}());
