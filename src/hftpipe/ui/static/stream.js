// The stream page: one EventSource on /stream/events (SSE fed from NATS by the UI process).
(function () {
  "use strict";
  const root = document.getElementById("stream");
  if (!root) { return; }
  const CLASSES = ["DOWN", "STATIONARY", "UP"];
  const select = document.getElementById("stream-symbol");
  const pill = document.getElementById("bus-pill");
  const recent = document.querySelector("#stream-recent tbody");
  const known = new Set();
  let source = null;
  let count = 0;

  function text(id, value) { document.getElementById(id).textContent = value; }

  function addSymbol(symbol) {
    if (known.has(symbol)) { return; }
    known.add(symbol);
    const option = document.createElement("option");
    option.value = symbol;
    option.textContent = symbol;
    select.appendChild(option);
  }

  function setBus(up) {
    pill.textContent = up ? "bus up" : "bus down";
    pill.className = "pill " + (up ? "pill-up" : "pill-down");
  }

  function onSignal(s) {
    addSymbol(s.symbol);
    count += 1;
    text("stream-last-symbol", s.symbol + " (" + s.venue + ")");
    text("stream-signal", CLASSES[s.predicted] || String(s.predicted));
    text("stream-proba", s.probabilities.map(function (p) { return (100 * p).toFixed(1) + "%"; }).join(" / "));
    text("stream-seq", String(s.seq));
    text("stream-model", s.model_name + " v" + s.model_version + ", horizon " + (s.horizon_text || s.horizon + " events"));
    text("stream-latency", s.latency_ms.toFixed(2) + " ms");
    text("stream-count", String(count));
    const row = document.createElement("tr");
    [s.symbol, String(s.seq), CLASSES[s.predicted], (100 * s.probabilities[2]).toFixed(1) + "%",
     s.latency_ms.toFixed(2) + " ms"].forEach(function (v) {
      const cell = document.createElement("td");
      cell.textContent = v;
      row.appendChild(cell);
    });
    recent.insertBefore(row, recent.firstChild);
    while (recent.rows.length > 20) { recent.deleteRow(recent.rows.length - 1); }
  }

  function onBook(b) {
    addSymbol(b.symbol);
    const fmt = function (p) { return p === null || Number.isNaN(p) ? "—" : Number(p).toFixed(4); };
    text("stream-book", b.symbol + ": " + fmt(b.bid) + " × " + b.bid_size + " / " + fmt(b.ask) + " × " + b.ask_size);
  }

  function open(symbol) {
    if (source) { source.close(); }
    const url = root.dataset.eventsUrl + (symbol ? "?symbol=" + encodeURIComponent(symbol) : "");
    source = new EventSource(url);
    source.addEventListener("signal", function (e) { onSignal(JSON.parse(e.data)); });
    source.addEventListener("book", function (e) { onBook(JSON.parse(e.data)); });
    source.addEventListener("status", function (e) {
      const st = JSON.parse(e.data);
      setBus(st.bus_connected);
      st.symbols.forEach(addSymbol);
    });
    source.onerror = function () { setBus(false); };  // EventSource reconnects by itself
  }

  select.addEventListener("change", function () { count = 0; open(select.value); });
  if (root.dataset.symbol) { addSymbol(root.dataset.symbol); select.value = root.dataset.symbol; }
  open(root.dataset.symbol);
}());
