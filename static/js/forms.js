// Disable a submit button after the first click so a double tap sends one request.
(function () {
  document.querySelectorAll("form[data-once]").forEach(function (form) {
    form.addEventListener("submit", function () {
      var button = form.querySelector("button[type=submit]");
      if (button) { button.disabled = true; button.textContent = "One moment…"; }
    });
  });
})();
