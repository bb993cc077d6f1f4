/* 我要咨询 (/consult/ask): while the asker types, show published answers to similar questions and
 * suggest a category. The form works the same without this script; every failure here is silent. */
(function () {
  "use strict";

  var SEARCH_DELAY = 400;
  var CLASSIFY_DELAY = 900;
  var MAX_QUERY = 100; /* the search API's longest q */
  var MIN_CLASSIFY = 10;

  function debounce(fn, wait) {
    var timer = null;
    return function () {
      if (timer) { window.clearTimeout(timer); }
      timer = window.setTimeout(fn, wait);
    };
  }

  function searchText(title, question) {
    var text = title.trim();
    if (text.length < 2) {
      /* no title yet: the first sentence of the question */
      text = question.trim().split(/[。！？!?\n]/)[0] || "";
    }
    return text.replace(/\s+/g, " ").slice(0, MAX_QUERY).trim();
  }

  function safeAnswerUrl(url) {
    return typeof url === "string" && /^\/consult\/answers\/\d+$/.test(url) ? url : null;
  }

  function init() {
    var form = document.getElementById("ask-form");
    if (!form || !window.fetch) { return; }
    var title = document.getElementById("title");
    var question = document.getElementById("question");
    var category = document.getElementById("category");
    var suggestion = document.getElementById("category-suggestion");
    var box = document.getElementById("public-answers");
    var list = document.getElementById("public-answers-list");
    var lastQuery = null;
    var searchSeq = 0;
    var classifySeq = 0;
    var lastClassified = null;
    var chosenByAsker = category && category.value !== "";
    var suggested = null;

    if (category) {
      category.addEventListener("change", function () {
        chosenByAsker = category.value !== "" && category.value !== suggested;
        if (category.value !== suggested && suggestion) { suggestion.textContent = ""; }
      });
    }

    function showHits(hits) {
      while (list.firstChild) { list.removeChild(list.firstChild); }
      var shown = 0;
      hits.forEach(function (hit) {
        var url = safeAnswerUrl(hit.url);
        if (!url || !hit.title) { return; }
        var item = document.createElement("li");
        var link = document.createElement("a");
        link.href = url;
        link.target = "_blank";
        link.rel = "noopener";
        link.textContent = hit.title;
        item.appendChild(link);
        list.appendChild(item);
        shown += 1;
      });
      box.hidden = shown === 0;
    }

    var search = debounce(function () {
      var q = searchText(title.value, question.value);
      if (q === lastQuery) { return; }
      lastQuery = q;
      if (q.length < 2) { showHits([]); return; }
      var seq = ++searchSeq;
      var url = "/api/search?type=answer&per_page=5&q=" + encodeURIComponent(q);
      window.fetch(url, { headers: { "Accept": "application/json" }, credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (data) {
          if (seq !== searchSeq || !data || !Array.isArray(data.hits)) { return; }
          showHits(data.hits);
        })
        .catch(function () { /* search is optional */ });
    }, SEARCH_DELAY);

    function hasOption(value) {
      for (var i = 0; i < category.options.length; i += 1) {
        if (category.options[i].value === value) { return true; }
      }
      return false;
    }

    var classify = debounce(function () {
      if (!category || !suggestion) { return; }
      var text = (title.value.trim() + "\n" + question.value.trim()).trim();
      if (text.length < MIN_CLASSIFY || text === lastClassified) { return; }
      lastClassified = text;
      var seq = ++classifySeq;
      window.fetch("/api/consult/classify", {
        method: "POST",
        headers: { "Content-Type": "application/json", "Accept": "application/json" },
        credentials: "same-origin",
        body: JSON.stringify({ text: text.slice(0, 5000) })
      })
        .then(function (response) { return response.status === 200 ? response.json() : null; })
        .then(function (data) {
          if (seq !== classifySeq || !data || typeof data.category !== "string") { return; }
          if (!hasOption(data.category)) { return; }
          suggestion.textContent = (suggestion.getAttribute("data-label") || "") + data.category;
          if (!chosenByAsker) {
            category.value = data.category;
            suggested = data.category;
          }
        })
        .catch(function () { /* the asker chooses, or staff do */ });
    }, CLASSIFY_DELAY);

    function typed() {
      search();
      classify();
    }
    title.addEventListener("input", typed);
    question.addEventListener("input", typed);
    if (title.value || question.value) { typed(); }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
}());
