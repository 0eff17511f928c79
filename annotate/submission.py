"""What an annotator sends for a comparison, checked in two steps.

`submission_parse` checks the shape of a request body (types, sizes, NUL bytes) without touching the
database; `judgment_values` checks it against the comparison and its project (tie allowed? strength on
the scale? a full ranking of the shown responses? ratings on the rubric?) and returns the row's values
in their stored form. Both raise `SubmissionInvalid` with a message per field, which views turn into 400.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from feedback.models import RATIONALE_MAX_LENGTH, Judgment, JudgmentFlag, Project, position_label
from feedback.services.answers import answer_text_error
from feedback.verdicts import PAIRWISE_CHOICES as VERDICT_CHOICES
from feedback.verdicts import PAIRWISE_RANKINGS, ranking_error

SUBMISSION_KEY_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{7,63}")
SKIP_REASON_MAX_LENGTH = 500
# A day: longer is a clock or client error, not time spent judging.
TIME_SPENT_MAX_MS = 24 * 60 * 60 * 1000
PAIRWISE_CHOICES = frozenset(VERDICT_CHOICES)
FLAG_VALUES = frozenset(JudgmentFlag.values)
BODY_FIELDS = frozenset(
    {
        "submission_key",
        "choice",
        "ranking",
        "strength",
        "ratings",
        "rationale",
        "flags",
        "time_spent_ms",
        "edit",
    }
)


class SubmissionInvalid(Exception):
    """The submission is malformed or breaks the project's rules; `errors` maps each field to messages."""

    def __init__(self, errors: Mapping[str, str | list[str]]) -> None:
        self.errors = {
            name: [message] if isinstance(message, str) else list(message) for name, message in errors.items()
        }
        super().__init__("; ".join(f"{name}: {' '.join(messages)}" for name, messages in self.errors.items()))


@dataclass(frozen=True)
class JudgmentSubmission:
    """A judgment as the client states it: responses are named by their display label (A, B, …).

    Pairwise projects send `choice` (a, b, tie, both_bad) and, for a or b, `strength`; ranking projects
    send `ranking`, a rank per display position (1 is best; equal ranks are ties).
    """

    choice: str | None = None
    ranking: tuple[int, ...] | None = None
    strength: int | None = None
    ratings: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    rationale: str = ""
    flags: tuple[str, ...] = ()
    time_spent_ms: int | None = None
    # An improved answer, where the project takes edits: the label of the answer it starts from, and the text.
    edit_from: str | None = None
    edit_text: str | None = None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _text_error(value: str, *, limit: int) -> str | None:
    if "\x00" in value:
        return "Must not contain NUL bytes."
    if len(value) > limit:
        return f"At most {limit} characters (got {len(value)})."
    return None


def time_spent_error(value: Any) -> str | None:
    """Why `value` is not a time spent on the page (milliseconds, or None for not sent), or None."""
    if value is not None and (not _is_int(value) or not 0 <= value <= TIME_SPENT_MAX_MS):
        return f"Must be an integer number of milliseconds from 0 to {TIME_SPENT_MAX_MS}."
    return None


def submission_key_error(key: Any) -> str | None:
    if not isinstance(key, str) or not SUBMISSION_KEY_PATTERN.fullmatch(key):
        return "A submission key is 8 to 64 characters: letters, digits, '.', '_', ':' or '-'."
    return None


