"""People's own answers: demonstrations written for a prompt and edits of an answer, stored as responses
with their lineage (who wrote it, when, what it was edited from and how far it moved), never attributed
to a checkpoint. The annotator's pages and the review step call these; one transaction each.

A demonstration project's work comes as writing tasks: a comparison of the prompt with the model answers
shown for reference (none, or up to the project's `reference_answers`), so the assignment engine serves
them as it serves comparisons (leases, overlap: how many people write an answer to each prompt)."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, QuerySet
from rapidfuzz.distance import Levenshtein

from feedback.models import (
    AnswerReview,
    Assignment,
    Comparison,
    ComparisonResponse,
    GenerationRun,
    Judgment,
    PolicyCheckpoint,
    Project,
    Prompt,
    Response,
)
from feedback.services.battles import style_fields
from feedback.services.generation import task_send
from feedback.services.review import may_review

REVIEW_REASON_MAX_CHARS = 2_000
# The people's answers that count: accepted, or written where no review was asked.
COUNTED_ANSWERS = (Response.Review.UNREVIEWED, Response.Review.ACCEPTED)
# Putting people's answers into comparisons (`inference.pairing.answers_comparisons_create`), on a worker.
ANSWERS_PAIR_TASK = "inference.answers_pair"


class AnswerInvalid(ValueError):
    """Bad input: `errors` maps each field to its messages."""

    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors
        super().__init__("; ".join(f"{key}: {' '.join(messages)}" for key, messages in errors.items()))


def answer_text_error(text: Any) -> str | None:
    """Why `text` cannot be an answer, or None. Text is stored exactly as written: nothing is trimmed
    or normalised, so the limit counts every character the person typed."""
    limit = settings.RANKWISE_ANSWER_MAX_CHARS
    if not isinstance(text, str):
        return "An answer is text."
    if "\x00" in text:
        return "An answer cannot contain the NUL character."
    if not text.strip():
        return "Write an answer: it is empty."
    if len(text) > limit:
        return f"An answer holds at most {limit:,} characters; this one has {len(text):,}."
    return None


def edit_text_error(original: str, text: Any) -> str | None:
    """Why `text` cannot be an edit of `original`, or None."""
    if (problem := answer_text_error(text)) is not None:
        return problem
    if text == original:
        return "The edit is the same as the answer it starts from: change it, or send no edit."
    return None


def human_answer_create(
    *,
    prompt: Prompt,
    author: Any,
    text: Any,
    edited_from: Response | None = None,
    assignment: Assignment | None = None,
    judgment: Judgment | None = None,
    submission_key: str = "",
    review_required: bool = False,
    review: str | None = None,
    time_spent_ms: int | None = None,
) -> Response:
    """Store a person's answer to `prompt`: a demonstration, or (with `edited_from`, an answer to the same
    prompt) an edit of it, with the Levenshtein distance between the two in characters.

    `assignment` is the writing task it answers, `judgment` the verdict after which it was edited, and
    `submission_key` the author's idempotency key (unique per author). With `review_required` it waits
    for a reviewer (`pending`) unless `review` says otherwise; without, it counts as it is."""
    errors: dict[str, list[str]] = {}
    if (problem := answer_text_error(text)) is not None:
        errors["text"] = [problem]
    if edited_from is not None and edited_from.prompt_id != prompt.pk:
        errors["edited_from"] = ["An edit starts from an answer to the same prompt."]
    if author is None or not getattr(author, "pk", None):
        errors["author"] = ["A person's answer needs its author."]
    if errors:
        raise AnswerInvalid(errors)
    with transaction.atomic():
        # Numbered per prompt among people's answers, in the order they were written. A no-key lock: the
        # inserts that reference the prompt (generation, comparisons) do not wait for it.
        Prompt.objects.select_for_update(no_key=True).filter(pk=prompt.pk).get()
        written = Response.objects.filter(prompt=prompt, source=Response.Source.HUMAN).count()
        return Response.objects.create(
            prompt=prompt,
            source=Response.Source.HUMAN,
            author=author,
            sample_index=written,
            text=text,
            edited_from=edited_from,
            edit_distance=Levenshtein.distance(edited_from.text, text) if edited_from is not None else None,
            assignment=assignment,
            judgment=judgment,
            submission_key=submission_key,
            review_required=review_required,
            review=review or (Response.Review.PENDING if review_required else Response.Review.UNREVIEWED),
            time_spent_ms=time_spent_ms,
            **style_fields(text),
        )


class AnswersPairingError(AnswerInvalid):
    """A request to compare people's answers that cannot be met: `errors` maps each field to its
    messages."""


def counted_answers() -> QuerySet[Response]:
    """People's answers that count: accepted, or written where no review was asked."""
    return Response.objects.filter(source=Response.Source.HUMAN, review__in=COUNTED_ANSWERS)


