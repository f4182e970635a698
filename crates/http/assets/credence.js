// Credence's one script: progressive enhancement only. Every page works
// without it (the forms re-render on the server); with it, a text's counter
// follows the typing, "Select all" ticks without a round trip, choosing an
// app shows its modules at once, and "Copy link" copies.
// Served from /assets/credence.js (the Content-Security-Policy allows 'self').
(function () {
  "use strict";

  // `<textarea data-limit="256" id="x">` updates `#x-count` ("N/256").
  function counters() {
    document.querySelectorAll("[data-limit]").forEach(function (field) {
      var counter = document.getElementById(field.id + "-count");
      if (!counter) return;
      var limit = field.getAttribute("data-limit");
      var update = function () {
        counter.textContent = Array.from(field.value).length + "/" + limit;
      };
      field.addEventListener("input", update);
      update();
    });
  }

  // `<button data-select-all="modules-0">` ticks every checkbox in the
  // fieldset `#modules-0` instead of posting the form.
  function selectAll() {
    document.querySelectorAll("[data-select-all]").forEach(function (button) {
      button.addEventListener("click", function (event) {
        var group = document.getElementById(button.getAttribute("data-select-all"));
        if (!group) return;
        event.preventDefault();
        group.querySelectorAll("input[type=checkbox]").forEach(function (box) {
          box.checked = true;
        });
      });
    });
  }

  // `<select data-refresh="button-id">`: a change presses that button (the
  // form comes back with the chosen app's versions and modules).
  function refreshOnChange() {
    document.querySelectorAll("[data-refresh]").forEach(function (select) {
      select.addEventListener("change", function () {
        var button = document.getElementById(select.getAttribute("data-refresh"));
        if (button) button.click();
      });
    });
  }

  // `<button data-copy="input-id" hidden>`: shown, and copies the input's value.
  function copyButtons() {
    document.querySelectorAll("[data-copy]").forEach(function (button) {
      var input = document.getElementById(button.getAttribute("data-copy"));
      if (!input) return;
      button.hidden = false;
      var status = document.getElementById(button.getAttribute("data-copy") + "-status");
      button.addEventListener("click", function () {
        input.select();
        var done = function () { if (status) status.textContent = "Link copied."; };
        var failed = function () { if (status) status.textContent = "Select the link and copy it."; };
        if (navigator.clipboard && navigator.clipboard.writeText) {
          navigator.clipboard.writeText(input.value).then(done, function () {
            try { if (document.execCommand("copy")) { done(); return; } } catch (e) { /* fall through */ }
            failed();
          });
        } else {
          try { if (document.execCommand("copy")) { done(); return; } } catch (e) { /* fall through */ }
          failed();
        }
      });
    });
  }

  function start() {
    counters();
    selectAll();
    refreshOnChange();
    copyButtons();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
