// The writing page of a demonstration project: the annotator writes the assistant's answer in a markdown
// editor (annotate/editor.js saves the draft as they type), then submits it once, whatever the network does.
// Keyboard first; never builds HTML from data.
"use strict";

(function () {
  const { openDialog, anyDialogOpen, newKey, deliver, showProgress, fieldErrors, lockForm, textFieldKeys } = window.rankwise;
  const config = JSON.parse(document.getElementById("workspace-config").textContent);
  const startedAt = performance.now();
  const form = document.getElementById("answer");
  const setStatus = window.rankwise.statusLine(document.getElementById("status"));
  const submitButton = document.getElementById("submit-button");
  const csrfToken = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  let pending = null; // the submission on its way: fixed at the first send, so every retry is the same
  let finished = false;

  window.rankwise.wireDialogs();

  const editor = window.rankwiseEditor({
    root: document.getElementById("writer"),
    draftUrl: config.draftUrl,
    csrfToken,
    maxChars: config.maxChars,
    onLost(data) {
      finished = true;
      setStatus(`${data.detail || "This prompt is no longer yours."} Press n for the next one.`, "error");
    },
  });
  const textarea = editor.textarea;

  function goNext(url) {
    finished = true;
    window.location.assign(url || config.nextUrl);
  }

  function submit() {
    if (pending || finished) return;
    const text = textarea.value;
    if (!text.trim()) {
      setStatus("Write an answer first: press w to go to the editor.", "error");
      return;
    }
    if (text.length > config.maxChars) {
      setStatus(`An answer holds at most ${config.maxChars.toLocaleString()} characters; this one has ${text.length.toLocaleString()}.`, "error");
      return;
    }
    pending = { submission_key: newKey(), text, time_spent_ms: Math.round(performance.now() - startedAt) };
    lockForm(form, true);
    setStatus("Saving…", "saving");
    deliver(config.submitUrl, pending, csrfToken, {
      setStatus,
      saved(data) {
        editor.stop();
        showProgress(data.progress);
        setStatus(data.review === "pending" ? "Saved: a reviewer will read it" : "Saved", "saved");
        setTimeout(() => goNext(data.next_url), 500);
      },
      refused(data) {
        pending = null;
        lockForm(form, false);
        setStatus(`Not saved: ${data.detail || "the server refused it."} ${fieldErrors(data.errors)}`, "error");
      },
      final(data) {
        editor.stop();
        finished = true;
        setStatus(`${data.detail || "This answer cannot be saved."} Press n for the next prompt.`, "error");
      },
    });
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });

  window.rankwise.wireSkip({ skipUrl: config.skipUrl, csrfToken, setStatus, busy: () => Boolean(pending || finished), goNext });

  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.isComposing) return;
    if (anyDialogOpen()) return;
    if (textFieldKeys(event, { leaveTo: submitButton, submitFrom: textarea, submit })) return;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const key = event.key;
    if (pending || finished) {
      if (finished && key === "n") goNext();
      return;
    }
    const target = event.target;
    let handled = true;
    if (key === "w" || key === "/") textarea.focus();
    else if (key === "?") openDialog("help-dialog");
    else if (key === "i") openDialog("guidelines-dialog");
    else if (key === "s") openDialog("skip-dialog");
    else if (key === "v") editor.togglePreview();
    else if (key === "Enter" && !(target.matches && target.matches("button, summary, a"))) submit();
    else handled = false;
    if (handled) event.preventDefault();
  });

  window.addEventListener("beforeunload", (event) => {
    if ((pending && !finished) || (!finished && editor.unsaved())) event.preventDefault();
  });

  editor.load().then(() => {
    form.dataset.ready = "true"; // for people and tests: the keyboard works from here on
  });
})();