def answers_pairing_errors(
    *, project: Project, against: PolicyCheckpoint | None, seed: Any, source: Project | None = None
) -> dict[str, list[str]]:
    """Why people's answers to `source`'s prompts (default: the project's) cannot be compared in
    `project` against `against` (a checkpoint; None: each other) with `seed`, by field; empty when they
    can."""
    errors = _pairing_shape_errors(project=project, against=against, seed=seed)
    if errors:
        return errors
    source = source or project
    counted = counted_answers().filter(prompt__project=source, prompt__is_gold=False)
    if not counted.exists():
        errors["source"] = [
            f"No people's answer to the prompts of {source} counts yet (accepted, or written where no review "
            "was asked): nothing to compare."
        ]
    elif (
        against is not None
        and not Response.objects.filter(
            checkpoint=against, prompt_id__in=counted.values("prompt_id")
        ).exists()
    ):
        errors["against"] = [
            f"{against} has not answered the prompts of {source} that people answered: start a generation "
            f"run of it on {source} first."
        ]
    return errors


def _pairing_shape_errors(
    *, project: Project, against: PolicyCheckpoint | None, seed: Any
) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    if project.comparison_mode == Project.ComparisonMode.DEMONSTRATION:
        errors["project"] = [
            "A demonstration project takes written answers, not verdicts: compare them in a pairwise or "
            "ranking project."
        ]
    elif against is not None and project.responses_per_comparison != 2:
        errors["against"] = [
            "People's answers against a checkpoint are compared in pairs: this project compares "
            f"{project.responses_per_comparison} responses at a time."
        ]
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        errors["seed"] = ["An integer from 0 to 4294967295."]
    return errors


def answers_pairing_request(
    *, project: Project, source: Project | None, against: PolicyCheckpoint | None, seed: int
) -> None:
    """Ask a worker to put people's answers into the project's comparisons (see
    `inference.pairing.answers_comparisons_create`; `feedback` never imports it). Raises
    AnswersPairingError before sending anything when the request cannot be met."""
    if errors := answers_pairing_errors(project=project, against=against, seed=seed, source=source):
        raise AnswersPairingError(errors)
    task_send(
        ANSWERS_PAIR_TASK,
        kwargs={
            "project_id": project.pk,
            "source_id": (source or project).pk,
            "against_id": against.pk if against is not None else None,
            "seed": seed,
        },
    )


def writing_tasks_open(
    *, project: Project, prompt_ids: Sequence[int] | None = None, run: GenerationRun | None = None
) -> int:
    """Open a writing task for each of the project's prompts (or of `prompt_ids`) that has none yet, gold
    prompts aside; returns how many were opened. With `run`, each task shows up to the project's
    `reference_answers` of the run's answers to its prompt (distinct texts, in a random order seeded by
    the run and the prompt, so opening again gives the same tasks). A prompt the run has no answer for
    waits for one while the project asks for references."""
    if project.comparison_mode != Project.ComparisonMode.DEMONSTRATION:
        raise ValueError(f"{project} asks for verdicts, not written answers.")
    with transaction.atomic():
        # One opening per project at a time: two could each find a prompt without a task.
        Project.objects.select_for_update().filter(pk=project.pk).get()
        return _writing_tasks_open(project=project, prompt_ids=prompt_ids, run=run)


