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

  async function getJson(url) {
    try {
      const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
      return { status: response.status, data: await response.json().catch(() => ({})) };
    } catch (error) {
      return { status: 0, data: {} };
    }
  }

  const RETRY_DELAYS_MS = [1000, 2000, 4000, 8000, 15000, 30000];

  // Send one submission until its outcome is known. The body (with its submission key) is the same on every
  // try, so the server stores it once and answers a retry of a stored one as a replay. `saved(data)` on 200
  // or 201, `refused(data)` on 400 (nothing stored: the person may fix it), `final(data)` when it can never
  // be stored (403, 404, 409, 422); a network or server failure is retried with backoff.
  function deliver(url, body, csrfToken, { setStatus, saved, refused, final }) {
    async function attempt(count) {
      const { status, data } = await postJson(url, body, csrfToken);
      if (status === 200 || status === 201) return saved(data);
      if (status === 400) return refused(data);
      if (status === 401) return setStatus(data.detail || "Your session ended. Log in again; nothing was saved.", "error");
      if ([403, 404, 409, 422].includes(status)) return final(data);
      const delay = RETRY_DELAYS_MS[Math.min(count, RETRY_DELAYS_MS.length - 1)];
      setStatus(`Not saved yet: ${status ? "the server answered " + status : "no connection"}. Retrying in ${Math.round(delay / 1000)} s (attempt ${count + 2})…`, "retrying");
      setTimeout(() => attempt(count + 1), delay);
    }
    attempt(0);
  }

  // The skip dialog (annotate/_skip_dialog.html): the reason, then the next item. `busy()` says whether a
  // submission is on its way (then skipping does nothing).
  function wireSkip({ skipUrl, csrfToken, setStatus, busy, goNext }) {
    const skipForm = document.getElementById("skip-form");
    skipForm.addEventListener("keydown", (event) => {
      // Enter on the reason list confirms, as it does in the text field.
      if (event.key === "Enter" && event.target.matches("select")) {
        event.preventDefault();
        skipForm.requestSubmit();
      }
    });
    skipForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const detail = document.getElementById("skip-detail").value.trim();
      const reason = document.getElementById("skip-reason").value + (detail ? `: ${detail}` : "");
      document.getElementById("skip-dialog").close();
      if (busy()) return;
      setStatus("Skipping…", "saving");
      const result = await postJson(skipUrl, { reason }, csrfToken);
      if (result.status === 200) {
        setStatus("Skipped", "saved");
        goNext(result.data.next_url);
      } else {
        setStatus(`Not skipped: ${result.data.detail || "no connection"} ${fieldErrors(result.data.errors)}`, "error");
      }
    });
  }

  function showProgress(progress) {
    if (!progress) return;
    document.getElementById("today-count").textContent = progress.today;
    document.getElementById("project-percent").textContent = progress.counted ? `${progress.percent}% complete` : "being counted";
    const bar = document.getElementById("project-progress");
    bar.max = progress.total || 1;
    bar.value = progress.completed;
  }

  // The keys every review page has: ? help, n the next item, u the queue. `left()` is told before the page
  // is left. Where nothing waits for a decision (no `form`), they are the page's only keys, and it is ready.
  function reviewPageKeys(config, form, left) {
    function go(url) {
      left();
      window.location.assign(url);
    }
    function pageKey(key) {
      if (key === "?") openDialog("help-dialog");
      else if (key === "n") go(config.nextUrl);
      else if (key === "u") go(config.queueUrl);
      else return false;
      return true;
    }
    if (!form) {
      document.addEventListener("keydown", (event) => {
        if (event.ctrlKey || event.metaKey || event.altKey || anyDialogOpen()) return;
        if (pageKey(event.key)) event.preventDefault();
      });
      document.body.dataset.ready = "true";
    }
    return { go, pageKey };
  }

  return {
    reviewPageKeys, openDialog, anyDialogOpen, wireDialogs, newKey, postJson, getJson, deliver, wireSkip, showProgress, fieldErrors,
    statusLine, lockForm, textFieldKeys,
  };
})();
