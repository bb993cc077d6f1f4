/* Suggestions as you type for every search box with data-suggest-url (the search page).
 *
 * Progressive enhancement: the form works without this file. With it, the input becomes an
 * ARIA combobox with a listbox of popular searches and titles from /api/search/suggest.
 * Keyboard: Down/Up move through the list, Enter takes the highlighted suggestion (a title
 * opens its document, a popular search is searched), Escape closes the list. Suggestions are
 * inserted as text, never as HTML.
 */
(function () {
  "use strict";

  var DELAY_MS = 200;

  function setup(input, number) {
    var form = input.form;
    var listId = "search-suggestions-" + number;
    var wrap = input.parentNode;
    var list = document.createElement("ul");
    var status = document.createElement("p");
    var timer = null;
    var sequence = 0;
    var items = [];
    var active = -1;
    // Labels come from the page, translated with the rest of it.
    var popularLabel = input.getAttribute("data-suggest-popular") || "热门搜索";
    var countText = input.getAttribute("data-suggest-count") || "{n} 条建议";

    list.id = listId;
    list.className = "suggestions";
    list.setAttribute("role", "listbox");
    list.setAttribute("aria-label", input.getAttribute("data-suggest-label") || "搜索建议");
    list.hidden = true;
    status.className = "visually-hidden";
    status.setAttribute("role", "status");
    status.setAttribute("aria-live", "polite");
    wrap.appendChild(list);
    wrap.appendChild(status);

    input.setAttribute("role", "combobox");
    input.setAttribute("aria-autocomplete", "list");
    input.setAttribute("aria-expanded", "false");
    input.setAttribute("aria-controls", listId);

    function close() {
      list.hidden = true;
      input.setAttribute("aria-expanded", "false");
      input.removeAttribute("aria-activedescendant");
      active = -1;
    }

    function highlight(index) {
      var options = list.children;
      for (var i = 0; i < options.length; i++) {
        options[i].setAttribute("aria-selected", i === index ? "true" : "false");
      }
      active = index;
      if (index >= 0) {
        input.setAttribute("aria-activedescendant", options[index].id);
      } else {
        input.removeAttribute("aria-activedescendant");
      }
    }

    function choose(index) {
      var item = items[index];
      if (!item) {
        return;
      }
      close();
      if (item.kind === "title" && item.url) {
        window.location.assign(item.url);
        return;
      }
      input.value = item.text;
      if (form) {
        form.submit();
      }
    }

    function show(suggestions) {
      items = suggestions;
      while (list.firstChild) {
        list.removeChild(list.firstChild);
      }
      if (!suggestions.length) {
        close();
        status.textContent = "";
        return;
      }
      suggestions.forEach(function (item, index) {
        var option = document.createElement("li");
        option.id = listId + "-" + index;
        option.className = "suggestion suggestion-" + item.kind;
        option.setAttribute("role", "option");
        option.setAttribute("aria-selected", "false");
        var label = item.kind === "query" ? popularLabel : item.type_label;
        if (label) {
          var tag = document.createElement("span");
          tag.className = "suggestion-kind";
          tag.textContent = label;
          option.appendChild(tag);
        }
        option.appendChild(document.createTextNode(item.text));
        option.addEventListener("mousedown", function (event) {
          event.preventDefault(); // keep the focus in the input
          choose(index);
        });
        list.appendChild(option);
      });
      list.hidden = false;
      input.setAttribute("aria-expanded", "true");
      highlight(-1);
      status.textContent = countText.replace("{n}", String(suggestions.length));
    }

    function fetchSuggestions() {
      var text = input.value.trim();
      var mine = ++sequence;
      if (!text) {
        show([]);
        return;
      }
      var url = input.getAttribute("data-suggest-url") + "?q=" + encodeURIComponent(text.slice(0, 200));
      fetch(url, { headers: { Accept: "application/json" }, credentials: "omit" })
        .then(function (response) {
          return response.ok ? response.json() : { suggestions: [] };
        })
        .then(function (body) {
          if (mine === sequence && document.activeElement === input) {
            show(body.suggestions || []);
          }
        })
        .catch(function () {
          if (mine === sequence) {
            show([]);
          }
        });
    }

    input.addEventListener("input", function () {
      window.clearTimeout(timer);
      timer = window.setTimeout(fetchSuggestions, DELAY_MS);
    });

    input.addEventListener("keydown", function (event) {
      if (list.hidden) {
        if (event.key === "ArrowDown" && input.value.trim()) {
          fetchSuggestions();
        }
        return;
      }
      if (event.key === "ArrowDown") {
        event.preventDefault();
        highlight(active + 1 >= items.length ? 0 : active + 1);
      } else if (event.key === "ArrowUp") {
        event.preventDefault();
        highlight(active <= 0 ? items.length - 1 : active - 1);
      } else if (event.key === "Enter" && active >= 0) {
        event.preventDefault();
        choose(active);
      } else if (event.key === "Escape") {
        event.preventDefault();
        close();
      }
    });

    input.addEventListener("blur", function () {
      window.setTimeout(close, 100);
    });
  }

  function start() {
    var inputs = document.querySelectorAll("input[data-suggest-url]");
    for (var i = 0; i < inputs.length; i++) {
      setup(inputs[i], i);
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
