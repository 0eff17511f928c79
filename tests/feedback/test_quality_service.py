"""The stored quality figures: computed from the database by `project_quality_refresh` (PostgreSQL, and
the demo's SQLite with the same result), replaced per annotator, kept as a history per project, and
due again only when new judgments arrive."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from feedback.models import AnnotatorQuality, Comparison, Judgment, Project, ProjectQuality
from feedback.services.gold import gold_import
from feedback.services.quality import project_quality_refresh, projects_due_for_quality
from tests.factories import AnnotatorFactory, ComparisonFactory, JudgmentFactory, ProjectFactory
from tests.processes import python_script

pytestmark = pytest.mark.django_db

RANKINGS = {"a": [1, 2], "b": [2, 1], "tie": [1, 1], "both_bad": [1, 1]}


def scenario() -> dict:
    """A pairwise project (8 comparisons, 3 annotators, ratings on two axes, a gold item) and a ranking
    project; returns the stored figures after one refresh of each, as JSON-ready data."""
    pairs = ProjectFactory(
        slug="pairs",
        rating_rubric=[
            {"key": "helpfulness", "label": "Helpful", "description": "", "scale": {"min": 1, "max": 5}},
            {"key": "tone", "label": "Tone", "description": "", "scale": {"min": 1, "max": 5}},
        ],
    )
    people = [AnnotatorFactory(username=name) for name in ("ann", "bea", "cy")]
    pairs.members.add(*people)
    answers = {
        "ann": ["a", "a", "b", "b", "a", "tie", "a", "b"],
        "bea": ["a", "a", "b", "a", "a", "tie", "b", "b"],
        "cy": ["a", "b", "b", "b", "both_bad", "a", "a", "b"],
    }
    for index in range(8):
        comparison = ComparisonFactory(prompt__project=pairs, with_responses=2)
        first, second = comparison.entries.order_by("position").values_list("response_id", flat=True)
        for person in people:
            choice = answers[person.username][index]
            JudgmentFactory(
                comparison=comparison,
                annotator=person,
                choice=choice,
                ranking=RANKINGS[choice],
                strength=1 + index % 3 if choice in ("a", "b") else None,
                time_spent_ms=20_000 + 1000 * index,
                ratings={
                    str(first): {"helpfulness": 1 + index % 5, "tone": 3},
                    str(second): {"helpfulness": 2},
                },
            )
    gold_import(
        project=pairs,
        source=io.BytesIO(
            json.dumps({"prompt": "Gold?", "responses": ["right", "wrong"], "expected": "A"}).encode()
        ),
    )
    gold = Comparison.objects.get(project=pairs, is_gold=True)
    right = "a" if gold.entries.get(position=0).response.text == "right" else "b"
    for person, choice in zip(people, [right, right, "tie"], strict=True):
        JudgmentFactory(
            comparison=gold, annotator=person, choice=choice, ranking=RANKINGS[choice], strength=None
        )

    ranks = ProjectFactory(
        slug="ranks",
        comparison_mode="ranking",
        responses_per_comparison=3,
        strength_labels=[],
        rating_rubric=[],
    )
    for index in range(4):
        comparison = ComparisonFactory(prompt__project=ranks, with_responses=3)
        for person, ranking in zip(
            people, ([1, 2, 3], [1, 3, 2], [2, 1, 3] if index % 2 else [1, 2, 3]), strict=True
        ):
            JudgmentFactory(
                comparison=comparison, annotator=person, choice="ranked", ranking=ranking, strength=None
            )

    result = {}
    for project in (pairs, ranks):
        quality = project_quality_refresh(project_id=project.pk)
        report = dict(quality.report)
        report["alpha_over_time"] = [
            {key: value for key, value in point.items() if key != "until"}
            for point in report["alpha_over_time"]
        ]
        # Ids differ between databases; names do not.
        name_of = {person.pk: person.username for person in people}
        for pair in report["kappa"]["pairs"]:
            pair["first"], pair["second"] = name_of[pair["first"]], name_of[pair["second"]]
        result[project.slug] = {
            "report": report,
            "annotators": [
                {
                    name: value
                    for name, value in row.items()
                    if name not in ("id", "computed_at", "project", "annotator")
                }
                | {"username": row["annotator__username"]}
                for row in AnnotatorQuality.objects.filter(project=project)
                .order_by("annotator__username")
                .values(
                    "annotator__username", *[field.name for field in AnnotatorQuality._meta.concrete_fields]
                )
            ],
        }
    return json.loads(json.dumps(result))


def test_refreshing_stores_the_projects_figures_and_each_annotators():
    figures = scenario()
    pairs = figures["pairs"]["report"]
    assert (pairs["judgments"], pairs["comparisons"], pairs["annotators"]) == (24, 8, 3)  # gold left out
    assert pairs["gold"] == {"items": 1, "answered": 3, "correct": 2}
    assert set(pairs["alpha"]) == {"choice", "strength", "axis:helpfulness", "axis:tone"}
    assert pairs["alpha"]["axis:tone"]["value"] is None  # every tone score is 3: nothing to correct for
    assert 0 < pairs["alpha"]["choice"]["value"] < 1
    assert [point["judgments"] for point in figures["pairs"]["report"]["alpha_over_time"]][-1] == 24
    annotators = {row["username"]: row for row in figures["pairs"]["annotators"]}
    assert (annotators["ann"]["gold_answered"], annotators["ann"]["gold_correct"]) == (1, 1)
    assert (annotators["cy"]["gold_answered"], annotators["cy"]["gold_correct"]) == (1, 0)
    assert annotators["ann"]["judgments"] == 8
    ranks = figures["ranks"]["report"]
    assert set(ranks["alpha"]) == {"choice", "ranking"}
    assert ranks["position_bias"]["expected"] == pytest.approx(1 / 3)


def test_a_second_refresh_keeps_history_and_replaces_the_annotators_rows():
    scenario()
    project = Project.objects.get(slug="pairs")
    assert projects_due_for_quality() == []
    project_quality_refresh(project_id=project.pk)
    assert ProjectQuality.objects.filter(project=project).count() == 2
    assert AnnotatorQuality.objects.filter(project=project).count() == 3
    first, second = ProjectQuality.objects.filter(project=project).order_by("computed_at")
    # The same judgments give the same figures; only the newest keeps every pair's kappa.
    pairs = second.report["kappa"].pop("pairs")
    assert "pairs" not in first.report["kappa"]
    assert first.report["kappa"].pop("pair_count") == len(pairs)
    assert first.report == second.report
    comparison = Comparison.objects.filter(project=project, is_gold=False).first()
    JudgmentFactory(
        comparison=comparison, annotator=AnnotatorFactory(username="dee"), choice="a", ranking=[1, 2]
    )
    assert projects_due_for_quality() == [project.pk]
    assert project_quality_refresh(project_id=10**9) is None  # a project since deleted: nothing to do


SQLITE_SCRIPT = r"""
import json

