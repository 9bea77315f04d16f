// The trading page: one EventSource on /trading/events (SSE fed from NATS by the UI process).
(function () {
  "use strict";
  const root = document.getElementById("trading");
  if (!root) { return; }
  const MAX_ROWS = 30;
  const positions = {};
  let denials = {};

  function cell(row, value) {
    const td = document.createElement("td");
    td.textContent = value;
    row.appendChild(td);
  }
  function money(x) { return (x === null || x === undefined) ? "—" : x.toFixed(2); }
  function side(s) { return s > 0 ? "buy" : "sell"; }
  function price(p) { return (p === null || p === undefined) ? "market" : p.toFixed(2); }

  function setBus(up) {
    const pill = document.getElementById("bus-pill");
    pill.textContent = up ? "bus up" : "bus down";
    pill.className = "pill " + (up ? "pill-up" : "pill-down");
  }

  function setRisk(r) {
    const pill = document.getElementById("risk-state");
    pill.textContent = r.state;
    pill.className = "pill " + (r.state === "ACTIVE" ? "pill-up" : "pill-down");
    document.getElementById("risk-actor").textContent = r.actor || "—";
    document.getElementById("risk-reason").textContent = r.reason || "—";
    document.getElementById("risk-time").textContent = r.time || "—";
  }

  function drawPositions() {
    const body = document.querySelector("#trading-positions tbody");
    body.textContent = "";
    Object.keys(positions).sort().forEach(function (symbol) {
      const p = positions[symbol];
      const row = document.createElement("tr");
      [symbol, String(p.position), money(p.mid), money(p.pnl), money(p.day_pnl), money(p.fees),
       String(p.open_orders), String(p.fills), String(p.seq)].forEach(function (v) { cell(row, v); });
      body.appendChild(row);
    });
  }

  function drawDenials() {
    const body = document.querySelector("#trading-denials tbody");
    body.textContent = "";
    Object.keys(denials).sort().forEach(function (reason) {
      const row = document.createElement("tr");
      cell(row, reason);
      cell(row, String(denials[reason]));
      body.appendChild(row);
    });
  }

  function prepend(id, values) {
    const body = document.querySelector("#" + id + " tbody");
    const row = document.createElement("tr");
    values.forEach(function (v) { cell(row, v); });
    body.insertBefore(row, body.firstChild);
    while (body.rows.length > MAX_ROWS) { body.deleteRow(body.rows.length - 1); }
  }

  function onOrder(o) {
    prepend("trading-orders", [o.symbol, String(o.seq), o.status, side(o.side), String(o.qty), price(o.price),
                               o.reason || ""]);
  }
  function onFill(f) {
    prepend("trading-fills", [f.symbol, String(f.fill_id), String(f.order_id), side(f.side), String(f.qty),
                              f.price.toFixed(2), f.fee.toFixed(4), f.maker ? "maker" : "taker"]);
  }

  const source = new EventSource(root.dataset.eventsUrl);
  source.addEventListener("snapshot", function (e) {
    const s = JSON.parse(e.data);
    setBus(s.bus_connected);
    setRisk(s.risk);
    s.positions.forEach(function (p) { positions[p.symbol] = p; });
    denials = s.denials;
    s.orders.forEach(onOrder);
    s.fills.forEach(onFill);
    drawPositions();
    drawDenials();
  });
  source.addEventListener("position", function (e) {
    const p = JSON.parse(e.data);
    positions[p.symbol] = p;
    drawPositions();
  });
  source.addEventListener("order", function (e) {
    const o = JSON.parse(e.data);
    onOrder(o);
    if (o.status === "denied") {
      denials[o.reason] = (denials[o.reason] || 0) + 1;
      drawDenials();
    }
  });
  source.addEventListener("fill", function (e) { onFill(JSON.parse(e.data)); });
  source.addEventListener("risk", function (e) { setRisk(JSON.parse(e.data)); });
  source.addEventListener("status", function (e) { setBus(JSON.parse(e.data).bus_connected); });
  source.onerror = function () { setBus(false); };
})();
