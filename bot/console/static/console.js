// Small enhancements only: every page works without JavaScript.
document.addEventListener("DOMContentLoaded", function () {
  // Ask before irreversible actions.
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (ev) {
      if (!window.confirm(form.getAttribute("data-confirm"))) { ev.preventDefault(); }
    });
  });
  // Prevent a double click from posting the same form twice.
  document.querySelectorAll("form[method=post]").forEach(function (form) {
    form.addEventListener("submit", function (ev) {
      if (ev.defaultPrevented) { return; }
      form.querySelectorAll("button[type=submit]").forEach(function (b) {
        window.setTimeout(function () { b.disabled = true; }, 0);
      });
    });
  });
  // County decision: show only the fields of the chosen outcome.
  var decide = document.getElementById("form-decide");
  if (decide) {
    var update = function () {
      var chosen = decide.querySelector("input[name=outcome]:checked");
      decide.querySelectorAll("[data-for-outcome]").forEach(function (el) {
        el.hidden = !chosen || el.getAttribute("data-for-outcome") !== chosen.value;
      });
    };
    decide.querySelectorAll("input[name=outcome]").forEach(function (r) { r.addEventListener("change", update); });
    update();
  }
  document.querySelectorAll("[data-print]").forEach(function (b) {
    b.addEventListener("click", function () { window.print(); });
  });
});
