/* The sales pages' behaviour: the header's search combobox and focus after htmx updates.
   Everything works without this file (the search box submits to /crm/search, "Load more" links
   and task buttons are plain links and forms); it adds the keyboard-driven listbox. */
(function () {
  "use strict";

  // --- Search combobox (WAI-ARIA 1.2 combobox with a listbox popup) ---------------------------
  const MIN_LENGTH = 2;

  function setup(form) {
    const input = form.querySelector('[role="combobox"]');
    const listbox = document.getElementById(input.getAttribute("aria-controls"));
    const status = form.querySelector('[role="status"]');
    let active = -1;

    function options() {
      return Array.prototype.slice.call(listbox.querySelectorAll('[role="option"]'));
    }

    function setActive(index) {
      const all = options();
      all.forEach(function (option) { option.setAttribute("aria-selected", "false"); });
      active = index;
      if (index < 0 || index >= all.length) {
        active = -1;
        input.removeAttribute("aria-activedescendant");
        return;
      }
      const option = all[index];
      option.setAttribute("aria-selected", "true");
      input.setAttribute("aria-activedescendant", option.id);
      option.scrollIntoView({ block: "nearest" });
    }

    function open() {
      if (!options().length) return;
      listbox.hidden = false;
      input.setAttribute("aria-expanded", "true");
    }

    function close() {
      listbox.hidden = true;
      input.setAttribute("aria-expanded", "false");
      setActive(-1);
    }

    function announce(message) {
      status.textContent = "";
      window.setTimeout(function () { status.textContent = message; }, 30);
    }

    input.addEventListener("htmx:beforeRequest", function (event) {
      if (input.value.trim().length < MIN_LENGTH) {
        event.preventDefault();
        listbox.innerHTML = "";
        close();
      }
    });

    listbox.addEventListener("htmx:afterSwap", function () {
      setActive(-1);
      const count = options().filter(function (option) { return !option.classList.contains("more"); }).length;
      if (count || options().length) {
        open();
        announce(count + " result" + (count === 1 ? "" : "s") + ". Use the arrow keys to choose one.");
      } else {
        close();
        announce(input.value.trim().length >= MIN_LENGTH ? "No matches." : "");
      }
    });

    input.addEventListener("input", function () {
      if (input.value.trim().length < MIN_LENGTH) {
        listbox.innerHTML = "";
        close();
      }
    });

    input.addEventListener("keydown", function (event) {
      const all = options();
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        if (!all.length) return;
        event.preventDefault();
        if (listbox.hidden) open();
        const step = event.key === "ArrowDown" ? 1 : -1;
        const next = active < 0 ? (step > 0 ? 0 : all.length - 1) : (active + step + all.length) % all.length;
        setActive(next);
      } else if (event.key === "Enter") {
        if (!listbox.hidden && active >= 0 && all[active]) {
          event.preventDefault();
          window.location.assign(all[active].href);
        }
      } else if (event.key === "Escape") {
        if (!listbox.hidden) {
          event.preventDefault();
          close();
        } else if (input.value) {
          event.preventDefault();
          input.value = "";
          listbox.innerHTML = "";
        }
      } else if (event.key === "Home" || event.key === "End") {
        if (!listbox.hidden && all.length && active >= 0) {
          event.preventDefault();
          setActive(event.key === "Home" ? 0 : all.length - 1);
        }
      }
    });

    input.addEventListener("focus", function () {
      if (options().length && input.value.trim().length >= MIN_LENGTH) open();
    });

    // Pointer: hovering highlights; clicking an option follows its link (focus stays in the form).
    listbox.addEventListener("mousemove", function (event) {
      const option = event.target.closest('[role="option"]');
      if (option) setActive(options().indexOf(option));
    });
    listbox.addEventListener("mousedown", function (event) {
      if (event.target.closest('[role="option"]')) event.preventDefault();  // keep focus in the input
    });

    form.addEventListener("focusout", function (event) {
      if (!form.contains(event.relatedTarget)) close();
    });
  }

  function init() {
    document.querySelectorAll("form[data-global-search]").forEach(setup);
  }

  // --- Focus after htmx swaps: never leave keyboard users on <body> ------------------------------
  // "Load more" replaces its own row; focus moves to the first link of the first new row.
  let loadMore = null;
  document.addEventListener("htmx:beforeRequest", function (event) {
    const element = event.detail.elt;
    if (!element.matches || !element.matches("[data-load-more]")) return;
    const row = element.closest("tr, li");
    if (row) loadMore = { parent: row.parentElement, before: row.previousElementSibling };
  });

  function focusLost() {
    const current = document.activeElement;
    return !current || current === document.body || !document.contains(current);
  }

  document.addEventListener("htmx:afterSettle", function (event) {
    if (loadMore) {
      const next = loadMore.before ? loadMore.before.nextElementSibling : loadMore.parent.firstElementChild;
      loadMore = null;
      const link = next && next.querySelector("a[href]");
      if (link && focusLost()) link.focus();
      return;
    }
    const target = event.detail && event.detail.target;
    if (target && target.id === "task-groups" && focusLost()) target.focus();
  });

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