def submission_parse(body: Any) -> tuple[str, JudgmentSubmission]:
    """The submission key and the judgment of a decoded JSON body; refuses unknown fields."""
    if not isinstance(body, dict):
        raise SubmissionInvalid({"non_field_errors": "The body must be a JSON object."})
    errors: dict[str, str] = {}
    unknown = sorted(set(body) - BODY_FIELDS)
    if unknown:
        errors["non_field_errors"] = f"Unknown fields: {', '.join(map(str, unknown))}."

    key = body.get("submission_key")
    if (message := submission_key_error(key)) is not None:
        errors["submission_key"] = message

    choice = body.get("choice")
    if choice is not None and choice not in PAIRWISE_CHOICES:
        errors["choice"] = "Must be one of: a, b, tie, both_bad."

    ranking = body.get("ranking")
    if ranking is not None and (
        not isinstance(ranking, list)
        or not 2 <= len(ranking) <= 8
        or not all(_is_int(rank) for rank in ranking)
    ):
        errors["ranking"] = "Must be a list of 2 to 8 integer ranks, one per shown response."

    strength = body.get("strength")
    if strength is not None and not _is_int(strength):
        errors["strength"] = "Must be an integer or null."

    ratings = body.get("ratings", {}) or {}
    if not isinstance(ratings, dict) or not all(
        isinstance(label, str)
        and isinstance(scores, dict)
        and all(isinstance(axis, str) and _is_int(score) for axis, score in scores.items())
        for label, scores in ratings.items()
    ):
        errors["ratings"] = 'Must map a response label to {"<axis key>": integer score}.'

    rationale = body.get("rationale", "") or ""
    if not isinstance(rationale, str):
        errors["rationale"] = "Must be a string."
    elif (message := _text_error(rationale, limit=RATIONALE_MAX_LENGTH)) is not None:
        errors["rationale"] = message

    flags = body.get("flags", []) or []
    if not isinstance(flags, list) or not all(isinstance(flag, str) for flag in flags):
        errors["flags"] = "Must be a list of flag names."
    elif unknown_flags := sorted(set(flags) - FLAG_VALUES):
        errors["flags"] = f"Unknown flags {unknown_flags}; allowed: {', '.join(sorted(FLAG_VALUES))}."
    elif len(set(flags)) != len(flags):
        errors["flags"] = "A flag is given twice."

    time_spent_ms = body.get("time_spent_ms")
    if (message := time_spent_error(time_spent_ms)) is not None:
        errors["time_spent_ms"] = message

    edit = body.get("edit")
    if edit is not None and (
        not isinstance(edit, dict)
        or set(edit) != {"from", "text"}
        or not isinstance(edit["from"], str)
        or not isinstance(edit["text"], str)
    ):
        errors["edit"] = 'Send {"from": "<label of the answer it starts from>", "text": "…"}, or null.'

    if errors:
        raise SubmissionInvalid(errors)
    assert isinstance(key, str)  # checked by submission_key_error
    return key, JudgmentSubmission(
        edit_from=edit["from"] if edit else None,
        edit_text=edit["text"] if edit else None,
        choice=choice,
        ranking=tuple(ranking) if ranking is not None else None,
        strength=strength,
        ratings={label: dict(scores) for label, scores in ratings.items()},
        rationale=rationale,
        flags=tuple(flags),
        time_spent_ms=time_spent_ms,
    )


def edit_bases(choice: str | None, ranking: Sequence[int], labels: Sequence[str]) -> list[str]:
    """The labels an edit may start from after this verdict: the chosen answer, or any answer ranked
    first; after a tie or "both bad", any of them."""
    if choice in (Judgment.Choice.A, Judgment.Choice.B):
        return [choice.upper()]
    if choice in (Judgment.Choice.TIE, Judgment.Choice.BOTH_BAD) or not ranking:
        return list(labels)
    best = min(ranking)
    return [label for label, rank in zip(labels, ranking, strict=False) if rank == best]


def _edit_error(
    submission: JudgmentSubmission, *, project: Project, values: dict[str, Any], labels: list[str]
) -> str | None:
    editing = project.answer_editing
    if submission.edit_from is None:
        if editing == Project.AnswerEditing.BOTH_BAD and values.get("choice") == Judgment.Choice.BOTH_BAD:
            return "Both answers are bad: write a better one, starting from either, before you submit."
        return None
    if editing == Project.AnswerEditing.OFF:
        return "This project does not take edits of the answers."
    bases = edit_bases(values.get("choice"), values.get("ranking") or [], labels)
    if submission.edit_from not in bases:
        return f"An edit starts from the answer you chose ({', '.join(bases)}), not {submission.edit_from!r}."
    return None


def skip_reason_clean(reason: Any) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise SubmissionInvalid({"reason": "Say why you skip (a short reason)."})
    if (message := _text_error(reason, limit=SKIP_REASON_MAX_LENGTH)) is not None:
        raise SubmissionInvalid({"reason": message})
    return reason.strip()


