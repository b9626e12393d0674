// The console's only script: live refresh of [data-refresh] blocks and confirmation of
// [data-confirm] forms. Served from the binary; the pages work without it (reload by hand).
(function () {
  "use strict";
  function refresh(el) {
    var every = parseInt(el.getAttribute("data-every") || "3000", 10);
    var timer = null;
    function tick() {
      if (el.hasAttribute("data-until-terminal") && el.querySelector("[data-terminal]")) {
        return;
      }
      fetch(el.getAttribute("data-refresh"), { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) {
          if (r.redirected || r.status === 401) { window.location.assign("/login"); return null; }
          return r.ok ? r.text() : null;
        })
        .then(function (html) { if (html !== null) { el.innerHTML = html; } })
        .catch(function () { /* the next tick tries again */ })
        .finally(function () { timer = window.setTimeout(tick, every); });
    }
    timer = window.setTimeout(tick, every);
    return timer;
  }
  document.querySelectorAll("[data-refresh]").forEach(refresh);
  document.addEventListener("submit", function (e) {
    var msg = e.target.getAttribute("data-confirm");
    if (msg && !window.confirm(msg)) { e.preventDefault(); }
  });
})();
