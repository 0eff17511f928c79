"""The leaderboard over REST: 202 until a worker computed it, then the figures with both fits, the
matrices and the head-to-head report; bad filters get field messages; data engineers and admins only."""

from __future__ import annotations

import pytest

from feedback.models import LeaderboardReport
from feedback.services.leaderboard import LeaderboardFilters, leaderboard_refresh
from tests.factories import AnnotatorFactory, judge, planted_project, shown

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    project, base, instruct, lora = planted_project(judgments_per_pair=20)
    project.slug = "arena"
    project.save(update_fields=["slug"])
    return project, base, instruct, lora


def computed(project, **filters):
    """What the worker does for the row a request created."""
    row = LeaderboardReport.objects.get(project=project, key=LeaderboardFilters(**filters).key)
    return leaderboard_refresh(project_id=project.pk, key=row.key)


def test_the_leaderboard_is_pending_then_served_with_both_fits(engineer_api, world):
    project, base, _instruct, lora = world
    response = engineer_api.get("/api/v1/projects/arena/leaderboard", {"rounds": 200})
    assert response.status_code == 202, response.content
    assert response["Retry-After"] == "5"
    assert response.json()["status"] == "pending"
    assert response.json()["report"] is None
    computed(project, rounds=200)

    response = engineer_api.get("/api/v1/projects/arena/leaderboard", {"rounds": 200})
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["fresh"], body["filters"]["rounds"]) == ("ready", True, 200)
    report = body["report"]
    assert report["reference"]["name"] == "base"
    assert [entry["name"] for entry in report["checkpoints"]][-1] == "base"
    first = report["checkpoints"][0]
    assert set(first["raw"]) == {"score", "elo", "low", "high", "rank"}
    assert first["controlled"]["low"] <= first["controlled"]["elo"] <= first["controlled"]["high"]
    assert report["first_advantage"]["raw"]["win_probability"] > 0
    assert [row["feature"] for row in report["style"]] == ["length", "headers", "list items", "bold"]
    assert report["axes"][0]["key"] == "helpful"
    assert "pairs" not in report  # the head-to-head endpoint serves those

    # A new judgment: the figures in hand are served, marked not fresh, while new ones are computed.
    judge(shown(project, [base, lora]), AnnotatorFactory(), "b")
    body = engineer_api.get("/api/v1/projects/arena/leaderboard", {"rounds": 200}).json()
    assert body["fresh"] is False
    assert body["report"]["battles"] == 60


