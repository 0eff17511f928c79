// What the workspace and the review page share: dialogs, submission keys, JSON posts, field messages,
// the status line, locking a form while it is on its way, and the keys of a text field. Builds no HTML.
"use strict";

window.rankwise = (function () {
  function openDialog(id) {
    const dialog = document.getElementById(id);
    if (dialog && !dialog.open) dialog.showModal();
    return dialog;
  }

  function anyDialogOpen() {
    return document.querySelector("dialog[open]") !== null;
  }

  // Buttons with data-open="<dialog id>" open it; [data-close] inside a dialog closes it.
  function wireDialogs() {
    document.querySelectorAll("[data-open]").forEach((button) => {
      button.addEventListener("click", () => openDialog(button.dataset.open));
    });
    document.querySelectorAll("dialog [data-close]").forEach((button) => {
      button.addEventListener("click", () => button.closest("dialog").close());
    });
  }

  function newKey() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // POST JSON with the CSRF token; {status, data}, status 0 when the network failed.
  async function postJson(url, body, csrfToken) {
    let response;
    try {
      response = await fetch(url, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken, Accept: "application/json" },
        body: JSON.stringify(body),
      });
    } catch (error) {
      return { status: 0, data: {} };
    }
    let data = {};
    try {
      data = await response.json();
    } catch (error) {
      data = {};
    }
    return { status: response.status, data };
  }

  function fieldErrors(errors) {
    return Object.entries(errors || {})
      .map(([field, messages]) => `${field === "non_field_errors" ? "" : field + ": "}${messages.join(" ")}`)
      .join(" ");
  }

  function statusLine(element) {
    return function (text, kind) {
      element.textContent = text;
      element.className = "status" + (kind ? " " + kind : "");
    };
  }

  function lockForm(form, locked) {
    form.setAttribute("aria-busy", locked ? "true" : "false");
    form.querySelectorAll("input, select, textarea, button").forEach((control) => {
      if (control.type !== "hidden") control.disabled = locked;
    });
  }

  // Keys typed into a text field: Esc leaves it for `leaveTo`, Ctrl+Enter in `submitFrom` submits. Returns
  // whether the event was in a text field (then the page's own keys must leave it alone).
  function textFieldKeys(event, { leaveTo, submitFrom, submit }) {
    const target = event.target;
    if (!(target.matches && target.matches("textarea, input[type=text], input[type=number], select"))) return false;
    if (event.key === "Escape") {
      target.blur();
      leaveTo.focus();
      event.preventDefault();
    } else if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && target === submitFrom) {
      event.preventDefault();
      submit();
    }
    return true;
  }

  return { openDialog, anyDialogOpen, wireDialogs, newKey, postJson, fieldErrors, statusLine, lockForm, textFieldKeys };
})();