def _writing_tasks_open(
    *, project: Project, prompt_ids: Sequence[int] | None, run: GenerationRun | None
) -> int:
    prompts = Prompt.objects.filter(project=project, is_gold=False).exclude(comparisons__project=project)
    if prompt_ids is not None:
        prompts = prompts.filter(pk__in=list(prompt_ids))
    wanted = list(prompts.order_by("pk").values_list("pk", flat=True))
    references: dict[int, list[tuple[int, str]]] = {prompt_id: [] for prompt_id in wanted}
    if project.reference_answers and run is not None:
        rows = (
            Response.objects.filter(run=run, prompt_id__in=wanted)
            .order_by("prompt_id", "checkpoint_id", "sample_index")
            .values_list("prompt_id", "pk", "text")
        )
        for prompt_id, response_id, text in rows:
            if all(text != seen for _, seen in references[prompt_id]):
                references[prompt_id].append((response_id, text))
        for prompt_id, found in references.items():
            # Reproducible, not secret: the same run opens the same tasks.
            random.Random(f"writing:{run.seed}:{prompt_id}").shuffle(found)  # noqa: S311
            del found[project.reference_answers :]
    planned = [prompt_id for prompt_id in wanted if references[prompt_id] or not project.reference_answers]
    if not planned:
        return 0
    tasks = Comparison.objects.bulk_create(
        [
            Comparison(
                project=project,
                prompt_id=prompt_id,
                generation_run=run if references[prompt_id] else None,
                required_judgments=project.judgments_per_comparison,
                characters=sum(len(text) for _, text in references[prompt_id]),
            )
            for prompt_id in planned
        ]
    )
    ComparisonResponse.objects.bulk_create(
        [
            ComparisonResponse(comparison=task, response_id=response_id, position=position)
            for task, prompt_id in zip(tasks, planned, strict=True)
            for position, (response_id, _) in enumerate(references[prompt_id])
        ]
    )
    return len(tasks)


_TOKENS = re.compile(r"\s+|\w+|[^\w\s]")


def answer_diff(original: str, edited: str) -> list[tuple[str, str]]:
    """A word-level diff for people to read: (op, text) segments in order, op "equal", "delete" (only in
    the original) or "insert" (only in the edit), neighbours of one op merged. Text, never markup: pages
    show it with `textContent` or autoescaping. Levenshtein alignment over word, space and punctuation
    tokens (rapidfuzz, linear memory), so two answers of the maximum length diff in milliseconds."""
    before, after = _TOKENS.findall(original), _TOKENS.findall(edited)
    segments: list[tuple[str, str]] = []

    def add(op: str, tokens: list[str]) -> None:
        if not tokens:
            return
        text = "".join(tokens)
        if segments and segments[-1][0] == op:
            segments[-1] = (op, segments[-1][1] + text)
        else:
            segments.append((op, text))

    for opcode in Levenshtein.opcodes(before, after):
        if opcode.tag == "equal":
            add("equal", before[opcode.src_start : opcode.src_end])
        else:
            add("delete", before[opcode.src_start : opcode.src_end])
            add("insert", after[opcode.dest_start : opcode.dest_end])
    return segments


class AnswerReviewConflict(Exception):
    """The answer no longer waits for this decision (HTTP 409): another reviewer decided it first."""


class AnswerReviewForbidden(Exception):
    """The user may not review this answer (HTTP 403): not a reviewer of its project, or its writer."""


@dataclass(frozen=True)
class AnswerReviewResult:
    decision: AnswerReview
    replayed: bool  # a retry of a decision already stored under the same key


REVIEWABLE = (Response.Review.PENDING, Response.Review.UNREVIEWED)