import django

django.setup()
from django.core.management import call_command
from django.db import connection

from tests.feedback.test_quality_service import scenario

call_command("migrate", verbosity=0)
print(json.dumps({"vendor": connection.vendor, "figures": scenario()}))
"""


def test_sqlite_gives_the_same_figures_as_postgresql(tmp_path):
    """The demo's configuration computes the same figures from the same judgments."""
    expected = scenario()
    result = python_script(
        SQLITE_SCRIPT,
        DJANGO_SETTINGS_MODULE="feedback.settings",
        DATABASE_URL=f"sqlite:///{tmp_path / 'quality.sqlite3'}",
        RANKWISE_VAR_DIR=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["vendor"] == "sqlite"
    assert report["figures"] == expected
    assert Judgment.objects.count() == 24 + 3 + 12


@pytest.mark.django_db
def test_the_packed_reader_gives_every_row_in_order_and_refuses_nulls():
    from feedback.services.quality import packed_int64_rows

    source = "FROM generate_series(1, 150000) g WHERE mod(g, %s) <> 0"
    rows = packed_int64_rows(["g", "g * %s"], source, [-(2**40), 7], block="g / 65536")
    assert rows.dtype == np.int64
    kept = [g for g in range(1, 150_001) if g % 7]
    assert rows.tolist() == [[g, -(2**40) * g] for g in kept]  # three blocks, in order
    assert packed_int64_rows(["g"], "FROM generate_series(1, 3) g WHERE false", [], block="g").shape == (
        0,
        1,
    )
    with pytest.raises(ValueError, match="NULL"):
        packed_int64_rows(["g", "NULLIF(g, 2)"], "FROM generate_series(1, 3) g", [], block="g / 2")


@pytest.mark.django_db
def test_the_refresh_reads_stored_characters_and_sums_the_texts_where_none_was_stored():
    from feedback.models import Comparison, Response
    from feedback.services.quality import judgment_arrays

    project = ProjectFactory(slug="reading")
    stored, unstored = (ComparisonFactory(prompt__project=project, with_responses=2) for _ in range(2))
    Response.objects.filter(comparisons=unstored).update(text="héllo wörld")  # 11 characters, 13 bytes
    Comparison.objects.filter(pk=stored.pk).update(characters=1234)  # as pairing stores it
    assert Comparison.objects.get(pk=unstored.pk).characters is None  # made by hand: not stored
    for comparison in (stored, unstored):
        JudgmentFactory(comparison=comparison, annotator=AnnotatorFactory(username=f"r{comparison.pk}"))
    table = judgment_arrays(project=project, high_water_mark=10**9)
    assert dict(zip(table.comparison.tolist(), table.characters.tolist(), strict=True)) == {
        stored.pk: 1234,
        unstored.pk: 22,
    }


@pytest.mark.django_db(transaction=True)
def test_the_migration_fills_the_characters_of_existing_comparisons():
    from django.core.management import call_command

    from feedback.models import Comparison, Response

    comparison = ComparisonFactory(with_responses=2)
    Response.objects.filter(comparisons=comparison).update(text="ça")
    call_command("migrate", "feedback", "0008", verbosity=0)
    call_command("migrate", "feedback", verbosity=0)
    assert Comparison.objects.get(pk=comparison.pk).characters == 4
