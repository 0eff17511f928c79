// Reviewing a person's answer: accept, reject with a reason, or edit it (the editor shows the sanitized
// preview and the diff as the reviewer types; nothing is stored until the decision). Keyboard first; a
// decision is recorded once whatever the network does. Never builds HTML from data.
"use strict";

(function () {
  const { anyDialogOpen, newKey, deliver, fieldErrors, lockForm, textFieldKeys } = window.rankwise;
  const config = JSON.parse(document.getElementById("review-config").textContent);
  const form = document.getElementById("answer-review");
  let pending = null;
  let finished = !config.pending;

  window.rankwise.wireDialogs();
  const { go, pageKey } = window.rankwise.reviewPageKeys(config, form, () => (finished = true));
  if (!form) return; // already decided: only the page keys

  const setStatus = window.rankwise.statusLine(document.getElementById("status"));
  const submitButton = document.getElementById("submit-button");
  const reason = document.getElementById("reason");
  const csrfToken = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  const editSection = document.getElementById("review-edit");
  const editor = window.rankwiseEditor({
    root: document.getElementById("reviewer"),
    draftUrl: config.previewUrl,
    csrfToken,
    maxChars: config.maxChars,
    words: { saved: "Preview updated", saving: "Updating the preview…" },
  });

  function action() {
    const input = form.querySelector("input[name=action]:checked");
    return input ? input.value : null;
  }

  function setAction(value) {
    form.querySelector(`input[name=action][value="${value}"]`).checked = true;
    editSection.hidden = value !== "edit";
    if (value === "edit") {
      if (!editor.text()) editor.startFrom("", config.text);
      editor.textarea.focus();
    } else if (value === "reject") {
      reason.focus();
    }
  }

  form.addEventListener("change", (event) => {
    if (event.target.name === "action") setAction(event.target.value);
  });

  function collect() {
    const chosen = action();
    if (!chosen) return { error: "Choose first: a to accept, r to reject, e to edit." };
    const body = { submission_key: newKey(), action: chosen, reason: reason.value.trim() };
    if (chosen === "reject" && !body.reason) return { error: "Write why the answer is rejected (press /): the writer reads it." };
    if (chosen === "edit") {
      body.text = editor.text();
      if (body.text === config.text) return { error: "Change the answer first, or accept it as it is." };
    }
    return { body };
  }

  function submit() {
    if (pending || finished) return;
    const { body, error } = collect();
    if (error) {
      setStatus(error, "error");
      return;
    }
    pending = body;
    lockForm(form, true);
    setStatus("Recording…", "saving");
    deliver(config.decisionUrl, pending, csrfToken, {
      setStatus,
      saved(data) {
        editor.stop();
        setStatus("Recorded", "saved");
        setTimeout(() => go(data.next_url || config.nextUrl), 400);
      },
      refused(data) {
        pending = null;
        lockForm(form, false);
        setStatus(`Not recorded: ${data.detail || "the server refused it."} ${fieldErrors(data.errors)}`, "error");
      },
      final(data) {
        editor.stop();
        finished = true;
        setStatus(`${data.detail || "This decision cannot be recorded."} Press n for the next answer.`, "error");
      },
    });
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });

  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.isComposing || anyDialogOpen()) return;
    const target = event.target;
    const submitFrom = target === editor.textarea ? target : reason;
    if (textFieldKeys(event, { leaveTo: submitButton, submitFrom, submit })) return;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const key = event.key;
    if (pending || finished) {
      if (finished && (key === "n" || key === "u")) pageKey(key);
      return;
    }
    let handled = true;
    if (pageKey(key)) {
      // help, next, queue
    } else if (key === "a") setAction("accept");
    else if (key === "r") setAction("reject");
    else if (key === "e") setAction("edit");
    else if (key === "/") reason.focus();
    else if (key === "Enter" && !(target.matches && target.matches("button, summary, a"))) submit();
    else handled = false;
    if (handled) event.preventDefault();
  });

  form.dataset.ready = "true";
})();
