"""The leaderboard service: battles read from judgments (pairwise and ranked, both-bad apart, through the
export's filters, reviewed verdicts winning), both fits and the reports over them, and the cache."""

from __future__ import annotations

import itertools
from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from feedback import models
from feedback.export.options import ExportOptions
from feedback.export.source import judgments_selected
from feedback.quality.leaderboard import FIRST, SECOND, TIE
from feedback.selectors import judgment_examples
from feedback.services import battles as battles_module
from feedback.services.battles import BOTH_BAD, battles_read
from feedback.services.leaderboard import (
    LeaderboardFilters,
    LeaderboardFiltersError,
    head_to_head_report,
    leaderboard_compute,
    leaderboard_refresh,
    leaderboard_request,
    leaderboards_refresh,
)
from feedback.services.review import review_decide
from feedback.services.standing import annotator_suspend
from tests.factories import (
    AdminFactory,
    AnnotatorFactory,
    PolicyCheckpointFactory,
    ProjectFactory,
    judge,
    planted_project,
    shown,
)

pytestmark = pytest.mark.django_db(transaction=False)


def selected(project, **filters):
    options = ExportOptions.from_mapping({"format": "judgments", "projects": [project.slug], **filters})
    return judgments_selected(options, high_water_mark=10**12)


def test_battles_are_read_from_pairwise_judgments_in_display_order_with_both_bad_apart():
    project = ProjectFactory()
    old, new = PolicyCheckpointFactory(), PolicyCheckpointFactory()
    people = [AnnotatorFactory() for _ in range(4)]
    comparison = shown(project, [old, new], texts=["# Title\n- one\n- two\n**bold**", "plain"])
    for person, choice in zip(people, ["a", "b", "tie", "both_bad"], strict=True):
        judge(comparison, person, choice, rationale="because" if choice == "b" else "")
    # Two samples of one checkpoint make no battle.
    judge(shown(project, [old, old]), people[0])

    battles = battles_read(selected(project), projects=[project.pk])
    assert battles.outcome.tolist() == [FIRST, SECOND, TIE, BOTH_BAD]
    assert set(battles.first.tolist()) == {old.pk}
    assert set(battles.second.tolist()) == {new.pk}
    assert battles.rationale.tolist() == [False, True, False, False]
    assert battles.same_checkpoint == 1
    # Styles are measured (here filled, as for responses made before they were stored).
    assert battles.first_style[0].tolist() == [len("# Title\n- one\n- two\n**bold**"), 1, 2, 1]
    assert battles.second_style[0].tolist() == [5, 0, 0, 0]


def test_a_ranking_is_expanded_to_every_pair_of_its_positions():
    project = ProjectFactory(comparison_mode="ranking", responses_per_comparison=3)
    a, b, c = PolicyCheckpointFactory(), PolicyCheckpointFactory(), PolicyCheckpointFactory()
    judge(shown(project, [a, b, c]), AnnotatorFactory(), "ranked", ranking=[2, 1, 2])
    battles = battles_read(selected(project), projects=[project.pk])
    pairs = sorted(
        zip(battles.first.tolist(), battles.second.tolist(), battles.outcome.tolist(), strict=True)
    )
    assert pairs == sorted([(a.pk, b.pk, SECOND), (a.pk, c.pk, TIE), (b.pk, c.pk, FIRST)])


