/* The lead page: "Move to…" and logging an activity, both through the JSON API with the session. */
(function () {
  "use strict";

  const page = document.querySelector("[data-lead-page]");
  if (!page || !window.Axiomatic) return;
  const A = window.Axiomatic;
  const leadId = page.dataset.leadId;
  const alertBox = document.getElementById("lead-alert");
  const statusBox = document.getElementById("lead-status");

  function refreshTimeline() {
    return window.htmx.ajax("GET", page.dataset.timelineUrl, { target: "#timeline", swap: "innerHTML" });
  }

  // --- Move to… (the lost reason field shows only for a lost-kind stage) ---
  const moveForm = page.querySelector("form[data-move-form]");
  if (moveForm) {
    const select = moveForm.elements.stageId;
    const reasonField = moveForm.querySelector(".lost-reason-field");
    const initialStage = select.value;
    const syncReason = function () {
      const kind = select.selectedOptions[0] && select.selectedOptions[0].dataset.kind;
      reasonField.hidden = kind !== "lost";
      moveForm.elements.lostReason.required = kind === "lost";
    };
    syncReason();
    select.addEventListener("change", syncReason);
    moveForm.addEventListener("submit", async function (event) {
      event.preventDefault();
      if (select.value === initialStage) return;
      const body = { stageId: select.value };
      const reason = moveForm.elements.lostReason.value.trim();
      if (!reasonField.hidden && reason) body.lostReason = reason;
      A.clearAlert(alertBox);
      const result = await A.api("PATCH", "/api/crm/leads/" + leadId + "/stage", body);
      if (!result.ok) {
        A.showAlert(alertBox, "Could not move the lead: " + A.errorMessage(result));
        return;
      }
      window.location.reload();
    });
  }

  // --- Log an activity ---
  const activityForm = page.querySelector("form[data-activity-form]");
  if (activityForm) {
    activityForm.addEventListener("submit", async function (event) {
      event.preventDefault();
      const fields = activityForm.elements;
      const body = { type: fields.type.value, subject: fields.subject.value.trim() };
      if (fields.body.value.trim()) body.body = fields.body.value;
      const button = activityForm.querySelector('button[type="submit"]');
      A.clearAlert(alertBox);
      button.disabled = true;
      const result = await A.api("POST", "/api/crm/leads/" + leadId + "/activities", body);
      button.disabled = false;
      if (!result.ok) {
        A.showAlert(alertBox, "Could not log the activity: " + A.errorMessage(result));
        return;
      }
      activityForm.reset();
      await refreshTimeline();
      A.announce(statusBox, "Activity logged.");
    });
  }
})();
