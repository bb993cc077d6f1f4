// Starts Swagger UI from a file, so the docs page needs no inline script (CSP).
(function () {
  var root = document.getElementById("swagger-ui");
  window.SwaggerUIBundle({ url: root.getAttribute("data-spec-url"), dom_id: "#swagger-ui" });
})();
