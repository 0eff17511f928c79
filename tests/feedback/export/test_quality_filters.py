"""The export's quality options: suspended annotators left out by default, a minimum gold accuracy, the
annotator's gold accuracy in the raw judgments, the card's quality section; all decided as of the
snapshot, so re-exporting it after a reinstatement writes the same files."""

from __future__ import annotations

import io
import json

import pytest
from django.db import transaction

from feedback.export.options import ExportOptions
from feedback.export.writer import export_row_groups, export_write
from feedback.models import Comparison, Export
from feedback.services.exports import export_create, export_path
from feedback.services.gold import gold_import
from feedback.services.quality import project_quality_refresh
from feedback.services.standing import annotator_reinstate, annotator_suspend
from tests.factories import AdminFactory, AnnotatorFactory, ComparisonFactory, JudgmentFactory, ProjectFactory

pytestmark = pytest.mark.django_db

RANKINGS = {"a": [1, 2], "b": [2, 1]}


@pytest.fixture
def world():
    """A project with 4 comparisons judged by ann, bob and cy, and one gold item that ann and bob got
    right and cy wrong; bob is suspended."""
    project = ProjectFactory(slug="q")
    people = {name: AnnotatorFactory(username=name) for name in ("ann", "bob", "cy")}
    for _ in range(4):
        comparison = ComparisonFactory(prompt__project=project, with_responses=2)
        for person in people.values():
            JudgmentFactory(comparison=comparison, annotator=person, choice="a", ranking=[1, 2], strength=1)
    line = {"prompt": "Gold?", "responses": ["right", "wrong"], "expected": "A"}
    gold_import(project=project, source=io.BytesIO(json.dumps(line).encode()))
    gold = Comparison.objects.get(project=project, is_gold=True)
    right = "a" if gold.entries.get(position=0).response.text == "right" else "b"
    wrong = "b" if right == "a" else "a"
    for name, choice in (("ann", right), ("bob", right), ("cy", wrong)):
        JudgmentFactory(
            comparison=gold, annotator=people[name], choice=choice, ranking=RANKINGS[choice], strength=1
        )
    admin = AdminFactory()
    annotator_suspend(project_id=project.pk, annotator_id=people["bob"].pk, actor=admin, reason="Spam.")
    return project, people, admin


def annotators_in(options: ExportOptions) -> list[str]:
    with transaction.atomic():
        return sorted(
            {
                row["annotator"]
                for _, rows in export_row_groups(options, high_water_mark=10**9)
                for row in rows
            }
        )


def test_suspended_annotators_are_left_out_by_default(world):
    assert annotators_in(ExportOptions.from_mapping({"format": "judgments"})) == ["ann", "cy"]
    assert annotators_in(ExportOptions.from_mapping({"format": "judgments", "exclude_suspended": False})) == [
        "ann",
        "bob",
        "cy",
    ]


def test_a_minimum_gold_accuracy_keeps_only_those_who_meet_it(world):
    options = ExportOptions.from_mapping({"format": "judgments", "min_gold_accuracy": 0.5})
    assert annotators_in(options) == ["ann"]  # bob suspended, cy 0 of 1
    with pytest.raises(Exception, match="min_gold_accuracy"):
        ExportOptions.from_mapping({"format": "judgments", "min_gold_accuracy": 1.5})


def test_raw_judgments_carry_the_annotators_gold_accuracy(world):
    with transaction.atomic():
        rows = [
            row
            for _, rows in export_row_groups(
                ExportOptions.from_mapping({"format": "judgments", "exclude_suspended": False}),
                high_water_mark=10**9,
            )
            for row in rows
        ]
    accuracy = {row["annotator"]: row["gold_accuracy"] for row in rows}
    assert accuracy == {"ann": 1.0, "bob": 1.0, "cy": 0.0}
    assert len(rows) == 12  # the gold item's judgments are not rows


def test_the_card_says_what_the_filters_removed_and_how_well_annotators_agree(world, tmp_path):
    project, _, _ = world
    project_quality_refresh(project_id=project.pk)
    options = ExportOptions.from_mapping({"format": "preference", "min_gold_accuracy": 0.5})
    manifest = export_write(options, high_water_mark=10**9, directory=tmp_path / "out")
    card = (tmp_path / "out" / "README.md").read_text()
    assert "| suspended annotators | 4 |" in card
    assert "| gold accuracy below 0.5 | 4 |" in card
    assert "| q | choice |" in card
    assert "1 annotator(s) in this export answered gold items (0 did not): 1 of 1 right (100.0%)" in card
    assert manifest["judgments"] == 4


def test_the_same_snapshot_decides_the_same_after_a_reinstatement(world, settings, tmp_path):
    project, people, admin = world
    settings.EXPORT_ROOT = str(tmp_path)
    first = export_create(options=ExportOptions.from_mapping({"format": "judgments"}))
    annotator_reinstate(project_id=project.pk, annotator_id=people["bob"].pk, actor=admin, reason="Appealed.")
    # A fresh export now includes bob; the recorded snapshot, exported again, still leaves him out.
    fresh = export_create(options=ExportOptions.from_mapping({"format": "judgments"}))
    again = export_create(options=ExportOptions.from_mapping({"format": "judgments"}), snapshot_of=first)
    from feedback.tasks import export_run

    for export in (first, fresh, again):
        export_run(export.pk)
    first, fresh, again = (Export.objects.get(pk=export.pk) for export in (first, fresh, again))
    assert (first.status, fresh.status, again.status) == ("completed",) * 3
    assert again.snapshot_digest == first.snapshot_digest != fresh.snapshot_digest
    assert export_path(again).read_bytes() == export_path(first).read_bytes()
    assert again.manifest["annotators"] == 2
    assert fresh.manifest["annotators"] == 3


@pytest.mark.parametrize("output", ["jsonl", "parquet"])
def test_the_gold_format_lists_each_gold_item_with_every_answer(world, tmp_path, output):
    """Suspended bob's answer is there too: the gold export shows what graded everyone."""
    import pyarrow.parquet as pq

    options = ExportOptions.from_mapping({"format": "gold", "output": output})
    manifest = export_write(options, high_water_mark=10**9, directory=tmp_path / "out")
    if output == "jsonl":
        rows = [json.loads(line) for line in (tmp_path / "out" / "train.jsonl").read_text().splitlines()]
    else:
        rows = pq.read_table(tmp_path / "out" / "train.parquet").to_pylist()
    (row,) = rows
    right = next(response["label"] for response in row["responses"] if response["text"] == "right")
    assert (row["expected"], row["answered"], row["correct"]) == (right, 3, 2)
    assert {answer["annotator"]: answer["correct"] for answer in row["answers"]} == {
        "ann": True,
        "bob": True,
        "cy": False,
    }
    assert manifest["rows"] == {"train": 1}
    with pytest.raises(Exception, match="aggregation"):
        ExportOptions.from_mapping({"format": "gold", "aggregation": "consensus"})