def judgment_values(
    submission: JudgmentSubmission, *, project: Project, response_ids: Sequence[int]
) -> dict[str, Any]:
    """The stored form of a submission for a comparison whose responses, by position, are `response_ids`.

    Ratings come keyed by label and are stored keyed by response id; `ranking` is stored for every mode.
    `edit` is None or (the id of the response it starts from, the edited text), for the caller to store
    once it has checked that the text differs from the original (`edit_text_error`).
    """
    if project.comparison_mode == Project.ComparisonMode.DEMONSTRATION:
        raise SubmissionInvalid(
            {"non_field_errors": "This project asks for a written answer, not a verdict."}
        )
    errors: dict[str, str] = {}
    size = len(response_ids)
    values: dict[str, Any] = {"strength": None}
    strength_levels = len(project.strength_labels or [])

    if project.comparison_mode == Project.ComparisonMode.PAIRWISE:
        if submission.ranking is not None:
            errors["ranking"] = "A pairwise comparison takes a choice, not a ranking."
        choice = submission.choice
        if choice is None:
            errors["choice"] = "Choose A, B" + (", tie" if project.allows_tie else "") + " or both bad."
        elif choice == Judgment.Choice.TIE and not project.allows_tie:
            errors["choice"] = "This project does not allow ties."
        values["choice"] = choice
        values["ranking"] = PAIRWISE_RANKINGS.get(choice or "", [])
        if choice in (Judgment.Choice.A, Judgment.Choice.B) and strength_levels:
            if submission.strength is None:
                errors["strength"] = f"Say how much better: 1 to {strength_levels}."
            elif not 1 <= submission.strength <= strength_levels:
                errors["strength"] = f"Strength runs from 1 to {strength_levels}."
            values["strength"] = submission.strength
        elif submission.strength is not None:
            errors["strength"] = (
                "This project asks no strength."
                if not strength_levels
                else "Strength goes with a preference (A or B), not with a tie or both bad."
            )
    else:
        if submission.choice is not None:
            errors["choice"] = "A ranking comparison takes a ranking, not a choice."
        if submission.strength is not None:
            errors["strength"] = "A ranking comparison takes no strength."
        if submission.ranking is None:
            errors["ranking"] = f"Rank all {size} responses."
        elif (
            message := ranking_error(submission.ranking, size=size, allows_tie=project.allows_tie)
        ) is not None:
            errors["ranking"] = message
        values["choice"] = Judgment.Choice.RANKED
        values["ranking"] = list(submission.ranking or [])

    axes = {axis["key"]: axis["scale"] for axis in project.rating_rubric or []}
    labels = {position_label(position): response_id for position, response_id in enumerate(response_ids)}
    ratings: dict[str, dict[str, int]] = {}
    rating_errors: list[str] = []
    for label, scores in submission.ratings.items():
        if label not in labels:
            rating_errors.append(f"There is no response {label!r} here (shown: {', '.join(labels)}).")
            continue
        for axis, score in scores.items():
            if axis not in axes:
                rating_errors.append(f"{label}: {axis!r} is not on this project's rubric.")
            elif not axes[axis]["min"] <= score <= axes[axis]["max"]:
                rating_errors.append(f"{label}: {axis} runs from {axes[axis]['min']} to {axes[axis]['max']}.")
        if scores:
            ratings[str(labels[label])] = dict(sorted(scores.items()))
    if rating_errors:
        errors["ratings"] = " ".join(rating_errors)

    values["edit"] = None
    if (message := _edit_error(submission, project=project, values=values, labels=list(labels))) is not None:
        errors["edit"] = message
    elif submission.edit_from is not None:
        if (message := answer_text_error(submission.edit_text)) is not None:
            errors["edit"] = message
        values["edit"] = (labels[submission.edit_from], submission.edit_text)

    if errors:
        raise SubmissionInvalid(errors)
    values.update(
        ratings=ratings,
        rationale=submission.rationale,
        flags=sorted(submission.flags),
        time_spent_ms=submission.time_spent_ms,
    )
    return values
