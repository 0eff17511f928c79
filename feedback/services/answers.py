"""People's own answers: demonstrations written for a prompt and edits of an answer, stored as responses
with their lineage (who wrote it, when, what it was edited from and how far it moved), never attributed
to a checkpoint. The annotator's pages and the review step call these; one transaction each."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction
from rapidfuzz.distance import Levenshtein

from feedback.models import Prompt, Response
from feedback.services.battles import style_fields


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


def human_answer_create(
    *, prompt: Prompt, author: Any, text: Any, edited_from: Response | None = None
) -> Response:
    """Store a person's answer to `prompt`: a demonstration, or (with `edited_from`, an answer to the same
    prompt) an edit of it, with the Levenshtein distance between the two in characters."""
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
        # Numbered per prompt among people's answers, in the order they were written.
        Prompt.objects.select_for_update().filter(pk=prompt.pk).get()
        written = Response.objects.filter(prompt=prompt, source=Response.Source.HUMAN).count()
        return Response.objects.create(
            prompt=prompt,
            source=Response.Source.HUMAN,
            author=author,
            sample_index=written,
            text=text,
            edited_from=edited_from,
            edit_distance=Levenshtein.distance(edited_from.text, text) if edited_from is not None else None,
            **style_fields(text),
        )
