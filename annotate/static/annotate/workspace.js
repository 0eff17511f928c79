// The annotator's workspace: keyboard for everything, and a submission that is saved once whatever the
// network does. The page is server-rendered; this script only reads the form, talks JSON to the server
// and moves to the next comparison once the server has confirmed. It never builds HTML from data.
"use strict";

(function () {
  const { openDialog, anyDialogOpen, newKey, postJson, fieldErrors, lockForm, textFieldKeys } = window.rankwise;
  const config = JSON.parse(document.getElementById("workspace-config").textContent);
  const form = document.getElementById("judgment");
  const setStatus = window.rankwise.statusLine(document.getElementById("status"));
  const submitButton = document.getElementById("submit-button");
  const rationale = document.getElementById("rationale");
  const csrfToken = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  const startedAt = performance.now();
  const isRanking = config.mode === "ranking";
  const RETRY_DELAYS_MS = [1000, 2000, 4000, 8000, 15000, 30000];

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
  }

  form.addEventListener("change", (event) => {
    if (event.target.name === "choice") syncStrength();
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
    return { body };
  }

  function lock(locked) {
    lockForm(form, locked);
    if (!locked) syncStrength();
  }

  function showProgress(progress) {
    if (!progress) return;
    document.getElementById("today-count").textContent = progress.today;
    document.getElementById("project-percent").textContent = progress.counted ? `${progress.percent}% complete` : "being counted";
    const bar = document.getElementById("project-progress");
    bar.max = progress.total || 1;
    bar.value = progress.completed;
  }

  function goNext(url) {
    finished = true;
    window.location.assign(url || config.nextUrl);
  }

  async function send(attempt) {
    const { status, data } = await postJson(config.submitUrl, pending, csrfToken);
    if (status === 200 || status === 201) {
      showProgress(data.progress);
      setStatus("Saved", "saved");
      setTimeout(() => goNext(data.next_url), 500);
      return;
    }
    if (status === 400) {
      // Nothing was stored: the annotator may fix the judgment and send it again (a new key then).
      pending = null;
      lock(false);
      setStatus(`Not saved: ${data.detail || "the server refused it."} ${fieldErrors(data.errors)}`, "error");
      return;
    }
    if (status === 401) {
      setStatus(data.detail || "Your session ended. Log in again; nothing was saved.", "error");
      return;
    }
    if (status === 404 || status === 409 || status === 422) {
      setStatus(`${data.detail || "This judgment cannot be saved."} Press n for the next comparison.`, "error");
      finished = true;
      return;
    }
    // The network or the server failed: the outcome is unknown, so send the very same request again.
    const delay = RETRY_DELAYS_MS[Math.min(attempt, RETRY_DELAYS_MS.length - 1)];
    setStatus(`Not saved yet: ${status ? "the server answered " + status : "no connection"}. Retrying in ${Math.round(delay / 1000)} s (attempt ${attempt + 2})…`, "retrying");
    setTimeout(() => send(attempt + 1), delay);
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
    send(0);
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });

  // --- skipping ---------------------------------------------------------------------------------------

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
    const dialog = document.getElementById("skip-dialog");
    const detail = document.getElementById("skip-detail").value.trim();
    const reason = document.getElementById("skip-reason").value + (detail ? `: ${detail}` : "");
    dialog.close();
    if (pending || finished) return;
    setStatus("Skipping…", "saving");
    const result = await postJson(config.skipUrl, { reason }, csrfToken);
    if (result.status === 200) {
      setStatus("Skipped", "saved");
      goNext(result.data.next_url);
    } else {
      setStatus(`Not skipped: ${result.data.detail || "no connection"} ${fieldErrors(result.data.errors)}`, "error");
    }
  });

  // --- keyboard ---------------------------------------------------------------------------------------

  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.isComposing) return;
    const target = event.target;
    if (anyDialogOpen()) return; // dialogs handle their own keys (Esc closes them)
    if (textFieldKeys(event, { leaveTo: submitButton, submitFrom: rationale, submit })) return;
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
  form.dataset.ready = "true"; // for people and tests: the keyboard works from here on
})();
