"""Gold items: comparisons whose verdict an admin knows, served to annotators among the others to grade
them. One service behind the admin (mark a comparison, import a file), the REST API and the command.

A gold comparison has no required judgments (every annotator may answer it once), stays open, is left
out of progress and of every preference export, and carries its `GoldVerdict`, stored by response id
(see `feedback.quality.gold`). A file of gold items is JSON Lines: a prompt (as a prompt import line),
the responses, the expected verdict by label (A is the first response of the line), and optionally an
explanation. A file with any bad line stores nothing, and every bad line is listed with its number.
"""

from __future__ import annotations

import hashlib
import hmac
import random
from dataclasses import dataclass
from typing import IO, Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction

from feedback.models import (
    Comparison,
    ComparisonResponse,
    GoldVerdict,
    Project,
    Prompt,
    Response,
    canonical_json,
)
from feedback.quality.gold import VerdictInvalid, verdict_from_labels
from feedback.services.prompts import (
    MAX_REPORTED_ERRORS,
    RECORD_FIELDS,
    LineError,
    ParsedPrompt,
    PromptImportError,
    PromptLineError,
    check_text,
    json_type,
    jsonl_records,
    prompt_from_record,
    records_checked,
)

GOLD_FIELDS = ("responses", "expected", "explanation")
RESPONSE_MAX_CHARS = 50_000
EXPLANATION_MAX_CHARS = 5_000


def _display_positions(item: ParsedGold) -> list[int]:
    """A display position per response of the line, shuffled by a generator keyed with the server's
    secret and the item's text: reproducible (a re-import, a test), yet no annotator can work out from
    what they see which response the file listed first (where the expected answer often is)."""
    key = hmac.new(
        settings.SECRET_KEY.encode(),
        canonical_json([item.prompt.content_hash, item.responses]).encode(),
        hashlib.sha256,
    ).digest()
    positions = list(range(len(item.responses)))
    random.Random(key).shuffle(positions)  # noqa: S311 (the seed is the secret part)
    return positions


class GoldInvalid(ValueError):
    """A gold verdict or item refused; the message says why, by label."""


@dataclass(frozen=True)
class ParsedGold:
    line: int
    prompt: ParsedPrompt
    responses: list[str]
    expected: Any
    explanation: str


@dataclass
class GoldImportReport:
    created: int = 0
    unchanged: int = 0

    def summary(self) -> str:
        return f"{self.created} gold item(s) imported, {self.unchanged} already there"


def _gold_from_record(record: dict[str, Any], *, line: int, project: Project, max_chars: int) -> ParsedGold:
    unknown = sorted(set(record) - set(RECORD_FIELDS) - set(GOLD_FIELDS))
    if unknown:
        allowed = ", ".join((*RECORD_FIELDS, *GOLD_FIELDS))
        raise LineError(f"unknown field(s) {', '.join(unknown)}; allowed: {allowed}")
    prompt = prompt_from_record(
        {name: value for name, value in record.items() if name in RECORD_FIELDS},
        line=line,
        max_chars=max_chars,
    )
    responses = record.get("responses")
    size = project.responses_per_comparison
    if not isinstance(responses, list) or not all(isinstance(text, str) for text in responses):
        raise LineError(f"responses must be a list of {size} strings, got {json_type(responses)}")
    if len(responses) != size:
        raise LineError(f"responses: this project compares {size} responses, the line gives {len(responses)}")
    for number, text in enumerate(responses, start=1):
        check_text(text, what=f"response {number}")
        if len(text) > RESPONSE_MAX_CHARS:
            raise LineError(f"response {number} is over {RESPONSE_MAX_CHARS} characters")
    if len(set(responses)) != len(responses):
        raise LineError("two responses are the same text: nothing to choose between")
    if "expected" not in record:
        raise LineError("missing the expected verdict ('expected')")
    try:
        verdict_from_labels(
            record["expected"],
            response_ids=range(size),
            is_ranking=project.comparison_mode == Project.ComparisonMode.RANKING,
            allows_tie=project.allows_tie,
        )
    except VerdictInvalid as error:
        raise LineError(f"expected: {error}") from None
    explanation = record.get("explanation", "")
    if not isinstance(explanation, str):
        raise LineError(f"explanation must be a string, got {json_type(explanation)}")
    if explanation:
        check_text(explanation, what="explanation")
    if len(explanation) > EXPLANATION_MAX_CHARS:
        raise LineError(f"explanation is over {EXPLANATION_MAX_CHARS} characters")
    return ParsedGold(
        line=line, prompt=prompt, responses=responses, expected=record["expected"], explanation=explanation
    )


def gold_parse(*, project: Project, source: IO[bytes], max_chars: int) -> list[ParsedGold]:
    """Read and check a whole gold file for `project`. Raises `PromptImportError` listing the bad lines."""
    return records_checked(
        jsonl_records(source),
        lambda record, line: _gold_from_record(record, line=line, project=project, max_chars=max_chars),
        external_id=lambda item: item.prompt.external_id,
        what="gold items",
    )


