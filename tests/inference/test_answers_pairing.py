"""People's answers in comparisons: the pairing service takes them against a checkpoint's answers or each
other; writers never judge their own; the leaderboard and the exports name them `people`."""

import base64
import json

import pytest
import redis
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, transaction
from django.urls import reverse

from annotate.assignment import comparison_lease_next
from feedback.export.options import ExportOptions
from feedback.export.source import judgments_selected
from feedback.models import (
    PEOPLE,
    PEOPLE_ID,
    Comparison,
    ComparisonResponse,
    PolicyCheckpoint,
    Response,
)
from feedback.services.answers import ANSWERS_PAIR_TASK, AnswersPairingError, human_answer_create
from feedback.services.leaderboard import LeaderboardFilters, head_to_head_report, leaderboard_compute
from inference.pairing import answers_comparisons_create
from inference.tasks import answers_pair
from tests.factories import (
    AnnotatorFactory,
    GenerationRunFactory,
    PolicyCheckpointFactory,
    ProjectFactory,
    ResponseFactory,
    judge,
    judge_people_against,
    writing_project,
)
from tests.feedback.export.conftest import exported

pytestmark = pytest.mark.django_db


def shown(comparison):
    return list(
        ComparisonResponse.objects.filter(comparison=comparison)
        .order_by("position")
        .values_list("response__source", "response__checkpoint_id", "response_id")
    )


def test_answers_meet_a_checkpoint_in_pairs_once_each_and_again_only_what_is_new():
    source, checkpoint, _writers = writing_project()
    pending = human_answer_create(
        prompt=source.prompts.first(), author=AnnotatorFactory(), text="Waiting.", review_required=True
    )
    rejected = human_answer_create(prompt=source.prompts.first(), author=AnnotatorFactory(), text="No.")
    Response.objects.filter(pk=rejected.pk).update(review=Response.Review.REJECTED)
    judged = ProjectFactory()

    report = answers_comparisons_create(project=judged, source=source, against=checkpoint, seed=1)

    assert (report.prompts, report.answers, report.comparisons, report.already, report.short) == (
        4,
        8,
        8,
        0,
        0,
    )
    comparisons = Comparison.objects.filter(project=judged)
    assert comparisons.count() == 8
    used = []
    for comparison in comparisons:
        entries = shown(comparison)
        assert sorted(source for source, _, _ in entries) == ["human", "model"]
        assert {pk for source, pk, _ in entries if source == "model"} == {checkpoint.pk}
        assert comparison.prompt.project == source
        assert comparison.generation_run is None
        assert comparison.required_judgments == judged.judgments_per_comparison
        used += [response for _, _, response in entries]
    assert len(used) == len(set(used)) == 16  # disjoint: each answer in one comparison
    assert pending.pk not in used
    assert rejected.pk not in used
    # Positions are shuffled: people's answers are not always shown first.
    assert {entries[0][0] for entries in map(shown, comparisons)} == {"human", "model"}

    again = answers_comparisons_create(project=judged, source=source, against=checkpoint, seed=1)
    assert (again.comparisons, again.already) == (0, 8)

    prompt = source.prompts.order_by("pk").first()
    late = human_answer_create(prompt=prompt, author=AnnotatorFactory(), text="A late answer.")
    run = GenerationRunFactory(project=source, checkpoint=checkpoint)
    fresh = ResponseFactory(prompt=prompt, run=run, sample_index=0, text="Another model answer.")
    third = answers_comparisons_create(project=judged, source=source, against=checkpoint, seed=1)
    assert third.comparisons == 1
    newest = Comparison.objects.filter(project=judged).order_by("-pk").first()
    assert {response for _, _, response in shown(newest)} == {late.pk, fresh.pk}


def test_answers_meet_each_other_in_the_projects_groups_never_twin_texts():
    source, _, _ = writing_project(prompts=2, writers=4, model_answers=1)
    prompt = source.prompts.order_by("pk").first()
    twin = Response.objects.filter(prompt=prompt, source="human").order_by("pk").first()
    human_answer_create(prompt=prompt, author=AnnotatorFactory(), text=twin.text)  # same bytes
    ranking = ProjectFactory(
        comparison_mode="ranking", responses_per_comparison=3, pairing_strategy="all_pairs"
    )

    report = answers_comparisons_create(project=ranking, source=source, seed=7)

    assert report.comparisons == 8  # C(4, 3) distinct texts per prompt
    for comparison in Comparison.objects.filter(project=ranking):
        entries = shown(comparison)
        assert len(entries) == 3
        assert {source for source, _, _ in entries} == {"human"}
        texts = Response.objects.filter(pk__in=[pk for _, _, pk in entries]).values_list("text", flat=True)
        assert len(set(texts)) == 3
    assert answers_comparisons_create(project=ranking, source=source, seed=7).comparisons == 0


