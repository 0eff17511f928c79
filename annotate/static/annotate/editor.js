// A person's answer being written (annotate/_answer_editor.html): the draft is saved on the server as they
// type, per assignment, so a reload, a closed tab or a lost connection loses nothing, and every save extends
// the lease. The server answers each save with the preview (its markdown sanitizer's output, the same HTML
// the pages render on the server) and, for an edit, the word diff as text segments, shown with textContent.
// Saves carry a growing revision: one that arrives late never overwrites a newer draft.
"use strict";

// `words` renames the draft's states where nothing is stored (a reviewer's edit is only previewed).
window.rankwiseEditor = function ({ root, draftUrl, csrfToken, maxChars, base, onLost, words }) {
  const { getJson, postJson, fieldErrors } = window.rankwise;
  const textarea = root.querySelector(".answer-text");
  const preview = root.querySelector(".preview");
  const previewPane = root.querySelector(".preview-pane");
  const diff = root.querySelector(".diff");
  const count = root.querySelector(".char-count");
  const state = root.querySelector(".draft-state");
  const SAVE_AFTER_MS = 400;
  const RETRY_DELAYS_MS = [1000, 2000, 5000, 10000, 20000];

  let baseLabel = base || "";
  let revision = 0; // the last revision sent
  let savedText = null; // the text the server last confirmed (null: nothing saved yet)
  let inFlight = false;
  let timer = null;
  let failures = 0;
  let lost = false; // the lease ran out or the work was finished elsewhere: saving stops
  const said = { saved: "Draft saved", saving: "Saving draft…", ...(words || {}) };

  function setState(text, kind) {
    state.textContent = text;
    state.className = "draft-state" + (kind ? " " + kind : "");
  }

  function showCount() {
    const length = textarea.value.length;
    count.textContent = `${length.toLocaleString()} / ${maxChars.toLocaleString()} characters`;
    count.classList.toggle("over", length > maxChars);
  }

  function hint(element, text) {
    const paragraph = document.createElement("p");
    paragraph.className = "hint";
    paragraph.textContent = text;
    element.replaceChildren(paragraph);
  }

  function showDiff(segments) {
    if (!diff) return;
    if (!segments || !segments.some(([op]) => op !== "equal")) {
      hint(diff, "No change yet.");
      return;
    }
    diff.replaceChildren(
      ...segments.map(([op, text]) => {
        const element = document.createElement(op === "insert" ? "ins" : op === "delete" ? "del" : "span");
        element.textContent = text;
        return element;
      }),
    );
  }

  function show(data) {
    // The server's sanitizer output (annotate.rendering.markdown_to_safe_html), never the raw text.
    if (data.preview_html) preview.innerHTML = data.preview_html;
    else hint(preview, "The preview shows here as you write.");
    showDiff(data.diff);
  }

  function schedule(delay) {
    clearTimeout(timer);
    timer = setTimeout(save, delay);
  }

  async function save() {
    if (inFlight || lost || textarea.value === savedText) return;
    if (textarea.value.length > maxChars) {
      setState(`Draft not saved: an answer holds at most ${maxChars.toLocaleString()} characters.`, "error");
      return;
    }
    inFlight = true;
    const text = textarea.value;
    revision += 1;
    setState(said.saving, "saving");
    const { status, data } = await postJson(draftUrl, { text, revision, base: baseLabel }, csrfToken);
    inFlight = false;
    if (status === 200) {
      failures = 0;
      savedText = text;
      setState(`${said.saved} at ${new Date().toLocaleTimeString()}`, "saved");
      show(data);
      if (textarea.value !== text) schedule(SAVE_AFTER_MS); // typed on while it was saved
    } else if (status === 400) {
      setState(`Draft not saved: ${fieldErrors(data.errors) || data.detail}`, "error");
    } else if (status === 401 || status === 403 || status === 404 || status === 409) {
      lost = true;
      setState(data.detail || "The draft can no longer be saved.", "error");
      if (onLost) onLost(data);
    } else {
      const delay = RETRY_DELAYS_MS[Math.min(failures, RETRY_DELAYS_MS.length - 1)];
      failures += 1;
      setState(`Draft not saved yet (${status ? "the server answered " + status : "no connection"}); trying again in ${Math.round(delay / 1000)} s. Keep writing: this page keeps it.`, "retrying");
      schedule(delay);
    }
  }

  textarea.addEventListener("input", () => {
    showCount();
    schedule(SAVE_AFTER_MS);
  });

  // Leaving or hiding the page: send what is not saved yet with a request that outlives the page.
  function flush() {
    if (lost || savedText === textarea.value || textarea.value.length > maxChars) return;
    revision += 1;
    fetch(draftUrl, {
      method: "POST",
      keepalive: true,
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken },
      body: JSON.stringify({ text: textarea.value, revision, base: baseLabel }),
    }).catch(() => {});
  }
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden") flush();
  });
  window.addEventListener("pagehide", flush);

  return {
    textarea,
    // The stored draft, if any, into the editor; resolves with the draft (its text is "" when none).
    async load() {
      const { status, data } = await getJson(draftUrl);
      if (status !== 200) return { text: "" };
      revision = data.revision || 0;
      if (data.text) {
        textarea.value = data.text;
        savedText = data.text;
        baseLabel = data.base || baseLabel;
        setState(`Draft restored (saved at ${new Date(data.saved_at).toLocaleTimeString()})`, "saved");
        show(data);
      }
      showCount();
      return data;
    },
    // Start (or restart) from another answer: its text in the editor, the diff against it.
    startFrom(label, text) {
      baseLabel = label;
      textarea.value = text;
      showCount();
      savedText = null;
      schedule(0);
    },
    base: () => baseLabel,
    text: () => textarea.value,
    unsaved: () => savedText !== textarea.value && textarea.value !== "",
    togglePreview() {
      previewPane.hidden = !previewPane.hidden;
    },
    stop() {
      lost = true;
      clearTimeout(timer);
    },
  };
};
