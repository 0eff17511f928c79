"""A simulated crowd through the real assignment engine: 20 annotators, of whom 3 answer at random, 2
always choose the left response and 15 are right 85% of the time, with gold at 10%. Seeded: the same
crowd, the same draws, the same outcome on every run.

After the pool is judged, every bad annotator is flagged with the right reason and suspended, and no
good one is flagged or suspended."""

from __future__ import annotations

import io
import json
import random
import uuid

import pytest
from django.db import transaction

from annotate.assignment import AnnotatorSuspended, comparison_lease_next, judgment_submit
from annotate.submission import JudgmentSubmission
from feedback.export.options import ExportOptions
from feedback.export.writer import export_row_groups
from feedback.models import AnnotatorQuality, AnnotatorStanding, Comparison, GoldVerdict, Project
from feedback.services.gold import gold_import
from feedback.services.quality import project_quality_refresh
from feedback.services.standing import standing_evaluate
from tests.annotate.conftest import comparisons_bulk_create
from tests.factories import AnnotatorFactory, ProjectFactory

# Sequences reset: gold is served at moments keyed by project and annotator ids, so the same ids give
# the same crowd history on every run, whatever ran before.
pytestmark = [pytest.mark.django_db(transaction=True, reset_sequences=True), pytest.mark.slow]

GOOD, RANDOM, LEFT = 15, 3, 2
# Enough work that a guesser answers some 20 gold items before the pool runs out: the 95% interval of a
# 25% accuracy is below the 60% that suspends by then about 19 times in 20.
COMPARISONS = 1200
GOLD_ITEMS = 60
ACCURACY = 0.85


def _truths(project: Project, rng: random.Random) -> dict[int, int]:
    """The better response of every comparison, by response id: gold from its verdict, the others drawn."""
    truths = {}
    for comparison in Comparison.objects.filter(project=project).prefetch_related("entries"):
        ids = [entry.response_id for entry in comparison.entries.all()]
        if comparison.is_gold:
            verdict = GoldVerdict.objects.get(comparison=comparison).verdict
            truths[comparison.pk] = int(verdict["accepted"][0])
        else:
            truths[comparison.pk] = rng.choice(ids)
    return truths


def _answer(kind: str, comparison: Comparison, truth: int, rng: random.Random) -> JudgmentSubmission:
    if kind == "left":
        return JudgmentSubmission(
            choice="a", strength=rng.randint(1, 3), time_spent_ms=rng.randint(15_000, 40_000)
        )
    if kind == "random":
        choice = rng.choice(["a", "b", "tie", "both_bad"])
        strength = rng.randint(1, 3) if choice in ("a", "b") else None
        return JudgmentSubmission(choice=choice, strength=strength, time_spent_ms=rng.randint(15_000, 40_000))
    first = comparison.entries.get(position=0).response_id
    right = "a" if first == truth else "b"
    choice = right if rng.random() < ACCURACY else ("b" if right == "a" else "a")
    return JudgmentSubmission(
        choice=choice, strength=rng.randint(1, 3), time_spent_ms=rng.randint(15_000, 40_000)
    )


def test_a_simulated_crowd_flags_and_suspends_exactly_the_bad_annotators():
    rng = random.Random(20261207)
    project = ProjectFactory(
        slug="crowd",
        judgments_per_comparison=3,
        gold_rate=0.1,
        gold_min_answers=10,
        gold_warn_accuracy=0.6,
        gold_suspend_accuracy=0.6,
    )
    kinds = {"good": GOOD, "random": RANDOM, "left": LEFT}
    crowd = [
        (AnnotatorFactory(username=f"{kind}-{index:02d}"), kind)
        for kind, count in kinds.items()
        for index in range(count)
    ]
    project.members.add(*(person for person, _ in crowd))
    comparisons_bulk_create(project, COMPARISONS)
    lines = [
        {
            "id": f"gold-{n}",
            "prompt": f"Gold {n}?",
            "responses": [f"good answer {n}", f"bad answer {n}"],
            "expected": "A",
        }
        for n in range(GOLD_ITEMS)
    ]
    gold_import(project=project, source=io.BytesIO("\n".join(map(json.dumps, lines)).encode()))
    truths = _truths(project, rng)

    working = list(crowd)
    judged = 0
    while working:
        rng.shuffle(working)
        for person, kind in list(working):
            try:
                lease = comparison_lease_next(annotator=person, project=project)
            except AnnotatorSuspended:
                working.remove((person, kind))
                continue
            if lease is None:
                working.remove((person, kind))
                continue
            comparison = lease.comparison
            judgment_submit(
                annotator=person,
                assignment_id=lease.pk,
                submission_key=uuid.uuid4().hex,
                submission=_answer(kind, comparison, truths[comparison.pk], rng),
            )
            judged += 1
            if comparison.is_gold:  # what the `annotate.evaluate_standing` task does after a gold answer
                standing_evaluate(project_id=project.pk, annotator_id=person.pk)
    project_quality_refresh(project_id=project.pk)  # what celery beat does

    standings = {
        standing.annotator.username: standing
        for standing in AnnotatorStanding.objects.select_related("annotator")
    }
    figures = {row.annotator.username: row for row in AnnotatorQuality.objects.select_related("annotator")}
    print(f"\n{judged} judgments")
    for person, kind in crowd:
        row, standing = figures[person.username], standings[person.username]
        print(
            f"{person.username:>10} {kind:>6} {standing.status:>9} judgments {row.judgments:>4} "
            f"gold {row.gold_correct}/{row.gold_answered} kappa {row.majority_kappa} "
            f"first {row.first_share} {[anomaly['code'] for anomaly in row.anomalies]}"
        )
    for person, kind in crowd:
        row, standing = figures[person.username], standings[person.username]
        codes = {anomaly["code"] for anomaly in row.anomalies}
        if kind == "good":
            assert (standing.status, codes) == ("active", set()), person.username
        elif kind == "random":
            assert standing.status == "suspended", person.username
            assert "gold accuracy" in standing.reason
            assert {"low_gold_accuracy", "low_agreement"} <= codes, person.username
        else:
            assert standing.status == "suspended", person.username
            assert "shown first" in standing.reason
            assert {"position_bias", "one_choice"} <= codes, person.username
    # Every ordinary comparison was judged to its overlap, suspensions notwithstanding.
    assert set(Comparison.objects.filter(is_gold=False).values_list("status", flat=True)) == {"completed"}

    # The consensus of an export with the default filters (suspended annotators left out) agrees with the
    # truth more often than the one that keeps everyone.
    def consensus_right(**filters: object) -> tuple[int, int]:
        options = ExportOptions.from_mapping(
            {"format": "preference", "aggregation": "consensus", "columns": ["ids"], **filters}
        )
        with transaction.atomic():
            rows = [row for _, rows in export_row_groups(options, high_water_mark=10**9) for row in rows]
        right = sum(row["chosen_response_id"] == truths[row["comparison_id"]] for row in rows)
        return right, len(rows)

    filtered, unfiltered = consensus_right(), consensus_right(exclude_suspended=False)
    print(
        f"consensus right: default filters {filtered[0]}/{filtered[1]} = {filtered[0] / filtered[1]:.3f}; "
        f"unfiltered {unfiltered[0]}/{unfiltered[1]} = {unfiltered[0] / unfiltered[1]:.3f}"
    )
    assert filtered[0] / filtered[1] > unfiltered[0] / unfiltered[1]