def test_requests_that_cannot_be_met_are_refused_and_write_nothing():
    source, checkpoint, _ = writing_project(prompts=1)
    ranking = ProjectFactory(comparison_mode="ranking", responses_per_comparison=3)
    with pytest.raises(AnswersPairingError) as refused:
        answers_comparisons_create(project=source, against=checkpoint)
    assert "demonstration project" in refused.value.errors["project"][0]
    with pytest.raises(AnswersPairingError) as refused:
        answers_comparisons_create(project=ranking, source=source, against=checkpoint)
    assert "in pairs" in refused.value.errors["against"][0]
    with pytest.raises(AnswersPairingError) as refused:
        answers_comparisons_create(project=ranking, source=source, seed=-1)
    assert "seed" in refused.value.errors
    judged = ProjectFactory()
    with pytest.raises(AnswersPairingError) as refused:
        answers_comparisons_create(
            project=judged, source=source, against=PolicyCheckpointFactory(name="silent")
        )
    assert refused.value.errors["against"] == [
        f"silent has not answered the prompts of {source} that people answered: start a generation run of it "
        f"on {source} first."
    ]
    with pytest.raises(AnswersPairingError) as refused:
        answers_comparisons_create(project=judged)  # its own prompts: none, so no answers
    assert "nothing to compare" in refused.value.errors["source"][0]
    assert not Comparison.objects.filter(project__in=[source, ranking, judged]).exists()


def test_a_writer_is_never_given_a_comparison_showing_their_own_answer():
    source, checkpoint, writers = writing_project(prompts=3, writers=2)
    judged = ProjectFactory(judgments_per_comparison=2)
    assert not judged.compares_people
    answers_comparisons_create(project=judged, source=source, against=checkpoint)
    judged.refresh_from_db()
    assert judged.compares_people  # from now on its claims keep writers from their own answers
    writer = writers[0]
    own = set(Response.objects.filter(author=writer).values_list("pk", flat=True))
    served = []
    while (lease := comparison_lease_next(annotator=writer, project=judged)) is not None:
        served.append(lease.comparison_id)
        lease.state = "submitted"
        lease.save(update_fields=["state"])
    assert len(served) == 3  # the other writer's three comparisons
    for comparison_id in served:
        assert not own & set(
            ComparisonResponse.objects.filter(comparison_id=comparison_id).values_list(
                "response_id", flat=True
            )
        )
    assert Comparison.objects.filter(project=judged, status="open").count() == 6  # the rest wait for others


def test_the_leaderboard_ranks_people_beside_the_checkpoints():
    source, checkpoint, _ = writing_project(prompts=10, writers=2)
    judged = ProjectFactory(judgments_per_comparison=3)
    answers_comparisons_create(project=judged, source=source, against=checkpoint)
    judge_people_against(judged)

    report = leaderboard_compute(
        project=judged, filters=LeaderboardFilters(rounds=200), high_water_mark=10**12
    )

    entries = {entry["name"]: entry for entry in report["checkpoints"]}
    assert set(entries) == {checkpoint.name, PEOPLE}
    people = entries[PEOPLE]
    assert (people["id"], people["kind"], people["parent"]) == (PEOPLE_ID, "people", None)
    assert people["battles"] == 60
    assert people["wins"] == 48
    assert report["reference"]["name"] == checkpoint.name  # people come after every checkpoint
    assert people["raw"]["elo"] > entries[checkpoint.name]["raw"]["elo"]
    pair = head_to_head_report(report, PEOPLE_ID, checkpoint.pk)
    assert (pair["wins"], pair["losses"]) == (48, 12)

    # `people` can be the reference, by name, like a checkpoint.
    at_people = leaderboard_compute(
        project=judged, filters=LeaderboardFilters(rounds=200, reference=PEOPLE), high_water_mark=10**12
    )
    assert at_people["reference"] == {"id": PEOPLE_ID, "name": PEOPLE}


def test_people_against_each_other_make_no_battle():
    source, _, _ = writing_project(prompts=3, writers=2)
    judged = ProjectFactory()
    answers_comparisons_create(project=judged, source=source)
    for comparison in Comparison.objects.filter(project=judged):
        judge(comparison, AnnotatorFactory(), "a")
    report = leaderboard_compute(
        project=judged, filters=LeaderboardFilters(rounds=100), high_water_mark=10**12
    )
    assert report["battles"] == 0
    assert report["same_checkpoint"] == 3


def test_no_checkpoint_can_take_the_people_name():
    checkpoint = PolicyCheckpoint(name="People", source="/models/x")
    with pytest.raises(Exception, match="people"):
        checkpoint.full_clean()
    with pytest.raises(IntegrityError), transaction.atomic():
        PolicyCheckpointFactory(name="PEOPLE")


