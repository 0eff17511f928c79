// The review page: keyboard for everything, and a decision recorded once whatever the network does (one
// key per decision, so a retry is answered as a replay). Never builds HTML from data.
"use strict";

(function () {
  const { anyDialogOpen, newKey, postJson, fieldErrors, lockForm, textFieldKeys } = window.rankwise;
  const config = JSON.parse(document.getElementById("review-config").textContent);
  const form = document.getElementById("review");
  const isRanking = config.mode === "ranking";
  const RETRY_DELAYS_MS = [1000, 2000, 4000, 8000, 15000, 30000];
  let pending = null;
  let finished = !config.pending;

  // --- the keys every review page has ----------------------------------------------------------------

  window.rankwise.wireDialogs();
  const { go, pageKey } = window.rankwise.reviewPageKeys(config, form, () => (finished = true));
  if (!form) return; // already decided: only the page keys

  const setStatus = window.rankwise.statusLine(document.getElementById("status"));
  const submitButton = document.getElementById("submit-button");
  const reason = document.getElementById("reason");
  const csrfToken = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  const ranking = isRanking
    ? window.rankwiseRanking(
        Array.from(form.querySelectorAll(".rank-control select")),
        config.labels,
        document.getElementById("ranking-summary"),
      )
    : null;

  function radio(name, value) {
    return form.querySelector(`input[name="${name}"][value="${value}"]`);
  }

  function checkedValue(name) {
    const input = form.querySelector(`input[name="${name}"]:checked`);
    return input ? input.value : null;
  }

  // The verdict's fields count only for a final verdict; strength only for A or B.
  function sync() {
    const deciding = checkedValue("action") === "decide";
    document.getElementById("verdict-fields").disabled = !deciding;
    const strength = document.getElementById("strength");
    if (strength) {
      const choice = checkedValue("choice");
      strength.disabled = !deciding || !(choice === "a" || choice === "b");
      if (strength.disabled) strength.querySelectorAll("input").forEach((input) => (input.checked = false));
    }
  }

  function setAction(action) {
    radio("action", action).checked = true;
    sync();
  }

  function choose(value) {
    const input = radio("choice", value);
    if (!input) return;
    setAction("decide");
    input.checked = true;
    input.focus();
    sync();
  }

  form.addEventListener("change", (event) => {
    if (event.target.name === "choice" || event.target.name === "action") sync();
    if (ranking && event.target.matches(".rank-control select")) ranking.fromSelects();
  });

  // --- recording --------------------------------------------------------------------------------------

  function collect() {
    const action = checkedValue("action");
    const body = { submission_key: newKey(), action, reason: reason.value.trim() };
    if (action !== "decide") {
      if (!body.reason) return { error: "Write why first (press /): the reason is recorded with the decision." };
      return { body };
    }
    if (isRanking) {
      const ranks = ranking.ranks();
      const missing = config.labels.filter((label) => !(label in ranks));
      if (missing.length) return { error: `Rank every response first (still to rank: ${missing.join(", ")}).` };
      body.verdict = { ranking: config.labels.map((label) => ranks[label]) };
    } else {
      const choice = checkedValue("choice");
      if (!choice) return { error: "Choose the verdict first: A, B" + (config.allowsTie ? ", tie" : "") + " or both bad." };
      body.verdict = { choice };
      const strength = checkedValue("strength");
      if (strength) body.verdict.strength = Number(strength);
    }
    return { body };
  }

  function lock(locked) {
    lockForm(form, locked);
    if (!locked) sync();
  }

  async function send(attempt) {
    const { status, data } = await postJson(config.decisionUrl, pending, csrfToken);
    if (status === 200 || status === 201) {
      setStatus("Recorded", "saved");
      setTimeout(() => go(data.next_url || config.nextUrl), 400);
      return;
    }
    if (status === 400) {
      pending = null;
      lock(false);
      setStatus(`Not recorded: ${data.detail || "the server refused it."} ${fieldErrors(data.errors)}`, "error");
      return;
    }
    if (status === 401 || status === 403 || status === 404 || status === 409 || status === 422) {
      finished = true;
      setStatus(`${data.detail || "This decision cannot be recorded."} Press n for the next item.`, "error");
      return;
    }
    const delay = RETRY_DELAYS_MS[Math.min(attempt, RETRY_DELAYS_MS.length - 1)];
    setStatus(`Not recorded yet: ${status ? "the server answered " + status : "no connection"}. Retrying in ${Math.round(delay / 1000)} s…`, "retrying");
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
    setStatus("Recording…", "saving");
    send(0);
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });

  // --- keyboard ---------------------------------------------------------------------------------------

  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.isComposing || anyDialogOpen()) return;
    const target = event.target;
    if (textFieldKeys(event, { leaveTo: submitButton, submitFrom: reason, submit })) return;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const key = event.key;
    if (pending || finished) {
      if (finished && (key === "n" || key === "u")) pageKey(key);
      return;
    }
    let handled = true;
    if (pageKey(key)) {
      // help, next, queue
    } else if (key === "/") {
      reason.focus();
    } else if (key === "s" || key === "r") {
      setAction(key === "s" ? "send_back" : "retire");
      reason.focus();
    } else if (key === "Enter" && !(target.matches && target.matches("button, summary, a"))) {
      submit();
    } else if (isRanking && key === "=") {
      setAction("decide");
      ranking.tie();
    } else if (isRanking && key === "Backspace") {
      ranking.undo();
    } else if (isRanking && key.length === 1 && config.labels.includes(key.toUpperCase())) {
      setAction("decide");
      ranking.next(key.toUpperCase());
    } else if (!isRanking && (key === "a" || key === "b" || key === "x" || (key === "t" && config.allowsTie))) {
      choose({ a: "a", b: "b", t: "tie", x: "both_bad" }[key]);
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
    if (pending && !finished) event.preventDefault();
  });
  sync();
  if (ranking) ranking.show();
  form.dataset.ready = "true";
})();
