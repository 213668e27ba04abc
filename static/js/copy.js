// Copy buttons for values the owner pastes elsewhere (DNS records). No inline script: the CSP
// forbids it. The button stays hidden where the Clipboard API is missing (plain http), so
// nobody meets a button that does nothing; the value can still be selected by hand.
(function () {
  if (!navigator.clipboard || !window.isSecureContext) { return; }
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    var id = button.getAttribute("data-copy");
    var source = document.getElementById(id);
    var status = document.querySelector('[data-copy-status="' + id + '"]');
    if (!source) { return; }
    var label = button.firstChild.textContent;
    button.hidden = false;
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(source.textContent.trim()).then(function () {
        button.firstChild.textContent = "Copied";
        if (status) { status.textContent = "Copied to the clipboard."; }
        setTimeout(function () { button.firstChild.textContent = label; }, 2500);
      }, function () {
        if (status) { status.textContent = "Couldn't copy: select the text and copy it by hand."; }
      });
    });
  });
})();
