"""People's answers and the projects' prompts as dataset rows, for the formats that are not made of
judgments alone (`ANSWER_FORMATS`, `PROMPT_FORMATS`).

- `prompt-completion` and `prompt-completion-conversational` (SFT): each counted answer of the kinds the
  export takes (`answers`): "written" (a demonstration), "edited" (a model answer a person improved);
  "chosen" adds the model answers judgments preferred (`feedback.export.rows.chosen_completion_rows`).
- `edits` and `edits-conversational` (reward models, DPO): each counted edit as chosen over the model answer it was edited from; with
  `edit_pairs="expanded"` also over the other answers of the comparison it was judged in, and the
  annotator's chosen answer over the ones they ranked below it (edited > chosen > rejected).
- `prompt-only` and `prompt-only-conversational` (GRPO, online DPO): each prompt of the projects.

An answer counts when, as of the snapshot, its project asked no review when it was written and no
reviewer rejected or replaced it, or a reviewer accepted it; a reviewer's edit counts in place of the
answer it revised, as the same kind. Gold prompts are never exported here, and the judgment filters that
apply to people (projects, dates, excluded and suspended annotators, gold accuracy, reviewed only) apply
to the authors of answers.

The snapshot: answers, review decisions and prompts at or below the export's `source_marks`, each a
high-water mark taken as the judgments' is (`feedback.export.snapshot`), so the same snapshot gives the
same rows whatever is written later.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Q

from feedback.export.options import ANSWER_FORMATS, EDIT_FORMATS, PROMPT_FORMATS, ExportOptions
from feedback.export.quality import ExportQuality
from feedback.export.rows import Row, split_of
from feedback.export.snapshot import table_high_water_mark, table_high_water_marks
from feedback.models import AnswerReview, ComparisonResponse, Judgment, Project, Prompt, Response
from feedback.prompting import completion_prompt_render
from feedback.verdicts import PAIRWISE_RANKINGS

CHUNK_SIZE = 2_000


def source_marks_now(options: ExportOptions) -> dict[str, int]:
    """What a new export of `options` reads besides judgments, as of now ({} for judgment formats).
    Call it outside other transactions (see `table_high_water_mark`)."""
    if options.format in ANSWER_FORMATS:
        answers, reviews = table_high_water_marks(Response, AnswerReview)
        return {"answers": answers, "answer_reviews": reviews}
    if options.format in PROMPT_FORMATS:
        return {"prompts": table_high_water_mark(Prompt)}
    return {}


@dataclass
class SourceStats:
    """What the card says of the rows' sources."""

    answers: dict[str, int] = field(default_factory=lambda: {"written": 0, "edited": 0})
    authors: set[int] = field(default_factory=set)
    prompts: int = 0
    left_out: dict[str, int] = field(default_factory=dict)  # answers not counted, by why


@dataclass(frozen=True, slots=True)
class _Answer:
    id: int
    prompt_pk: int
    project_id: int
    author_id: int
    text: str
    edited_from_id: int | None
    judgment_id: int | None
    review_required: bool


def _prompt_values(prompt: Mapping[str, Any], options: ExportOptions, templates: dict[int, str]) -> Any:
    if options.format.endswith("-conversational"):
        return [
            {"role": message["role"], "content": message["content"]} for message in prompt["conversation"]
        ]
    return completion_prompt_render(
        template=templates[prompt["project_id"]], conversation=prompt["conversation"]
    )


def prompt_row_groups(
    options: ExportOptions, *, marks: dict[str, int], stats: SourceStats | None = None
) -> Iterator[tuple[str, list[Row]]]:
    """(split, rows) of the prompt-only formats: every non-gold prompt of the exported projects at or
    below the mark, in id order."""
    prompts = Prompt.objects.filter(pk__lte=marks.get("prompts", 0), is_gold=False)
    if options.projects:
        prompts = prompts.filter(project__slug__in=options.projects)
    if options.since:
        prompts = prompts.filter(created_at__gte=options.since)
    if options.until:
        prompts = prompts.filter(created_at__lt=options.until)
    templates = dict(Project.objects.values_list("pk", "completion_template"))
    for prompt in (
        prompts.order_by("pk").values("project_id", "conversation", "content_hash").iterator(CHUNK_SIZE)
    ):
        if stats is not None:
            stats.prompts += 1
        yield (
            split_of(prompt["content_hash"], options),
            [{"prompt": _prompt_values(prompt, options, templates)}],
        )


