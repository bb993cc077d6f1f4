/* The consult staff console: insert a canned reply into the draft, select every case of the page.
 * Without this script the canned replies stay readable, copyable text and each case is ticked by hand. */
(function () {
  "use strict";

  function insertAtCursor(textarea, text) {
    var start = textarea.selectionStart, end = textarea.selectionEnd;
    if (typeof start !== "number" || typeof end !== "number") {
      start = end = textarea.value.length;
    }
    var before = textarea.value.slice(0, start), after = textarea.value.slice(end);
    var glue = before && !/\n$/.test(before) ? "\n" : "";
    textarea.value = before + glue + text + after;
    var caret = (before + glue + text).length;
    textarea.focus();
    textarea.setSelectionRange(caret, caret);
  }

  function setUpCanned() {
    var buttons = document.querySelectorAll("button.canned-insert");
    Array.prototype.forEach.call(buttons, function (button) {
      var source = document.getElementById(button.getAttribute("data-source"));
      var target = document.getElementById(button.getAttribute("data-target"));
      if (!source || !target) {
        return;
      }
      button.hidden = false;
      button.addEventListener("click", function () {
        insertAtCursor(target, source.textContent);
      });
    });
  }

  function setUpSelectAll() {
    var toggles = document.querySelectorAll("input.select-all");
    Array.prototype.forEach.call(toggles, function (toggle) {
      var form = toggle.form;
      if (!form) {
        return;
      }
      var name = toggle.getAttribute("data-target");
      toggle.hidden = false;
      toggle.addEventListener("change", function () {
        var boxes = form.querySelectorAll('input[type="checkbox"][name="' + name + '"]');
        Array.prototype.forEach.call(boxes, function (box) {
          box.checked = toggle.checked;
        });
      });
    });
  }

  function start() {
    setUpCanned();
    setUpSelectAll();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
}());