def test_the_orm_reader_reads_what_the_postgresql_reader_reads():
    project = ProjectFactory(comparison_mode="ranking", responses_per_comparison=3)
    checkpoints = [PolicyCheckpointFactory() for _ in range(3)]
    people = [AnnotatorFactory() for _ in range(3)]
    for index, order in enumerate(itertools.permutations(checkpoints)):
        comparison = shown(project, list(order), category=["list", "write"][index % 2])
        for offset, person in enumerate(people):
            judge(
                comparison,
                person,
                "ranked",
                ranking=[1 + (index + offset) % 3, 1 + (index + offset + 1) % 3, 3 - offset % 2],
            )
    judgments = selected(project)
    packed = battles_module._judgment_rows_packed(judgments, 3)
    through_orm = battles_module._judgment_rows_orm(judgments, 3)
    assert packed.shape == (6 * 3, 5 + 3)
    assert np.array_equal(packed, through_orm)
    entries = models.ComparisonResponse.objects.filter(comparison__project=project)
    assert np.array_equal(battles_module._entries_packed([project.pk]), battles_module._entries_orm(entries))
    # Both readers give the same battles: 6 comparisons × 3 judgments × 3 pairs of positions.
    battles = battles_module._battles(packed, battles_module._entries_packed([project.pk]))
    assert len(battles) == 6 * 3 * 3
    # Each battle's outcome is its judgment's ranks compared, positions in display order.
    expected = []
    for judgment in models.Judgment.objects.filter(comparison__project=project).order_by("pk"):
        shown_by = [
            entry.response.checkpoint_id for entry in judgment.comparison.entries.order_by("position")
        ]
        for i, j in ((0, 1), (0, 2), (1, 2)):
            ranks = judgment.ranking[i], judgment.ranking[j]
            outcome = FIRST if ranks[0] < ranks[1] else SECOND if ranks[0] > ranks[1] else TIE
            expected.append((judgment.pk, shown_by[i], shown_by[j], outcome))
    got = list(
        zip(
            battles.judgment.tolist(),
            battles.first.tolist(),
            battles.second.tolist(),
            battles.outcome.tolist(),
            strict=True,
        )
    )
    assert got == expected


def test_the_battles_go_through_the_exports_filters_and_a_reviewers_verdict_wins():
    project = ProjectFactory()
    old, new = PolicyCheckpointFactory(), PolicyCheckpointFactory()
    good, flagged_person, suspended = AnnotatorFactory(), AnnotatorFactory(), AnnotatorFactory()
    listed = shown(project, [old, new], category="list")
    judge(listed, good, "a")
    judge(listed, flagged_person, "a", flags=["harmful"])
    judge(listed, suspended, "a")
    annotator_suspend(project_id=project.pk, annotator_id=suspended.pk, actor=AdminFactory(), reason="Spam.")
    written = shown(project, [old, new], category="write")
    judge(written, good, "a")
    # A reviewer decides "b" on the written comparison: its judgment now counts as a loss of the first.
    item = models.ReviewItem.objects.create(
        project=project, comparison=written, reasons=["low_agreement"], queued_at=timezone.now()
    )
    reviewer = AnnotatorFactory()
    models.ProjectMembership.objects.create(project=project, user=reviewer, role="reviewer")
    review_decide(
        item_id=item.pk,
        reviewer=reviewer,
        action="decide",
        verdict={"choice": "b"},
        submission_key="decide-1",
    )

    everything = battles_read(
        selected(project, exclude_flagged=False, exclude_suspended=False), projects=[project.pk]
    )
    assert len(everything) == 4
    filtered = battles_read(selected(project), projects=[project.pk], decided={written.pk: {"choice": "b"}})
    assert sorted(filtered.outcome.tolist()) == [FIRST, SECOND]

    report = leaderboard_compute(
        project=project, filters=LeaderboardFilters(rounds=100), high_water_mark=10**12
    )
    entry = {row["name"]: row for row in report["checkpoints"]}
    assert entry[new.name]["wins"] == 1
    assert entry[new.name]["losses"] == 1
    listed_only = leaderboard_compute(
        project=project, filters=LeaderboardFilters(categories=("list",), rounds=100), high_water_mark=10**12
    )
    assert listed_only["battles"] == 1
    # An example of that comparison shows the verdict that counted, the reviewer's, beside the annotator's.
    overturned = models.Judgment.objects.get(comparison=written)
    (example,) = judgment_examples(project=project, examples={"losses": [overturned.pk]}, reviewed=True)
    assert (example["choice"], example["reviewed"], example["annotator_choice"]) == ("b", True, "a")
    (plain,) = judgment_examples(project=project, examples={"wins": [overturned.pk]})
    assert (plain["choice"], plain["reviewed"]) == ("a", False)
    later = LeaderboardFilters(since=timezone.now() + timedelta(hours=1), rounds=100)
    assert leaderboard_compute(project=project, filters=later, high_water_mark=10**12)["battles"] == 0