def test_exports_name_people_in_the_checkpoint_column_and_filter_by_it(tmp_path):
    source, checkpoint, _ = writing_project(prompts=3, writers=2)
    judged = ProjectFactory(slug="people-vs-model")
    answers_comparisons_create(project=judged, source=source, against=checkpoint)
    judge_people_against(judged)

    target, _export = exported(tmp_path, format="preference", projects=[judged.slug], columns=["checkpoints"])

    rows = [json.loads(line) for line in (target / "train.jsonl").read_text().splitlines()]
    assert len(rows) == 18  # one per judgment
    for row in rows:
        assert {row["chosen_checkpoint"], row["rejected_checkpoint"]} == {PEOPLE, checkpoint.name}
    card = (target / "README.md").read_text()
    assert f"| {PEOPLE} | 6 |" in card
    assert "people's answers (written or edited by annotators)" in card

    def selected(names):
        options = ExportOptions.from_mapping({"format": "judgments", "checkpoints": names})
        return judgments_selected(options, high_water_mark=10**12).filter(comparison__project=judged).count()

    assert selected([PEOPLE, checkpoint.name]) == 18
    assert selected([checkpoint.name]) == selected([PEOPLE]) == 0


def queued_pairings():
    """The pairing requests waiting in the broker's `generation` queue (taken off it), as a worker would
    receive them."""
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    found = []
    for raw in broker.lrange("generation", 0, -1):
        message = json.loads(raw)
        if message["headers"]["task"] != ANSWERS_PAIR_TASK:
            continue
        broker.lrem("generation", 1, raw)
        _, kwargs, _ = json.loads(base64.b64decode(message["body"]))
        found.append(kwargs)
    return found


def test_the_admin_page_sends_the_pairing_to_a_worker_and_refuses_what_cannot_be_met(admin_client):
    source, checkpoint, _ = writing_project(prompts=2, writers=2)
    judged = ProjectFactory()
    url = reverse("admin:feedback_project_compare_answers", args=[judged.pk])
    queued_pairings()

    page = admin_client.get(url)
    assert page.status_code == 200
    assert source.name in page.content.decode()  # offered: its prompts have answers that count
    change = admin_client.get(reverse("admin:feedback_project_change", args=[judged.pk]))
    assert url in change.content.decode()

    sent = admin_client.post(url, {"source": source.pk, "against": checkpoint.pk, "seed": 3})
    assert sent.status_code == 302
    assert not Comparison.objects.filter(project=judged).exists()  # the worker makes them
    (request,) = queued_pairings()
    assert request == {
        "project_id": judged.pk,
        "source_id": source.pk,
        "against_id": checkpoint.pk,
        "seed": 3,
    }
    assert answers_pair(**request).startswith("4 comparison(s) created")
    assert Comparison.objects.filter(project=judged).count() == 4

    ranking = ProjectFactory(comparison_mode="ranking", responses_per_comparison=3)
    refused = admin_client.post(
        reverse("admin:feedback_project_compare_answers", args=[ranking.pk]),
        {"source": source.pk, "against": checkpoint.pk, "seed": 0},
    )
    assert refused.status_code == 200
    assert "compared in pairs" in refused.content.decode()
    assert queued_pairings() == []


def test_the_command_pairs_and_says_what_it_made(capsys):
    source, checkpoint, _ = writing_project(prompts=2, writers=2)
    judged = ProjectFactory()
    call_command("compare_answers", judged.slug, "--from", source.slug, "--against", checkpoint.name)
    assert "4 comparison(s) created from 4 people's answer(s) to 2 prompt(s)" in capsys.readouterr().out
    with pytest.raises(CommandError, match="No checkpoint is named"):
        call_command("compare_answers", judged.slug, "--against", "nobody")
    with pytest.raises(CommandError, match="demonstration project"):
        call_command("compare_answers", source.slug)


def test_both_export_sources_name_people_alike():
    from feedback.export.snapshot import judgment_high_water_mark
    from feedback.export.source import _groups_by_orm, _groups_by_stream

    source, checkpoint, _ = writing_project(prompts=2, writers=2)
    judged = ProjectFactory(slug="both-sources")
    answers_comparisons_create(project=judged, source=source, against=checkpoint)
    judge_people_against(judged)
    options = ExportOptions.from_mapping({"format": "judgments", "projects": [judged.slug]})
    mark = judgment_high_water_mark()
    by_stream = list(_groups_by_stream(options, high_water_mark=mark, full=True))
    by_orm = list(_groups_by_orm(options, high_water_mark=mark, full=True))
    assert by_stream == by_orm
    assert {entry.checkpoint for group in by_stream for entry in group.entries} == {PEOPLE, checkpoint.name}
