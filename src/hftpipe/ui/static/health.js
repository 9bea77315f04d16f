// Model-server banner: polls /health/status, shows a banner while the server is down and retries itself.
(function () {
  "use strict";
  var banner = document.getElementById("serving-banner");
  var pill = document.getElementById("serving-pill");
  if (!banner) { return; }
  var url = banner.getAttribute("data-status-url");
  var retryTimer = null;
  var countdown = null;

  function setPill(up, text) {
    if (!pill) { return; }
    pill.className = "pill " + (up ? "pill-up" : "pill-down");
    pill.textContent = text;
  }

  function showDown(detail, retryS) {
    banner.hidden = false;
    detail = detail || "";
    document.getElementById("serving-detail").textContent = /[.!?]$/.test(detail) ? detail + " " : detail + ". ";
    var left = retryS;
    var span = document.getElementById("serving-retry");
    clearInterval(countdown);
    span.textContent = "Retrying in " + left + " s.";
    countdown = setInterval(function () {
      left -= 1;
      span.textContent = left > 0 ? "Retrying in " + left + " s." : "Retrying…";
      if (left <= 0) { clearInterval(countdown); }
    }, 1000);
    setPill(false, "model server down");
  }

  function check() {
    clearTimeout(retryTimer);
    fetch(url, { headers: { "Accept": "application/json" }, credentials: "same-origin" })
      .then(function (r) {
        if (r.status === 401) { window.location.reload(); return null; }
        return r.json();
      })
      .then(function (s) {
        if (!s) { return; }
        var retry = s.retry_s || 5;
        if (s.up) {
          banner.hidden = true;
          clearInterval(countdown);
          setPill(true, "model server up · " + (s.latency_ms !== null ? s.latency_ms.toFixed(0) + " ms" : ""));
          retryTimer = setTimeout(check, retry * 3000);
        } else {
          showDown(s.detail, retry);
          retryTimer = setTimeout(check, retry * 1000);
        }
      })
      .catch(function () {
        showDown("The UI server itself does not answer.", 5);
        retryTimer = setTimeout(check, 5000);
      });
  }

  // The live page reports outages it sees mid-stream through this hook, without waiting for the next poll.
  window.hftpipeServing = {
    down: function (detail, retryS) { showDown(detail, Math.max(1, Math.round(retryS || 5))); },
    up: function () { check(); }
  };
  check();
}());