def answer_row_groups(
    options: ExportOptions,
    *,
    marks: dict[str, int],
    quality: ExportQuality,
    stats: SourceStats | None = None,
) -> Iterator[tuple[str, list[Row]]]:
    """(split, rows) of each counted answer of the answer formats, in answer id order."""
    stats = stats if stats is not None else SourceStats()
    answers = _answers(marks, options)
    decisions = _decisions(marks)
    revisions = set(
        AnswerReview.objects.filter(
            pk__lte=marks.get("answer_reviews", 0), revision__isnull=False
        ).values_list("revision_id", flat=True)
    )
    selected = set(_selected(options, marks, quality))
    originals = {
        pk: (source, text)
        for pk, source, text in Response.objects.filter(
            pk__in={answer.edited_from_id for answer in answers.values() if answer.edited_from_id}
        )
        .exclude(source=Response.Source.HUMAN)
        .values_list("pk", "source", "text")
    }
    prompts = {
        row["pk"]: row
        for row in Prompt.objects.filter(pk__in={answer.prompt_pk for answer in answers.values()}).values(
            "pk", "project_id", "conversation", "content_hash"
        )
    }
    templates = dict(Project.objects.values_list("pk", "completion_template"))
    # An edit made after a verdict goes where its comparison goes: not out of one a reviewer retired.
    verdicts = {
        pk: (comparison_id, choice, ranking)
        for pk, comparison_id, choice, ranking in Judgment.objects.filter(
            pk__in={answer.judgment_id for answer in answers.values() if answer.judgment_id}
        ).values_list("pk", "comparison_id", "choice", "ranking")
    }
    judged = {pk: comparison_id for pk, (comparison_id, _, _) in verdicts.items()}
    # The expanded pairs read what each edit's comparison showed: one query for all of them.
    shown: dict[int, list[tuple[int, str]]] = {}
    if options.format in EDIT_FORMATS and options.edit_pairs == "expanded":
        for comparison_id, response_id, text in (
            ComparisonResponse.objects.filter(comparison_id__in=set(judged.values()))
            .order_by("comparison_id", "position")
            .values_list("comparison_id", "response_id", "response__text")
            .iterator(chunk_size=CHUNK_SIZE)
        ):
            shown.setdefault(comparison_id, []).append((response_id, text))
    for answer in answers.values():
        if answer.id not in selected:
            continue
        root = _root(answer, answers)
        kind = "edited" if root.edited_from_id in originals else "written"
        if kind not in (("edited",) if options.format in EDIT_FORMATS else options.answers):
            continue
        why = _left_out(answer, decisions, revisions, options)
        if (
            why is None
            and root.judgment_id in judged
            and quality.reviews.get(judged[root.judgment_id], 0) is None
        ):
            why = "its comparison was retired by a reviewer"
        if why is not None:
            stats.left_out[why] = stats.left_out.get(why, 0) + 1
            continue
        prompt = prompts[answer.prompt_pk]
        if options.format in EDIT_FORMATS:
            rows = _edit_rows(answer, root, originals, prompt, options, templates, verdicts, shown)
        else:
            rows = [_completion_row(answer.text, prompt, options, templates)]
        stats.answers[kind] += 1
        stats.authors.add(answer.author_id)
        yield split_of(prompt["content_hash"], options), rows


def _answers(marks: dict[str, int], options: ExportOptions) -> dict[int, _Answer]:
    """Every person's answer of the exported projects at or below the mark (the lineage of a counted one
    may run through any; an answer and the edits of it share their prompt, so their project)."""
    answers = Response.objects.filter(source=Response.Source.HUMAN, pk__lte=marks.get("answers", 0))
    if options.projects:
        answers = answers.filter(prompt__project__slug__in=options.projects)
    rows = answers.order_by("pk").values_list(
        "pk",
        "prompt_id",
        "prompt__project_id",
        "author_id",
        "text",
        "edited_from_id",
        "judgment_id",
        "review_required",
    )
    return {row[0]: _Answer(*row) for row in rows.iterator(CHUNK_SIZE)}


def _decisions(marks: dict[str, int]) -> dict[int, str]:
    """Answer id → the last review decision's action, as of the mark."""
    last: dict[int, str] = {}
    for answer_id, action in (
        AnswerReview.objects.filter(pk__lte=marks.get("answer_reviews", 0))
        .order_by("pk")
        .values_list("answer_id", "action")
    ):
        last[answer_id] = action
    return last