def test_the_leaderboard_ranks_the_checkpoints_and_reports_both_fits_categories_axes_and_pairs():
    project, base, instruct, _lora = planted_project()
    report = leaderboard_compute(project=project, filters=LeaderboardFilters(), high_water_mark=10**12)
    assert report["reference"] == {"id": base.pk, "name": "base"}  # the base model, whatever its age
    names = [entry["name"] for entry in report["checkpoints"]]
    assert names == ["lora", "instruct", "base"]
    entries = {entry["name"]: entry for entry in report["checkpoints"]}
    assert entries["base"]["raw"]["elo"] == 1000.0
    assert entries["instruct"]["raw"]["low"] > 1000.0  # separated from the base at 95%
    # Ranks respect the intervals: 1 + the number of checkpoints significantly better.
    assert entries["base"]["raw"]["rank"] == 3
    assert entries["lora"]["raw"]["rank"] == 1
    separated = entries["lora"]["raw"]["low"] > entries["instruct"]["raw"]["high"]
    assert entries["instruct"]["raw"]["rank"] == 1 + separated
    assert entries["lora"]["parent"] == "instruct"
    assert entries["instruct"]["controlled"]["elo"] > 1000.0
    assert report["battles"] == 180
    assert report["judgments"] == 180
    assert [row["feature"] for row in report["style"]] == ["length", "headers", "list items", "bold"]
    # The answers have lists but never headers or bold: those have no effect to estimate.
    assert report["style"][2]["low"] <= report["style"][2]["coefficient"] <= report["style"][2]["high"]
    assert report["style"][1] == {"feature": "headers", "coefficient": None, "low": None, "high": None}
    assert {row["category"] for row in report["categories"]} == {"list", "explain"}
    matrix = report["matrix"]
    at = {pk: index for index, pk in enumerate(matrix["checkpoints"])}
    assert matrix["battles"][at[base.pk]][at[instruct.pk]] == 60
    assert (
        matrix["win_rate"][at[base.pk]][at[instruct.pk]] + matrix["win_rate"][at[instruct.pk]][at[base.pk]]
        == 1.0
    )
    helpful = {row["name"]: row for row in report["axes"][0]["checkpoints"]}
    assert report["axes"][0]["label"] == "Helpfulness"
    assert helpful["lora"]["mean"] > helpful["instruct"]["mean"] > helpful["base"]["mean"]
    assert helpful["base"]["low"] < helpful["base"]["mean"] < helpful["base"]["high"]

    forward = head_to_head_report(report, instruct.pk, base.pk)
    backward = head_to_head_report(report, base.pk, instruct.pk)
    assert forward["wins"] == backward["losses"]
    assert forward["wins"] + forward["losses"] == 60
    assert forward["predicted"] == pytest.approx(1.0 - backward["predicted"])
    assert forward["predicted"] > 0.5
    assert forward["decisive_low"] > 0.5
    # Every outcome's share of their battles, with its interval; the shares add up to one.
    shares = {line["outcome"]: line for line in forward["shares"]}
    assert sum(line["share"] for line in forward["shares"]) == pytest.approx(1.0)
    assert shares["wins"]["share"] == forward["wins"] / 60
    assert shares["wins"]["low"] < shares["wins"]["share"] < shares["wins"]["high"]
    assert shares["ties"]["share"] == 0.0
    assert shares["ties"]["high"] > 0.0  # none seen; a few are not ruled out
    assert forward["needed"] == 0
    assert sum(counts["wins"] for counts in forward["categories"].values()) == forward["wins"]
    assert forward["axes"]["helpful"]["mean"] == pytest.approx(-backward["axes"]["helpful"]["mean"])
    assert forward["axes"]["helpful"]["mean"] > 1.0
    # Examples: judgments of that outcome, those with a rationale first.
    example = models.Judgment.objects.get(pk=forward["examples"]["wins"][0])
    assert example.rationale == "clearer"
    assert len(forward["examples"]["wins"]) == 3
    assert head_to_head_report(report, base.pk, 10**9) is None


