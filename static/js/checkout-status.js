// Success page: ask the server every few seconds whether the payment is confirmed, then reload
// the same page to show it (the paying browser then finds its "choose your password" form there).
// Never navigates anywhere else.
(function () {
  var box = document.getElementById("payment-status");
  // Final states: nothing more will change on this page.
  if (!box || ["confirmed", "refund"].indexOf(box.dataset.state) !== -1) return;
  var url = box.dataset.statusUrl, delay = 2000, tries = 0;
  showSlowNoticeAfter(15000);

  // "Taking longer than usual" after 15 s of confirming, counted from the first time this tab saw
  // this checkout, so a reload does not start the wait again.
  function showSlowNoticeAfter(ms) {
    var slow = document.getElementById("payment-slow");
    if (!slow) return;
    var key = "payment-first-seen:" + url, firstSeen = Date.now();
    try {
      firstSeen = Number(window.sessionStorage.getItem(key)) || firstSeen;
      window.sessionStorage.setItem(key, String(firstSeen));
    } catch (e) { /* storage blocked: count from this page load */ }
    window.setTimeout(function () { slow.hidden = false; }, Math.max(0, firstSeen + ms - Date.now()));
  }
  function poll() {
    tries += 1;
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (data && data.state !== box.dataset.state) { window.location.reload(); return; }
        schedule();
      })
      .catch(schedule);
  }
  function schedule() {
    if (tries > 200) return;            // about half an hour; the email will arrive anyway
    delay = Math.min(delay * 1.3, 15000);
    window.setTimeout(poll, delay);
  }
  schedule();
})();
