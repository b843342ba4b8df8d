/* The pipeline board: drag and drop, "Move to…", the lost-reason dialog and the new-lead form.

   Every write goes to the JSON API with the session (PATCH /api/crm/leads/{id}/stage,
   POST /api/crm/leads); on success the columns involved are re-rendered from the server through
   htmx partials, so counts and totals always come from the database. */
(function () {
  "use strict";

  const board = document.querySelector("[data-board]");
  if (!board || !window.Axiomatic) return;
  const A = window.Axiomatic;
  const entityId = board.dataset.entityId;
  const filterQuery = board.dataset.filterQuery || "";
  const alertBox = document.getElementById("board-alert");
  const statusBox = document.getElementById("board-status");
  const lostDialog = document.getElementById("lost-reason-dialog");
  let dragged = null;

  function column(stageId) {
    return board.querySelector('.board-column[data-stage-id="' + stageId + '"]');
  }

  function columnUrl(stageId) {
    return "/crm/board/columns/" + stageId + "?entityId=" + encodeURIComponent(entityId) + (filterQuery ? "&" + filterQuery : "");
  }

  /* Re-render one column (header counts/totals and cards) from the server. */
  function refreshColumn(stageId) {
    const target = column(stageId);
    if (!target) return Promise.resolve();
    return window.htmx.ajax("GET", columnUrl(stageId), { target: target, swap: "outerHTML" });
  }

  function cardTitle(card) {
    return card.dataset.leadTitle || "this lead";
  }

  /* Ask why a lead was lost; resolves to the reason, or null when cancelled. */
  function askLostReason(title) {
    return new Promise(function (resolve) {
      const form = lostDialog.querySelector("form");
      const field = form.elements.lostReason;
      form.reset();
      field.setCustomValidity("");
      lostDialog.querySelector("[data-lost-lead-title]").textContent = title;
      lostDialog.returnValue = "";
      lostDialog.addEventListener(
        "close",
        function () {
          const reason = field.value.trim();
          resolve(lostDialog.returnValue === "confirm" && reason ? reason : null);
        },
        { once: true }
      );
      lostDialog.showModal();
      field.focus();
    });
  }

  lostDialog.querySelector("form").addEventListener("submit", function (event) {
    const field = event.target.elements.lostReason;
    const confirming = event.submitter && event.submitter.value === "confirm";
    if (confirming && !field.value.trim()) {
      event.preventDefault();
      field.setCustomValidity("Enter a reason.");
      field.reportValidity();
    } else {
      field.setCustomValidity("");
    }
  });

  function resetMoveSelect(card) {
    const select = card.querySelector("form[data-move-form] select");
    if (select) select.value = card.dataset.stageId;
  }

  function focusCard(leadId, fallbackStageId) {
    const select = board.querySelector('.lead-card[data-lead-id="' + leadId + '"] form[data-move-form] select');
    if (select) {
      select.focus();
      return;
    }
    const col = column(fallbackStageId);
    const heading = col && col.querySelector("h2");
    if (heading) {
      heading.setAttribute("tabindex", "-1");
      heading.focus();
    }
  }

  /* Move `card` to stage `toStageId` through the API; snap back with a message on refusal. */
  async function moveLead(card, toStageId, options) {
    const keyboard = Boolean(options && options.keyboard);
    const fromStageId = card.dataset.stageId;
    const leadId = card.dataset.leadId;
    const target = column(toStageId);
    if (!target || toStageId === fromStageId || card.dataset.pending) {
      resetMoveSelect(card);
      return;
    }
    A.clearAlert(alertBox);
    const body = { stageId: toStageId };
    if (target.dataset.stageKind === "lost") {
      const reason = await askLostReason(cardTitle(card));
      if (reason === null) {
        resetMoveSelect(card);
        A.announce(statusBox, "Move cancelled.");
        if (keyboard) focusCard(leadId, fromStageId);
        return;
      }
      body.lostReason = reason;
    }

    // Optimistic: show the card in its new column while the server decides.
    const origin = card.parentNode;
    const originNext = card.nextSibling;
    card.dataset.pending = "true";
    card.classList.add("pending");
    target.querySelector("[data-cards]").prepend(card);

    const result = await A.api("PATCH", "/api/crm/leads/" + leadId + "/stage", body);
    if (!result.ok) {
      delete card.dataset.pending;
      card.classList.remove("pending");
      if (origin && origin.isConnected) {
        origin.insertBefore(card, originNext && originNext.parentNode === origin ? originNext : null);
        resetMoveSelect(card);
      } else {
        card.remove();
        await refreshColumn(fromStageId);
      }
      A.showAlert(alertBox, "Could not move “" + cardTitle(card) + "”: " + A.errorMessage(result));
      if (keyboard) focusCard(leadId, fromStageId);
      return;
    }
    const stageName = target.dataset.stageName;
    await Promise.all([refreshColumn(fromStageId), refreshColumn(toStageId)]);
    A.announce(statusBox, "Moved “" + cardTitle(card) + "” to " + stageName + ".");
    if (keyboard) focusCard(leadId, toStageId);
  }

  // --- Drag and drop (native HTML drag events, delegated so re-rendered columns keep working) ---
  board.addEventListener("dragstart", function (event) {
    const card = event.target.closest && event.target.closest(".lead-card");
    if (!card || card.dataset.pending) return;
    dragged = card;
    event.dataTransfer.effectAllowed = "move";
    event.dataTransfer.setData("text/plain", card.dataset.leadId);
    card.classList.add("dragging");
  });

  board.addEventListener("dragend", function () {
    if (dragged) dragged.classList.remove("dragging");
    dragged = null;
    board.querySelectorAll(".drop-target").forEach(function (el) { el.classList.remove("drop-target"); });
  });

  board.addEventListener("dragover", function (event) {
    const col = event.target.closest && event.target.closest(".board-column");
    if (!col || !dragged) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "move";
    board.querySelectorAll(".drop-target").forEach(function (el) {
      if (el !== col) el.classList.remove("drop-target");
    });
    col.classList.add("drop-target");
  });

  board.addEventListener("dragleave", function (event) {
    const col = event.target.closest && event.target.closest(".board-column");
    if (col && !col.contains(event.relatedTarget)) col.classList.remove("drop-target");
  });

  board.addEventListener("drop", function (event) {
    const col = event.target.closest && event.target.closest(".board-column");
    if (!col || !dragged) return;
    event.preventDefault();
    col.classList.remove("drop-target");
    const card = dragged;
    dragged = null;
    card.classList.remove("dragging");
    moveLead(card, col.dataset.stageId, { keyboard: false });
  });

  // --- "Move to…" (keyboard and pointer alike) ---
  board.addEventListener("submit", function (event) {
    const form = event.target.closest("form[data-move-form]");
    if (!form) return;
    event.preventDefault();
    const card = form.closest(".lead-card");
    moveLead(card, form.elements.stageId.value, { keyboard: true });
  });

  // --- New lead ---
  const newLeadForm = board.querySelector("form[data-new-lead-form]");
  if (newLeadForm) {
    newLeadForm.addEventListener("submit", async function (event) {
      event.preventDefault();
      const fields = newLeadForm.elements;
      const button = newLeadForm.querySelector('button[type="submit"]');
      const body = { title: fields.title.value.trim(), stageId: fields.stageId.value };
      if (fields.value.value.trim()) body.value = fields.value.value.trim().replace(/,/g, "");
      if (fields.currency.value.trim()) body.currency = fields.currency.value.trim().toUpperCase();
      if (fields.assignToMe.checked) body.ownerUserId = board.dataset.userId;
      A.clearAlert(alertBox);
      button.disabled = true;
      const result = await A.api("POST", "/api/crm/leads", body);
      button.disabled = false;
      if (!result.ok) {
        A.showAlert(alertBox, "Could not create the lead: " + A.errorMessage(result));
        return;
      }
      const lead = (result.data && result.data.lead) || {};
      newLeadForm.reset();
      await refreshColumn(lead.stageId || body.stageId);
      A.announce(statusBox, "Created “" + (lead.title || body.title) + "”.");
      fields.title.focus();
    });
  }
})();