@transaction.atomic
def gold_import(
    *, project: Project, source: IO[bytes], actor: User | None = None, max_chars: int | None = None
) -> GoldImportReport:
    """Import a JSON Lines file of gold items into `project`, in one transaction: all lines or none.

    Each line becomes a gold prompt (left out of generation runs), its responses (source "imported"), a
    gold comparison with the responses in a random display order, and the verdict. Re-importing is
    idempotent by id: a line whose id is already a gold prompt of the project with the same text is
    skipped; an id already used by anything else is a bad line. Raises `PromptImportError`.
    """
    if project.comparison_mode == Project.ComparisonMode.DEMONSTRATION:
        raise PromptImportError(
            [
                PromptLineError(
                    line=1,
                    message="a demonstration project has no verdicts to check: import gold items into a "
                    "pairwise or ranking project",
                )
            ]
        )
    items = gold_parse(
        project=project, source=source, max_chars=max_chars or settings.RANKWISE_PROMPT_MAX_CHARS
    )
    Project.objects.select_for_update().only("pk").get(pk=project.pk)
    stored = {
        external_id: (content_hash, is_gold)
        for external_id, content_hash, is_gold in Prompt.objects.filter(
            project=project, external_id__in=[item.prompt.external_id for item in items]
        ).values_list("external_id", "content_hash", "is_gold")
    }
    errors = [
        PromptLineError(
            line=item.line,
            message=f"id {item.prompt.external_id!r} is already a prompt of this project with other text"
            if stored[item.prompt.external_id][1]
            else f"id {item.prompt.external_id!r} is already an ordinary prompt of this project",
        )
        for item in items
        if item.prompt.external_id in stored
        and stored[item.prompt.external_id] != (item.prompt.content_hash, True)
    ]
    if errors:
        raise PromptImportError(errors[:MAX_REPORTED_ERRORS], truncated=len(errors) > MAX_REPORTED_ERRORS)
    new = [item for item in items if item.prompt.external_id not in stored]
    for item in new:
        _gold_item_create(project=project, item=item, actor=actor)
    return GoldImportReport(created=len(new), unchanged=len(items) - len(new))


def _gold_item_create(*, project: Project, item: ParsedGold, actor: User | None) -> Comparison:
    prompt = Prompt.objects.create(
        project=project,
        external_id=item.prompt.external_id,
        conversation=item.prompt.conversation,
        category=item.prompt.category,
        metadata=item.prompt.metadata,
        content_hash=item.prompt.content_hash,
        is_gold=True,
    )
    responses = Response.objects.bulk_create(
        Response(prompt=prompt, source=Response.Source.IMPORTED, sample_index=index, text=text)
        for index, text in enumerate(item.responses)
    )
    comparison = Comparison.objects.create(
        project=project,
        prompt=prompt,
        is_gold=True,
        required_judgments=None,
        characters=sum(len(text) for text in item.responses),
    )
    positions = _display_positions(item)
    ComparisonResponse.objects.bulk_create(
        ComparisonResponse(comparison=comparison, response=response, position=position)
        for response, position in zip(responses, positions, strict=True)
    )
    verdict = verdict_from_labels(
        item.expected,
        response_ids=[response.pk for response in responses],
        is_ranking=project.comparison_mode == Project.ComparisonMode.RANKING,
        allows_tie=project.allows_tie,
    )
    GoldVerdict.objects.create(
        comparison=comparison, verdict=verdict, explanation=item.explanation, created_by=actor
    )
    return comparison


@transaction.atomic
def comparison_mark_gold(
    *, comparison_id: int, expected: Any, explanation: str = "", actor: User | None = None
) -> GoldVerdict:
    """Make a comparison gold with the verdict `expected`, written by display label (A is the response
    shown first), or change the verdict of one that is gold already.

    A comparison becomes gold whatever it has been through: it is reopened with no overlap limit, leaves
    progress and preference exports, and the judgments it already has count as gold answers. Raises
    `GoldInvalid` for a verdict that cannot be read or a retired comparison.
    """
    comparison = Comparison.objects.select_for_update().select_related("project").get(pk=comparison_id)
    if comparison.status == Comparison.Status.RETIRED:
        raise GoldInvalid("A retired comparison cannot become gold: it is served to nobody.")
    project = comparison.project
    response_ids = list(comparison.entries.order_by("position").values_list("response_id", flat=True))
    if not isinstance(explanation, str) or "\x00" in explanation or len(explanation) > EXPLANATION_MAX_CHARS:
        raise GoldInvalid(f"The explanation must be text of at most {EXPLANATION_MAX_CHARS} characters.")
    try:
        verdict = verdict_from_labels(
            expected,
            response_ids=response_ids,
            is_ranking=project.comparison_mode == Project.ComparisonMode.RANKING,
            allows_tie=project.allows_tie,
        )
    except VerdictInvalid as error:
        raise GoldInvalid(str(error)) from None
    if not comparison.is_gold:
        Comparison.objects.filter(pk=comparison.pk).update(
            is_gold=True, required_judgments=None, status=Comparison.Status.OPEN, completed_at=None
        )
    gold, _ = GoldVerdict.objects.update_or_create(
        comparison=comparison,
        defaults={"verdict": verdict, "explanation": explanation},
        create_defaults={"verdict": verdict, "explanation": explanation, "created_by": actor},
    )
    return gold


__all__ = [
    "GoldImportReport",
    "GoldInvalid",
    "comparison_mark_gold",
    "gold_import",
    "gold_parse",
]