def test_the_matrices_and_the_head_to_head_report(admin_api, world):
    project, _base, _instruct, _lora = world
    assert admin_api.get("/api/v1/projects/arena/leaderboard/matrices").status_code == 202
    computed(project)
    matrices = admin_api.get("/api/v1/projects/arena/leaderboard/matrices").json()["matrix"]
    assert matrices["checkpoints"] == ["base", "instruct", "lora"]
    assert matrices["battles"][0][1] == 20
    assert matrices["battles"][0][0] == 0
    assert matrices["win_rate"][0][0] is None

    response = admin_api.get(
        "/api/v1/projects/arena/leaderboard/head-to-head", {"first": "instruct", "second": "base"}
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["met"] is True
    overall = body["overall"]
    assert overall["wins"] + overall["losses"] == 20
    assert overall["decisive_low"] <= overall["decisive_share"] <= overall["decisive_high"]
    assert [line["outcome"] for line in overall["shares"]] == ["wins", "losses", "ties", "both_bad"]
    assert body["predicted"] > 0.5
    assert {row["category"] for row in body["categories"]} == {"list", "explain"}
    assert body["axes"][0]["label"] == "Helpfulness"
    example = next(row for row in body["examples"] if row["outcome"] == "wins")
    assert {response["checkpoint"] for response in example["responses"]} == {"base", "instruct"}
    assert example["rationale"] == "clearer"
    mirrored = admin_api.get(
        "/api/v1/projects/arena/leaderboard/head-to-head", {"first": "base", "second": "instruct"}
    ).json()
    assert mirrored["overall"]["wins"] == overall["losses"]


def test_checkpoints_that_never_met_have_no_head_to_head(engineer_api, world):
    project, *_ = world
    from tests.factories import PolicyCheckpointFactory

    PolicyCheckpointFactory(name="stranger")
    engineer_api.get("/api/v1/projects/arena/leaderboard")
    computed(project)
    body = engineer_api.get(
        "/api/v1/projects/arena/leaderboard/head-to-head", {"first": "stranger", "second": "base"}
    ).json()
    assert (body["met"], body["overall"], body["examples"]) == (False, None, [])


def test_bad_parameters_get_a_message_each(engineer_api, world):
    response = engineer_api.get(
        "/api/v1/projects/arena/leaderboard",
        {"categories": "poems", "rounds": "7", "since": "soon", "both_bad": "loss", "reference": "nobody"},
    )
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"categories", "rounds", "since", "both_bad", "reference"}
    response = engineer_api.get("/api/v1/projects/arena/leaderboard", {"colour": "red"})
    assert response.status_code == 400
    assert "colour" in response.json()["errors"]
    response = engineer_api.get("/api/v1/projects/arena/leaderboard/head-to-head", {"first": "nobody"})
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"first", "second"}
    assert engineer_api.get("/api/v1/projects/nowhere/leaderboard").status_code == 404


def test_only_data_engineers_and_admins_read_it(client, world):
    from tests.feedback.api.conftest import token_client

    annotator = AnnotatorFactory()
    assert token_client(annotator).get("/api/v1/projects/arena/leaderboard").status_code == 403
    assert client.get("/api/v1/projects/arena/leaderboard").status_code == 401
    assert not LeaderboardReport.objects.exists()


def test_people_meet_a_checkpoint_on_the_leaderboard_and_head_to_head(engineer_api, admin_client):
    from django.urls import reverse

    from inference.pairing import answers_comparisons_create
    from tests.factories import ProjectFactory, judge_people_against, writing_project

    source, checkpoint, _ = writing_project(prompts=5, writers=2)
    judged = ProjectFactory(slug="writers")
    answers_comparisons_create(project=judged, source=source, against=checkpoint)
    judge_people_against(judged)
    engineer_api.get("/api/v1/projects/writers/leaderboard")
    computed(judged)

    names = [
        entry["name"]
        for entry in engineer_api.get("/api/v1/projects/writers/leaderboard").json()["report"]["checkpoints"]
    ]
    assert sorted(names) == sorted(["people", checkpoint.name])
    response = engineer_api.get(
        "/api/v1/projects/writers/leaderboard/head-to-head", {"first": "people", "second": checkpoint.name}
    )
    assert response.status_code == 200, response.content
    overall = response.json()["overall"]
    assert (overall["wins"], overall["losses"]) == (24, 6)
    unknown = engineer_api.get(
        "/api/v1/projects/writers/leaderboard/head-to-head", {"first": "writers", "second": checkpoint.name}
    )
    assert unknown.status_code == 400
    assert "nor is it 'people'" in unknown.json()["errors"]["first"][0]

    # The admin page lists people without a link (no checkpoint to open) and offers them head to head.
    page = admin_client.get(
        reverse("admin:feedback_project_leaderboard", args=[judged.pk]),
        {
            "filtered": "on",
            "exclude_flagged": "on",
            "exclude_suspended": "on",
            "adjudicated_wins": "on",
            "both_bad": "apart",
            "first": "people",
            "second": checkpoint.name,
        },
    ).content.decode()
    assert '<option value="people"' in page
    assert "<td>people <span" in page
    assert f'<h2 id="head-to-head">people against {checkpoint.name}</h2>' in page
    assert '<p id="head-to-head-summary">24 wins, 6 losses' in page
