/* Shared helpers for the pages: calling the JSON API with the session, messages, copy buttons. */
(function () {
  "use strict";

  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  function entityId() {
    return document.body.dataset.entityId || "";
  }

  /* fetch() against /api/ with the session cookie, the CSRF token and x-entity-id.
     Resolves to {ok, status, data}; a network failure resolves with ok=false, status=0. */
  async function api(method, url, body) {
    const headers = {
      Accept: "application/json",
      "x-entity-id": entityId(),
      "X-CSRFToken": csrfToken(),
    };
    const init = { method: method, credentials: "same-origin", headers: headers };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(url, init);
    } catch (error) {
      return { ok: false, status: 0, data: { error: "The server could not be reached. Check your connection." } };
    }
    let data = null;
    try {
      data = await response.json();
    } catch (error) {
      data = null;
    }
    return { ok: response.ok, status: response.status, data: data };
  }

  /* One readable sentence from an API error envelope, with field details when present. */
  function errorMessage(result) {
    const data = result.data || {};
    let message = data.error || (result.status ? "The request failed (HTTP " + result.status + ")." : "The request failed.");
    if (data.details && typeof data.details === "object") {
      const parts = Object.keys(data.details).map(function (field) {
        const messages = data.details[field];
        return field + ": " + (Array.isArray(messages) ? messages.join(" ") : String(messages));
      });
      if (parts.length && message.indexOf(parts[0]) === -1) message += " " + parts.join("; ");
    }
    return message;
  }

  function showAlert(element, message) {
    if (!element) return;
    element.textContent = message;
    element.hidden = false;
  }

  function clearAlert(element) {
    if (!element) return;
    element.textContent = "";
    element.hidden = true;
  }

  function announce(element, message) {
    if (!element) return;
    element.textContent = "";
    window.setTimeout(function () { element.textContent = message; }, 30);
  }

  /* Copy buttons: <button data-copy-target="input-id">. */
  document.addEventListener("click", async function (event) {
    const button = event.target.closest("[data-copy-target]");
    if (!button) return;
    const input = document.getElementById(button.dataset.copyTarget);
    if (!input) return;
    const status = button.parentElement.querySelector(".copy-status");
    let copied = false;
    try {
      await navigator.clipboard.writeText(input.value);
      copied = true;
    } catch (error) {
      input.select();
      try { copied = document.execCommand("copy"); } catch (ignored) { copied = false; }
    }
    if (status) status.textContent = copied ? "Copied." : "Select the key and copy it manually.";
  });

  window.Axiomatic = { api: api, errorMessage: errorMessage, showAlert: showAlert, clearAlert: clearAlert, announce: announce };
})();
