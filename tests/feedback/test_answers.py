"""People's answers as responses with their lineage: author, original, edit distance; never a
checkpoint's; bad text refused with a message and nothing stored; the database holds the rules too."""

from __future__ import annotations

import itertools

import pytest
from django.db import IntegrityError, transaction

from feedback.models import Response
from feedback.services.answers import AnswerInvalid, human_answer_create
from tests.factories import AnnotatorFactory, PromptFactory, ResponseFactory

pytestmark = pytest.mark.django_db


def test_a_demonstration_and_an_edit_keep_their_lineage():
    prompt = PromptFactory()
    writer, editor = AnnotatorFactory(), AnnotatorFactory()
    written = human_answer_create(prompt=prompt, author=writer, text="kitten\n- one **item**\n")
    assert (written.source, written.author, written.checkpoint, written.edited_from) == (
        "human",
        writer,
        None,
        None,
    )
    assert written.edit_distance is None
    assert (written.characters, written.markdown_list_items, written.markdown_bold) == (22, 1, 1)
    edited = human_answer_create(
        prompt=prompt, author=editor, text="sitting\n- one **item**\n", edited_from=written
    )
    assert (edited.edited_from, edited.edit_distance, edited.sample_index) == (written, 3, 1)
    # A model's answer can be edited too; the edit is the person's, not the checkpoint's.
    model = ResponseFactory(prompt=prompt, text="The capital is Paris")
    fixed = human_answer_create(
        prompt=prompt, author=editor, text="The capital of France is Paris.", edited_from=model
    )
    assert fixed.checkpoint is None
    assert fixed.edit_distance == len(" of France") + 1


def test_bad_answers_are_refused_with_a_message_and_nothing_is_stored(settings):
    settings.RANKWISE_ANSWER_MAX_CHARS = 10
    prompt, other = PromptFactory(), PromptFactory()
    author = AnnotatorFactory()
    original = ResponseFactory(prompt=other)
    cases = [
        ("a\x00b", {}, "NUL"),
        ("   \n", {}, "empty"),
        ("x" * 11, {}, "at most 10 characters; this one has 11"),
        ("fine", {"edited_from": original}, "same prompt"),
    ]
    for text, extra, message in cases:
        with pytest.raises(AnswerInvalid) as caught:
            human_answer_create(prompt=prompt, author=author, text=text, **extra)
        assert message in str(caught.value)
    assert not Response.objects.filter(source="human").exists()
    # Stored as written: leading and trailing space kept, the limit counting it.
    kept = human_answer_create(prompt=prompt, author=author, text="  spaced  ")
    assert kept.text == "  spaced  "


def test_the_database_holds_the_lineage_rules():
    prompt = PromptFactory()
    author = AnnotatorFactory()
    model = ResponseFactory(prompt=prompt)
    for fields in (
        {"source": "human"},  # no author
        {
            "source": "human",
            "author": author,
            "checkpoint": model.checkpoint,
            "run": model.run,
        },  # a checkpoint's?
        {
            "source": "model",
            "author": author,
            "checkpoint": model.checkpoint,
            "run": model.run,
        },  # an author on a model
        {"source": "human", "author": author, "edited_from": model},  # an edit without its distance
        {"source": "robot", "author": author},
    ):
        with pytest.raises(IntegrityError), transaction.atomic():
            Response.objects.create(prompt=prompt, sample_index=9, text="x", **fields)


def test_the_word_diff_rebuilds_both_texts_and_marks_only_what_changed():
    import random

    from feedback.services.answers import answer_diff

    assert answer_diff("The cat sat.", "The black cat sat!") == [
        ("equal", "The "),
        ("insert", "black "),
        ("equal", "cat sat"),
        ("delete", "."),
        ("insert", "!"),
    ]
    assert answer_diff("same", "same") == [("equal", "same")]
    rng = random.Random(5)
    words = ["alpha", "beta", " ", "\n", ",", "γάμμα", "<b>", "**x**"]
    for _ in range(200):
        before = "".join(rng.choice(words) for _ in range(rng.randint(0, 40)))
        after = "".join(rng.choice(words) for _ in range(rng.randint(0, 40)))
        segments = answer_diff(before, after)
        assert "".join(text for op, text in segments if op != "insert") == before
        assert "".join(text for op, text in segments if op != "delete") == after
        assert all(first[0] != second[0] for first, second in itertools.pairwise(segments))
