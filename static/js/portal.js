// Portal helpers (no inline script: the CSP forbids it).
(function () {
  // Receipt: a real button for "print or save as PDF".
  document.querySelectorAll("[data-print]").forEach(function (button) {
    button.addEventListener("click", function () { window.print(); });
  });

  // Back from the hosting checkout, the webhook may not have arrived yet: reload the page every
  // few seconds until the "confirming" notice is gone, for at most about two minutes.
  if (document.querySelector("[data-refresh-while-confirming]")) {
    var key = "webmagic-confirm-reloads:" + location.pathname;
    var count = 0;
    try { count = parseInt(sessionStorage.getItem(key) || "0", 10); } catch (e) { count = 99; }
    if (count < 24) {
      setTimeout(function () {
        try { sessionStorage.setItem(key, String(count + 1)); } catch (e) { /* private mode: stop after this one */ }
        location.reload();
      }, 5000);
    }
  } else {
    try { sessionStorage.removeItem("webmagic-confirm-reloads:" + location.pathname); } catch (e) { /* ignore */ }
  }
})();
