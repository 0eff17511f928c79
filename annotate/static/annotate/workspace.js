// The annotator's workspace: keyboard for everything, and a submission that is saved once whatever the
// network does. The page is server-rendered; this script only reads the form, talks JSON to the server
// and moves to the next comparison once the server has confirmed. It never builds HTML from data.
"use strict";

(function () {
  const { openDialog, anyDialogOpen, newKey, deliver, showProgress, fieldErrors, lockForm, textFieldKeys } = window.rankwise;
  const config = JSON.parse(document.getElementById("workspace-config").textContent);
  const form = document.getElementById("judgment");
  const setStatus = window.rankwise.statusLine(document.getElementById("status"));
  const submitButton = document.getElementById("submit-button");
  const rationale = document.getElementById("rationale");
  const csrfToken = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  const startedAt = performance.now();
  const isRanking = config.mode === "ranking";

  // One submission per page: its key and body are fixed at the first send, so every retry is the same
  // request and the server stores it once (a retry of a stored one is answered as a replay).
  let pending = null;
  let finished = false;

  window.rankwise.wireDialogs();

  // --- choice, strength, flags --------------------------------------------------------------------------

  function radio(name, value) {
    return form.querySelector(`input[name="${name}"][value="${value}"]`);
  }

  function checkedValue(name) {
    const input = form.querySelector(`input[name="${name}"]:checked`);
    return input ? input.value : null;
  }

  function syncStrength() {
    const strength = document.getElementById("strength");
    if (!strength) return;
    const choice = checkedValue("choice");
    const applies = choice === "a" || choice === "b";
    strength.disabled = !applies;
    if (!applies) strength.querySelectorAll("input").forEach((input) => (input.checked = false));
  }

  function choose(value) {
    const input = radio("choice", value);
    if (!input) return;
    input.checked = true;
    input.focus();
    syncStrength();
    if (edit) {
      edit.syncBases();
      if (value === "both_bad" && config.editing === "both_bad" && !edit.isOpen()) edit.open();
    }
  }

  form.addEventListener("change", (event) => {
    if (event.target.name === "choice") {
      syncStrength();
      if (edit) edit.syncBases();
    }
    if (event.target.matches(".rank-control select")) ranking.fromSelects();
  });
  syncStrength();

  function toggleFlag(value) {
    const input = radio("flags", value);
    if (input) input.checked = !input.checked;
  }

  // --- ratings ------------------------------------------------------------------------------------------

  const ratingGroups = Array.from(form.querySelectorAll("fieldset.rating"));

  function focusRating(index) {
    const group = ratingGroups[index];
    if (!group) return false;
    group.closest("details").open = true;
    const target = group.querySelector("input:checked") || group.querySelector("input");
    target.focus();
    return true;
  }

  function rateFocused(digit) {
    const group = document.activeElement && document.activeElement.closest("fieldset.rating");
    if (!group) return false;
    const input = group.querySelector(`input[value="${digit}"]`);
    if (!input) return true; // a digit outside this scale: swallow it, change nothing
    input.checked = true;
    if (!focusRating(ratingGroups.indexOf(group) + 1)) submitButton.focus();
    return true;
  }

  function ratings() {
    const result = {};
    ratingGroups.forEach((group) => {
      const input = group.querySelector("input:checked");
      if (!input) return;
      const label = group.dataset.label;
      result[label] = result[label] || {};
      result[label][group.dataset.axis] = Number(input.value);
    });
    return result;
  }

  // --- k-wise ranking (annotate/ranking.js) -------------------------------------------------------------

  const ranking = window.rankwiseRanking(
    Array.from(form.querySelectorAll(".rank-control select")),
    config.labels,
    document.getElementById("ranking-summary"),
  );

  // --- improving the chosen answer (projects that take edits) ------------------------------------------

  const edit = config.editing ? editSection() : null;

  function editSection() {
    const section = document.getElementById("edit-section");
    const editor = window.rankwiseEditor({
      root: document.getElementById("editor"),
      draftUrl: config.draftUrl,
      csrfToken,
      maxChars: config.maxChars,
    });
    const bases = Array.from(section.querySelectorAll("input[name=edit-base]"));

    // The labels an edit may start from after the verdict so far (as annotate.submission.edit_bases says).
    function allowed() {
      if (isRanking) {
        const ranks = ranking.ranks();
        const best = Math.min(...Object.values(ranks));
        return config.labels.filter((label) => ranks[label] === best);
      }
      const choice = checkedValue("choice");
      if (choice === "a" || choice === "b") return [choice.toUpperCase()];
      return choice ? config.labels.slice() : [];
    }

    function syncBases() {
      const labels = allowed();
      bases.forEach((input) => {
        input.disabled = !labels.includes(input.value);
        input.checked = input.value === editor.base();
      });
      if (!section.hidden && labels.length && !labels.includes(editor.base())) startFrom(labels[0]);
    }

    function startFrom(label) {
      const current = editor.text();
      // Untouched (still the old start's text, or empty): restart from the new one; written on: keep it.
      if (!current || current === config.texts[editor.base()]) editor.startFrom(label, config.texts[label]);
      else editor.startFrom(label, current);
      syncBases();
    }

    function open() {
      const labels = allowed();
      if (!labels.length) {
        setStatus(isRanking ? "Rank the responses first, then press w to improve the best one." : "Choose first, then press w to improve the chosen answer.", "error");
        return;
      }
      section.hidden = false;
      if (!labels.includes(editor.base()) || !editor.text()) startFrom(labels[0]);
      syncBases();
      editor.textarea.focus();
    }

    function discard() {
      editor.startFrom("", "");
      section.hidden = true;
      document.getElementById("edit-button").focus();
    }

    bases.forEach((input) => input.addEventListener("change", () => startFrom(input.value)));
    document.getElementById("edit-button").addEventListener("click", open);
    document.getElementById("edit-discard").addEventListener("click", discard);

    return {
      editor,
      open,
      syncBases,
      isOpen: () => !section.hidden,
      // {from, text} when the editor holds a change; null otherwise.
      value() {
        const text = editor.text();
        if (section.hidden || !editor.base() || !text.trim() || text === config.texts[editor.base()]) return null;
        return { from: editor.base(), text };
      },
      async restore() {
        const draft = await editor.load();
        if (draft.text && draft.base) {
          section.hidden = false;
          setStatus("Your edit was kept from before; choose your verdict again, then submit.", "saving");
        }
      },
      togglePreview: () => editor.togglePreview(),
      stop: () => editor.stop(),
    };
  }

  // --- submitting ---------------------------------------------------------------------------------------

  function collect() {
    const body = {
      submission_key: newKey(),
      ratings: ratings(),
      rationale: rationale.value,
      flags: Array.from(form.querySelectorAll("input[name=flags]:checked"), (input) => input.value),
      time_spent_ms: Math.round(performance.now() - startedAt),
    };
    if (isRanking) {
      const ranks = ranking.ranks();
      const missing = config.labels.filter((label) => !(label in ranks));
      if (missing.length) return { error: `Rank every response first (still to rank: ${missing.join(", ")}).` };
      body.ranking = config.labels.map((label) => ranks[label]);
    } else {
      body.choice = checkedValue("choice");
      if (!body.choice) return { error: "Choose first: A, B" + (config.allowsTie ? ", tie" : "") + " or both bad." };
      const strength = checkedValue("strength");
      if ((body.choice === "a" || body.choice === "b") && config.strengthLevels && !strength) {
        return { error: `Say how much better: press 1 to ${config.strengthLevels}.` };
      }
      body.strength = strength ? Number(strength) : null;
    }
    if (edit) {
      body.edit = edit.value();
      if (!body.edit && config.editing === "both_bad" && body.choice === "both_bad") {
        if (!edit.isOpen()) edit.open();
        return { error: "Both are bad: write a better answer in the editor (press w), then submit." };
      }
    }
    return { body };
  }

  function lock(locked) {
    lockForm(form, locked);
    if (!locked) syncStrength();
  }

  function goNext(url) {
    finished = true;
    window.location.assign(url || config.nextUrl);
  }

  function send() {
    deliver(config.submitUrl, pending, csrfToken, {
      setStatus,
      saved(data) {
        if (edit) edit.stop();
        showProgress(data.progress);
        setStatus("Saved", "saved");
        setTimeout(() => goNext(data.next_url), 500);
      },
      refused(data) {
        // Nothing was stored: the annotator may fix the judgment and send it again (a new key then).
        pending = null;
        lock(false);
        setStatus(`Not saved: ${data.detail || "the server refused it."} ${fieldErrors(data.errors)}`, "error");
      },
      final(data) {
        setStatus(`${data.detail || "This judgment cannot be saved."} Press n for the next comparison.`, "error");
        finished = true;
      },
    });
  }

  function submit() {
    if (pending || finished) return;
    const { body, error } = collect();
    if (error) {
      setStatus(error, "error");
      return;
    }
    pending = body;
    lock(true);
    setStatus("Saving…", "saving");
    send();
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });

  // --- skipping ---------------------------------------------------------------------------------------

  window.rankwise.wireSkip({ skipUrl: config.skipUrl, csrfToken, setStatus, busy: () => Boolean(pending || finished), goNext });

  // --- keyboard ---------------------------------------------------------------------------------------

  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.isComposing) return;
    const target = event.target;
    if (anyDialogOpen()) return; // dialogs handle their own keys (Esc closes them)
    const submitFrom = edit && target === edit.editor.textarea ? target : rationale;
    if (textFieldKeys(event, { leaveTo: submitButton, submitFrom, submit })) return;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const key = event.key;
    if (pending || finished) {
      if (finished && key === "n") goNext();
      return;
    }
    let handled = true;
    if (/^[0-9]$/.test(key) && rateFocused(key)) {
      // a digit on a focused rating scale rates it
    } else if (key === "?") {
      openDialog("help-dialog");
    } else if (key === "i") {
      openDialog("guidelines-dialog");
    } else if (key === "s") {
      openDialog("skip-dialog");
    } else if (key === "/") {
      rationale.focus();
    } else if (key === "w" && edit) {
      edit.open();
    } else if (key === "v" && edit && edit.isOpen()) {
      edit.togglePreview();
    } else if (key === "r" && ratingGroups.length) {
      focusRating(0);
    } else if (key === "Enter" && !(target.matches && target.matches("button, summary, a"))) {
      submit();
    } else if (Object.values(config.flagKeys).includes(key)) {
      toggleFlag(Object.keys(config.flagKeys).find((flag) => config.flagKeys[flag] === key));
    } else if (isRanking && key === "=") {
      ranking.tie();
    } else if (isRanking && key === "Backspace") {
      ranking.undo();
    } else if (isRanking && config.labels.includes(key.toUpperCase()) && key.length === 1) {
      ranking.next(key.toUpperCase());
    } else if (!isRanking && key === "a") {
      choose("a");
    } else if (!isRanking && key === "b") {
      choose("b");
    } else if (!isRanking && key === "t" && config.allowsTie) {
      choose("tie");
    } else if (!isRanking && key === "x") {
      choose("both_bad");
    } else if (!isRanking && /^[1-9]$/.test(key) && Number(key) <= config.strengthLevels) {
      const strength = document.getElementById("strength");
      if (strength && !strength.disabled) radio("strength", key).checked = true;
      else handled = false;
    } else {
      handled = false;
    }
    if (handled) event.preventDefault();
  });

  window.addEventListener("beforeunload", (event) => {
    if (pending && !finished) event.preventDefault(); // a judgment is still on its way
  });
  ranking.show();
  if (edit) {
    edit.restore().then(() => {
      form.dataset.ready = "true";
    });
  } else {
    form.dataset.ready = "true"; // for people and tests: the keyboard works from here on
  }
})();
