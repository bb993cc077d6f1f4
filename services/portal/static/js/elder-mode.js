/* 长者模式 (large text, high contrast): the header switch turns it on and off in place and keeps the
 * choice in a cookie, so the server renders the next page in the same mode. Without this script the
 * switch's form asks /elder-mode to do the same and comes back. */
(function () {
  "use strict";

  var COOKIE = "elder_mode";
  var ONE_YEAR = 365 * 24 * 3600;

  function remember(on) {
    document.cookie = on
      ? COOKIE + "=1; path=/; max-age=" + ONE_YEAR + "; samesite=lax"
      : COOKIE + "=; path=/; max-age=0; samesite=lax";
  }

  function init() {
    var button = document.getElementById("elder-mode-switch");
    if (!button || !button.form) { return; }
    var form = button.form;
    var wanted = form.elements.namedItem("on");
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var on = button.getAttribute("aria-pressed") !== "true";
      document.documentElement.classList.toggle("elder", on);
      button.setAttribute("aria-pressed", on ? "true" : "false");
      if (wanted) { wanted.value = on ? "0" : "1"; }  /* the state the server would render */
      remember(on);
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