def test_the_default_reference_is_the_oldest_base_model_even_when_registered_later():
    project = ProjectFactory()
    instruct = PolicyCheckpointFactory(name="registered-first", kind="instruct")
    base = PolicyCheckpointFactory(name="the-base", kind="base")
    for choice in ["a", "a", "b", "a"]:
        judge(shown(project, [instruct, base]), AnnotatorFactory(), choice)
    report = leaderboard_compute(
        project=project, filters=LeaderboardFilters(rounds=100), high_water_mark=10**12
    )
    assert report["reference"] == {"id": base.pk, "name": "the-base"}


def test_a_reference_whose_only_battles_are_both_bad_gives_way_to_the_default():
    project = ProjectFactory()
    base, instruct, other = (PolicyCheckpointFactory(kind=kind) for kind in ("base", "instruct", "instruct"))
    for choice in ["a", "b", "a"]:
        judge(shown(project, [base, instruct]), AnnotatorFactory(), choice)
    judge(shown(project, [other, base]), AnnotatorFactory(), "both_bad")
    filters = LeaderboardFilters(reference=other.name, rounds=100)
    report = leaderboard_compute(project=project, filters=filters, high_water_mark=10**12)
    assert report["reference"]["id"] == base.pk
    assert any("has no battles in this fit" in note for note in report["notes"])
    assert {entry["name"]: entry["raw"] for entry in report["checkpoints"]}[other.name] is None


def test_a_checkpoint_that_won_everything_is_scored_finitely_and_said_to_be(
    django_capture_on_commit_callbacks,
):
    project = ProjectFactory()
    base, instruct = PolicyCheckpointFactory(kind="base"), PolicyCheckpointFactory()
    for index in range(6):
        order = [base, instruct] if index % 2 else [instruct, base]
        judge(shown(project, order), AnnotatorFactory(), "a" if order[0] == instruct else "b")
    report = leaderboard_compute(
        project=project, filters=LeaderboardFilters(rounds=200), high_water_mark=10**12
    )
    leader = report["checkpoints"][0]
    assert leader["name"] == instruct.name
    assert 1000 < leader["raw"]["elo"] < 3000
    assert leader["raw"]["low"] <= leader["raw"]["elo"] <= leader["raw"]["high"]
    assert any(f"{instruct.name} won every one of its 6 decisive battles" in note for note in report["notes"])


def test_a_checkpoint_the_reference_never_met_has_no_score():
    project = ProjectFactory()
    a, b, c, d = (PolicyCheckpointFactory() for _ in range(4))
    person = AnnotatorFactory()
    for choice in ["a", "b", "a"]:
        judge(shown(project, [a, b]), AnnotatorFactory(), choice)
        judge(shown(project, [c, d]), person if choice == "b" else AnnotatorFactory(), choice)
    report = leaderboard_compute(
        project=project, filters=LeaderboardFilters(rounds=100), high_water_mark=10**12
    )
    scored = {entry["name"]: entry["raw"] for entry in report["checkpoints"]}
    assert scored[c.name] is None
    assert scored[d.name] is None
    assert scored[a.name]["elo"] == 1000.0
    assert scored[b.name] is not None
    assert any("never met" in note for note in report["notes"])


