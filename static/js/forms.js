// Form helpers (no inline script: the CSP forbids it).
(function () {
  // Disable a submit button after the first click so a double tap sends one request.
  document.querySelectorAll("form[data-once]").forEach(function (form) {
    form.addEventListener("submit", function () {
      var button = form.querySelector("button[type=submit]");
      if (button) { button.disabled = true; button.textContent = "One moment…"; }
    });
  });

  // After a failed submit, put the cursor in the first field that needs fixing (the server marks
  // it aria-invalid), not in the field that merely has autofocus; a form-wide error with no
  // invalid field leaves focus where autofocus put it.
  var firstInvalid = document.querySelector("form [aria-invalid=true]");
  if (firstInvalid) { firstInvalid.focus(); }
})();