def answer_review(
    *,
    reviewer: Any,
    answer_id: int,
    action: Any,
    submission_key: Any,
    reason: Any = "",
    text: Any = None,
) -> AnswerReviewResult:
    """A reviewer's decision on a person's answer, in one transaction under the answer's row lock: accept
    it, reject it (with a reason), or edit it (`text`: the reviewer's edit is stored as an answer of its
    own, edited from this one and accepted, and this one is marked revised). Only an answer waiting for
    review, or one that counts unreviewed, can be decided; the second of two racing reviewers gets
    AnswerReviewConflict. Idempotent by the reviewer's key: the same decision again returns the stored
    one, another decision under it raises AnswerInvalid."""
    errors: dict[str, list[str]] = {}
    if action not in AnswerReview.Action.values:
        errors["action"] = [f"One of: {', '.join(AnswerReview.Action.values)}."]
    reason = reason if isinstance(reason, str) else ""
    if action == AnswerReview.Action.REJECT and not reason.strip():
        errors["reason"] = ["Say why the answer is rejected: it is recorded with the decision."]
    if "\x00" in reason or len(reason) > REVIEW_REASON_MAX_CHARS:
        errors["reason"] = [f"At most {REVIEW_REASON_MAX_CHARS:,} characters, without NUL."]
    if not isinstance(submission_key, str) or not 8 <= len(submission_key) <= 64:
        errors["submission_key"] = ["A submission key is 8 to 64 characters."]
    if errors:
        raise AnswerInvalid(errors)
    with transaction.atomic():
        answer = (
            Response.objects.select_for_update(of=("self",))
            .select_related("prompt__project")
            .filter(pk=answer_id, source=Response.Source.HUMAN)
            .first()
        )
        if answer is None:
            raise Response.DoesNotExist(f"No person's answer {answer_id}.")
        if not may_review(user=reviewer, project=answer.prompt.project):
            raise AnswerReviewForbidden("You do not review this project.")
        if reviewer.pk in _writers(answer):
            raise AnswerReviewForbidden(
                "You wrote this answer (or what it was edited from): another reviewer decides."
            )
        earlier = AnswerReview.objects.filter(reviewer=reviewer, submission_key=submission_key).first()
        if earlier is not None:
            same = earlier.answer_id == answer.pk and earlier.action == action and earlier.reason == reason
            if same and action == AnswerReview.Action.EDIT:
                same = earlier.revision is not None and earlier.revision.text == text
            if not same:
                raise AnswerInvalid({"submission_key": ["This key was already used for another decision."]})
            return AnswerReviewResult(decision=earlier, replayed=True)
        if answer.review not in REVIEWABLE:
            raise AnswerReviewConflict(f"This answer was already {answer.get_review_display().lower()}.")
        revision = None
        if action == AnswerReview.Action.EDIT:
            if (problem := edit_text_error(answer.text, text)) is not None:
                raise AnswerInvalid({"text": [problem]})
            revision = human_answer_create(
                prompt=answer.prompt,
                author=reviewer,
                text=text,
                edited_from=answer,
                review=Response.Review.ACCEPTED,
            )
        previous = answer.review
        answer.review = {
            AnswerReview.Action.ACCEPT: Response.Review.ACCEPTED,
            AnswerReview.Action.REJECT: Response.Review.REJECTED,
            AnswerReview.Action.EDIT: Response.Review.REVISED,
        }[AnswerReview.Action(action)]
        answer.save(update_fields=["review"])
        if action == AnswerReview.Action.REJECT and answer.assignment_id is not None:
            # A rejected demonstration leaves its prompt one answer short: the task asks for one more.
            Comparison.objects.filter(assignments__pk=answer.assignment_id).update(
                required_judgments=F("required_judgments") + 1,
                status=Comparison.Status.OPEN,
                completed_at=None,
            )
        try:
            with transaction.atomic():
                decision = AnswerReview.objects.create(
                    answer=answer,
                    reviewer=reviewer,
                    action=action,
                    reason=reason,
                    revision=revision,
                    previous=previous,
                    submission_key=submission_key,
                )
        except IntegrityError:
            raise AnswerInvalid(
                {"submission_key": ["This key is being used for another decision; send a new key."]}
            ) from None
        return AnswerReviewResult(decision=decision, replayed=False)


def _writers(answer: Response) -> set[int]:
    """Who wrote the answer and the people's answers it was edited from."""
    writers = {answer.author_id} if answer.author_id else set()
    original = answer.edited_from_id
    while original is not None:
        author, source, original = (
            Response.objects.filter(pk=original).values_list("author_id", "source", "edited_from_id").get()
        )
        if source != Response.Source.HUMAN:
            break
        writers.add(author)
    return writers