def _selected(options: ExportOptions, marks: dict[str, int], quality: ExportQuality) -> Any:
    """The ids of the answers the people filters keep."""
    condition = Q(source=Response.Source.HUMAN, pk__lte=marks.get("answers", 0), prompt__is_gold=False)
    if options.projects:
        condition &= Q(prompt__project__slug__in=options.projects)
    if options.since:
        condition &= Q(created_at__gte=options.since)
    if options.until:
        condition &= Q(created_at__lt=options.until)
    if options.exclude_annotators:
        condition &= ~Q(author__username__in=options.exclude_annotators)
    if options.exclude_suspended:
        for project_id, annotators in sorted(quality.suspended.items()):
            if annotators:
                condition &= ~Q(prompt__project_id=project_id, author_id__in=sorted(annotators))
    if options.min_gold_accuracy > 0:
        accurate = Q(pk__lt=0)
        for (project_id, annotator), (answered, correct) in sorted(quality.gold.items()):
            if answered and correct / answered >= options.min_gold_accuracy:
                accurate |= Q(prompt__project_id=project_id, author_id=annotator)
        condition &= accurate
    return Response.objects.filter(condition).values_list("pk", flat=True).iterator(CHUNK_SIZE)


def _root(answer: _Answer, answers: dict[int, _Answer]) -> _Answer:
    """The answer a chain of reviewers' edits started from (itself when it is no reviewer's edit)."""
    seen = {answer.id}
    while answer.edited_from_id in answers and answer.edited_from_id not in seen:
        answer = answers[answer.edited_from_id]
        seen.add(answer.id)
    return answer


def _left_out(
    answer: _Answer, decisions: dict[int, str], revisions: set[int], options: ExportOptions
) -> str | None:
    """Why the answer does not count as of the snapshot, or None when it counts."""
    action = decisions.get(answer.id)
    if action == AnswerReview.Action.REJECT:
        return "rejected"
    if action == AnswerReview.Action.EDIT:
        return "replaced by a reviewer's edit"
    accepted = action == AnswerReview.Action.ACCEPT or answer.id in revisions
    if answer.review_required and not accepted:
        return "waiting for review"
    if options.reviewed_only and not accepted:
        return "not reviewed"
    return None


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def _standard(options: ExportOptions) -> ExportOptions:
    """The same options in the standard (text) format."""
    return dataclasses.replace(options, format="edits")


def _completion_row(
    text: str, prompt: Mapping[str, Any], options: ExportOptions, templates: dict[int, str]
) -> Row:
    if options.format == "prompt-completion-conversational":
        return {
            "prompt": _prompt_values(prompt, options, templates),
            "completion": [{"role": "assistant", "content": text}],
        }
    return {"prompt": _prompt_values(prompt, options, templates), "completion": text}


def _edit_rows(
    answer: _Answer,
    root: _Answer,
    originals: dict[int, tuple[str, str]],
    prompt: Mapping[str, Any],
    options: ExportOptions,
    templates: dict[int, str],
    verdicts: Mapping[int, tuple[int, str, list[int]]],
    shown_by_comparison: Mapping[int, list[tuple[int, str]]],
) -> list[Row]:
    """The edit over the answer it was edited from; expanded, also over the comparison's other answers,
    and the annotator's chosen answer over the ones they ranked below it (`verdicts`: judgment →
    (comparison, choice, ranking); `shown_by_comparison`: comparison → its (response, text) in display
    order)."""
    assert root.edited_from_id is not None
    text = _prompt_values(prompt, options, templates)
    original = originals[root.edited_from_id][1]
    if options.format == "edits-conversational":
        # TRL's conversational preference shape: the prompt's messages, each answer one assistant turn.
        return [
            {"prompt": text, "chosen": _assistant(row["chosen"]), "rejected": _assistant(row["rejected"])}
            for row in _edit_rows(
                answer, root, originals, prompt, _standard(options), templates, verdicts, shown_by_comparison
            )
        ]
    rows: list[Row] = [{"prompt": text, "chosen": answer.text, "rejected": original}]
    if options.edit_pairs != "expanded" or root.judgment_id is None:
        return rows
    verdict = verdicts.get(root.judgment_id)
    if verdict is None:
        return rows
    comparison_id, choice, ranking = verdict
    shown = shown_by_comparison.get(comparison_id, [])
    ranking = ranking or PAIRWISE_RANKINGS.get(choice, [])
    positions = {response_id: position for position, (response_id, _) in enumerate(shown)}
    start = positions.get(root.edited_from_id)
    if start is None or len(ranking) != len(shown):
        return rows
    for position, (_, other) in enumerate(shown):
        if position == start:
            continue
        rows.append({"prompt": text, "chosen": answer.text, "rejected": other})
    if choice not in ("tie", "both_bad"):
        rows += [
            {"prompt": text, "chosen": original, "rejected": other}
            for position, (_, other) in enumerate(shown)
            if ranking[position] > ranking[start]
        ]
    return rows
