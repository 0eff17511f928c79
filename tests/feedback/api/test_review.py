"""The review queue over REST: data engineers and admins read it, a project's reviewers and managers
read and decide it there (only there), annotators get 403; decisions keep the service's statuses."""

from __future__ import annotations

import pytest

from feedback.models import GoldVerdict, ProjectMembership, ReviewDecision, ReviewItem
from feedback.selectors import annotator_pseudonym
from tests.factories import AnnotatorFactory, ProjectFactory, UserFactory, judged_comparison
from tests.feedback.api.conftest import token_client

pytestmark = pytest.mark.django_db


def queued(project, choices, *, queued_at="2026-12-01T00:00Z", **fields) -> ReviewItem:
    return ReviewItem.objects.create(
        comparison=judged_comparison(project, choices, rationale="Looks right."),
        project=project,
        reasons=["low_agreement"],
        queued_at=queued_at,
        **fields,
    )


def member_api(project, username: str, role: str):
    user = UserFactory(username=username)
    ProjectMembership.objects.create(project=project, user=user, role=role)
    return token_client(user), user


def queue_url(slug: str) -> str:
    return f"/api/v1/projects/{slug}/review-queue"


def decision_url(item: ReviewItem) -> str:
    return f"/api/v1/projects/{item.project.slug}/review-items/{item.pk}/decision"


@pytest.fixture
def project():
    return ProjectFactory(slug="rq", gold_rate=0)


def test_who_may_read_and_decide_the_queue(project, engineer_api):
    other = ProjectFactory(slug="elsewhere", gold_rate=0)
    item = queued(project, ["a", "b", "tie"])
    reviewer_api, _ = member_api(project, "rev", "reviewer")
    manager_api, _ = member_api(project, "boss", "manager")
    annotator = AnnotatorFactory(username="ann")
    ProjectMembership.objects.create(project=project, user=annotator, role="annotator")
    annotator_api = token_client(annotator)
    other_reviewer_api, _ = member_api(other, "rev-elsewhere", "reviewer")
    body = {"submission_key": "decide-key-1", "action": "decide", "verdict": {"choice": "a"}}

    for client in (engineer_api, reviewer_api, manager_api):
        response = client.get(queue_url("rq"))
        assert response.status_code == 200
        assert [row["id"] for row in response.json()["results"]] == [item.pk]
    for client in (annotator_api, other_reviewer_api):
        assert client.get(queue_url("rq")).status_code == 403
        assert client.post(decision_url(item), body, format="json").status_code == 403
    assert other_reviewer_api.get(queue_url("elsewhere")).status_code == 200
    # A reviewer reads only the review endpoints: the project's quality is for data engineers.
    assert reviewer_api.get("/api/v1/projects/rq/quality").status_code == 403
    assert annotator_api.get("/api/v1/projects/rq/annotators").status_code == 403
    # Data engineers read the queue but decide nothing: deciding is a reviewer's or manager's role.
    refused = engineer_api.post(decision_url(item), body, format="json")
    assert refused.status_code == 403
    assert not ReviewDecision.objects.exists()
    assert reviewer_api.post(decision_url(item), body, format="json").status_code == 201


def test_an_item_shows_what_was_shown_and_every_judgment_under_a_pseudonym(project, engineer_api):
    item = queued(project, ["a", "b", "b"])
    row = engineer_api.get(queue_url("rq")).json()["results"][0]
    judges = list(item.comparison.judgments.order_by("created_at", "id"))
    assert [judgment["annotator"] for judgment in row["judgments"]] == [
        annotator_pseudonym(project_id=project.pk, annotator_id=judgment.annotator_id) for judgment in judges
    ]
    assert not any(judge.annotator.username in str(row) for judge in judges)
    assert [judgment["choice"] for judgment in row["judgments"]] == ["a", "b", "b"]
    assert [response["label"] for response in row["responses"]] == ["A", "B"]
    assert row["conversation"] == item.comparison.prompt.conversation
    assert (row["reasons"], row["status"], row["verdict"], row["expected"]) == (
        ["low_agreement"],
        "pending",
        None,
        None,
    )
    gold = queued(project, ["b", "b", "a"], queued_at="2026-12-02T00:00Z")
    type(gold.comparison).objects.filter(pk=gold.comparison_id).update(
        is_gold=True, required_judgments=None, status="open"
    )
    first = gold.comparison.entries.get(position=0).response_id
    GoldVerdict.objects.create(comparison_id=gold.comparison_id, verdict={"accepted": [str(first), "tie"]})
    rows = {row["id"]: row for row in engineer_api.get(queue_url("rq")).json()["results"]}
    assert rows[gold.pk]["expected"] == "A or tie"


def test_decisions_over_rest_keep_the_services_statuses(project):
    item = queued(project, ["a", "b", "tie"])
    later = queued(project, ["a", "b", "b"], queued_at="2026-12-02T00:00Z")
    first_api, _ = member_api(project, "first", "reviewer")
    second_api, _ = member_api(project, "second", "reviewer")
    body = {"submission_key": "rest-key-01", "action": "decide", "verdict": {"choice": "b", "strength": 1}}
    for bad, field in [
        ({**body, "verdict": {"choice": "z"}}, "verdict"),
        ({**body, "action": "approve"}, "action"),
        ({**body, "colour": "red"}, "colour"),
        ({"submission_key": "rest-key-02", "action": "retire"}, "reason"),
        ({**body, "submission_key": "short"}, "submission_key"),
    ]:
        response = first_api.post(decision_url(item), bad, format="json")
        assert response.status_code == 400, bad
        assert field in response.json()["errors"], response.json()
    assert not ReviewDecision.objects.exists()

    created = first_api.post(decision_url(item), body, format="json")
    assert created.status_code == 201
    assert created.json()["replayed"] is False
    assert (created.json()["previous_status"], created.json()["verdict"]["choice"]) == ("pending", "b")
    replay = first_api.post(decision_url(item), body, format="json")
    assert (replay.status_code, replay.json()["id"], replay.json()["replayed"]) == (
        200,
        created.json()["id"],
        True,
    )
    assert (
        first_api.post(decision_url(item), {**body, "verdict": {"choice": "a"}}, format="json").status_code
        == 422
    )
    conflict = second_api.post(decision_url(item), {**body, "submission_key": "rest-key-03"}, format="json")
    assert conflict.status_code == 409
    assert "already decided" in conflict.json()["detail"]
    missing = f"/api/v1/projects/rq/review-items/{item.pk + 1000}/decision"
    assert first_api.post(missing, body, format="json").status_code == 404
    # The queue now lists the other item; the decided one under status=decided.
    assert [row["id"] for row in first_api.get(queue_url("rq")).json()["results"]] == [later.pk]
    decided = first_api.get(queue_url("rq") + "?status=decided").json()["results"]
    assert [(row["id"], row["decided_by"], row["verdict"]["strength"]) for row in decided] == [
        (item.pk, "first", 1)
    ]
    assert first_api.get(queue_url("rq") + "?status=nonsense").status_code == 400
