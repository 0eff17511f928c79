// Ranking by keyboard, for the workspace and the review page: labels typed best first take the next
// rank, "=" ties the next one with the one ranked just before, Backspace undoes. The <select>s stay the
// source of truth (they can be set by hand too); the summary line reads them. Never builds HTML.
"use strict";

window.rankwiseRanking = function (selects, labels, summary) {
  let history = []; // labels in the order they were ranked, for Backspace
  let tieNext = false;

  function ranks() {
    const result = {};
    selects.forEach((select) => {
      if (select.value) result[select.dataset.label] = Number(select.value);
    });
    return result;
  }

  function show() {
    if (!summary) return;
    const current = ranks();
    const byRank = {};
    Object.entries(current).forEach(([label, rank]) => (byRank[rank] = (byRank[rank] || []).concat(label)));
    const parts = Object.keys(byRank)
      .map(Number)
      .sort((x, y) => x - y)
      .map((rank) => `${rank}. ${byRank[rank].sort().join(" = ")}`);
    const missing = labels.filter((label) => !(label in current));
    summary.textContent =
      (parts.length ? parts.join("   ") : "Not ranked yet") +
      (missing.length && parts.length ? `   (still to rank: ${missing.join(", ")})` : "") +
      (tieNext ? "   (next one ties)" : "");
  }

  function fromSelects() {
    history = history.filter((label) => ranks()[label] !== undefined);
    show();
  }

  function next(label) {
    const current = ranks();
    if (label in current) return;
    const values = Object.values(current);
    const top = values.length ? Math.max(...values) : 0;
    const rank = tieNext && top > 0 ? top : top + 1;
    tieNext = false;
    selects.find((select) => select.dataset.label === label).value = String(rank);
    history.push(label);
    show();
  }

  function tie() {
    tieNext = true;
    show();
  }

  function undo() {
    const label = history.pop();
    if (label) selects.find((select) => select.dataset.label === label).value = "";
    tieNext = false;
    show();
  }

  return { ranks, show, fromSelects, next, tie, undo };
};
