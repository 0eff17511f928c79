"""Every export's dataset card carries the leaderboard of the judgments it exported, with its filters."""

from __future__ import annotations

import zipfile
from io import StringIO

import pytest
from django.core.management import call_command

from feedback.export.options import ExportOptions
from feedback.services.exports import export_create, export_path, export_run
from feedback.services.leaderboard import LeaderboardFilters, leaderboard_compute
from feedback.services.standing import annotator_suspend
from tests.factories import AdminFactory, planted_project

pytestmark = pytest.mark.django_db


@pytest.fixture
def export_root(settings, tmp_path):
    settings.EXPORT_ROOT = tmp_path / "exports"
    return settings.EXPORT_ROOT


def card_of(export) -> str:
    with zipfile.ZipFile(export_path(export)) as bundle:
        return bundle.read("README.md").decode()


def test_the_card_ranks_the_checkpoints_of_the_exported_judgments(export_root):
    project, *_ = planted_project(judgments_per_pair=20)
    export = export_run(
        export_id=export_create(options=ExportOptions.from_mapping({"format": "preference"})).pk
    )
    card = card_of(export)
    assert "## Leaderboard" in card
    report = leaderboard_compute(project=project, filters=LeaderboardFilters(), high_water_mark=10**12)
    for entry in report["checkpoints"]:
        raw = entry["raw"]
        assert (
            f"| {raw['rank']} | {entry['name']} | {raw['elo']:.0f} [{raw['low']:.0f}, {raw['high']:.0f}] |"
            in card
        )
    assert "base at 1000" in card
    assert f"from the {report['battles']} battles" in card

    # The export's filters are the leaderboard's: an annotator suspended is left out of both.
    judgment = project.comparisons.first().judgments.first()
    annotator_suspend(
        project_id=project.pk, annotator_id=judgment.annotator_id, actor=AdminFactory(), reason="x"
    )
    again = export_run(
        export_id=export_create(options=ExportOptions.from_mapping({"format": "preference"})).pk
    )
    theirs = judgment.annotator.judgments.count()
    assert theirs == 12
    assert f"from the {report['battles'] - theirs} battles" in card_of(again)

    # The command writes the same card.
    out = StringIO()
    call_command(
        "export_preferences", "--format", "preference", "--output", str(export_root / "cli"), stdout=out
    )
    assert "## Leaderboard" in (export_root / "cli" / "README.md").read_text()


def test_a_card_without_two_checkpoints_says_there_is_nothing_to_rank(export_root):
    export = export_run(
        export_id=export_create(options=ExportOptions.from_mapping({"format": "judgments"})).pk
    )
    assert "Fewer than two checkpoints met in the exported judgments" in card_of(export)