def test_bad_filters_are_refused_with_a_message_per_field():
    with pytest.raises(LeaderboardFiltersError) as caught:
        LeaderboardFilters.from_mapping(
            {
                "categories": "list,poetry",
                "since": "yesterday",
                "min_gold_accuracy": 2,
                "both_bad": "loss",
                "reference": "nobody",
                "rounds": 5,
                "colour": "red",
            }
        )
    errors = caught.value.errors
    assert set(errors) == {
        "categories",
        "since",
        "min_gold_accuracy",
        "both_bad",
        "reference",
        "rounds",
        "non_field_errors",
    }
    assert "poetry" in errors["categories"][0]
    filters = LeaderboardFilters.from_mapping({"categories": "write,list", "since": "2026-01-01T00:00:00Z"})
    assert filters.categories == ("list", "write")
    assert filters.key == LeaderboardFilters.from_mapping(filters.to_dict()).key
    assert filters.key != LeaderboardFilters().key


def test_a_leaderboard_is_computed_once_then_again_when_judgments_arrive(django_capture_on_commit_callbacks):
    project, base, _instruct, lora = planted_project(judgments_per_pair=10)
    filters = LeaderboardFilters(rounds=200)
    with django_capture_on_commit_callbacks() as sent:
        row = leaderboard_request(project=project, filters=filters)
    assert row.status == "pending"
    assert len(sent) == 1
    row = leaderboard_refresh(project_id=project.pk, key=filters.key)
    assert row.status == "ready"
    assert row.report["battles"] == 30
    with django_capture_on_commit_callbacks() as sent:
        row = leaderboard_request(project=project, filters=filters)
    assert row.status == "ready"
    assert not sent
    judge(shown(project, [base, lora]), AnnotatorFactory(), "a")
    with django_capture_on_commit_callbacks() as sent:
        row = leaderboard_request(project=project, filters=filters)
    assert len(sent) == 1
    assert row.report["battles"] == 30  # the figures in hand are served while the new ones are computed
    # The periodic refresh computes what is stale, including the project's default leaderboard.
    assert leaderboards_refresh() == 2
    assert models.LeaderboardReport.objects.get(project=project, key=filters.key).report["battles"] == 31
    assert (
        models.LeaderboardReport.objects.get(project=project, key=LeaderboardFilters().key).status == "ready"
    )
    assert leaderboards_refresh() == 0

    # A suspension changes what the default filters select: stale again, computed again.
    row = models.LeaderboardReport.objects.get(project=project, key=filters.key)
    suspended = row.report and models.Judgment.objects.filter(comparison__project=project).first().annotator
    annotator_suspend(project_id=project.pk, annotator_id=suspended.pk, actor=AdminFactory(), reason="Spam.")
    with django_capture_on_commit_callbacks() as sent:
        row = leaderboard_request(project=project, filters=filters)
    assert row.status == "pending"
    assert len(sent) == 1
    with django_capture_on_commit_callbacks() as sent:  # asked again while pending: not sent twice
        leaderboard_request(project=project, filters=filters)
    assert not sent
    row = leaderboard_refresh(project_id=project.pk, key=filters.key)
    assert row.report["judgments"] < 31


def test_a_leaderboard_whose_filters_no_longer_parse_fails_instead_of_waiting_forever():
    project, base, *_ = planted_project(judgments_per_pair=4)
    filters = LeaderboardFilters(reference="base", rounds=100)
    leaderboard_request(project=project, filters=filters)
    models.PolicyCheckpoint.objects.filter(pk=base.pk).update(name="renamed")
    with pytest.raises(LeaderboardFiltersError):
        leaderboard_refresh(project_id=project.pk, key=filters.key)
    row = models.LeaderboardReport.objects.get(project=project, key=filters.key)
    assert row.status == "failed"
    assert "No checkpoint is named 'base'" in row.error


def test_the_orm_reads_the_ratings_the_postgresql_reader_reads():
    project, *_ = planted_project(judgments_per_pair=4)
    judgments = selected(project)
    packed = battles_module._ratings_packed(judgments, ["helpful", "missing"])
    through_orm = battles_module._ratings_orm(judgments, ["helpful", "missing"])
    packed = packed[(packed[:, 3:] != battles_module.NO_SCORE).any(axis=1)]
    assert len(packed) == 24
    assert np.array_equal(packed, through_orm)
