"""The reviewer's pages over HTTP: who may see them, what they show (annotators as pseudonyms, untrusted
text escaped), and the decision endpoint's statuses."""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client

from feedback.models import Comparison, GoldVerdict, ProjectMembership, Response, ReviewDecision, ReviewItem
from feedback.selectors import annotator_pseudonym
from tests.factories import ProjectFactory, UserFactory, judged_comparison

pytestmark = pytest.mark.django_db

HOSTILE = "<script>alert('x')</script><img src=x onerror=alert(1)>"


def judged(project, choices, *, rationale="", queued_at="2026-12-01T00:00Z") -> ReviewItem:
    comparison = judged_comparison(project, choices, rationale=rationale)
    return ReviewItem.objects.create(
        comparison=comparison, project=project, reasons=["low_agreement"], queued_at=queued_at
    )


def member_client(project, username: str, role: str) -> tuple[Client, object]:
    user = UserFactory(username=username)
    ProjectMembership.objects.create(project=project, user=user, role=role)
    client = Client()
    client.force_login(user)
    return client, user


def decide(client, item, body):
    url = f"/projects/{item.project.slug}/review/{item.pk}/decision"
    data = body if isinstance(body, str) else json.dumps(body)
    return client.post(url, data, content_type="application/json")


@pytest.fixture
def project():
    return ProjectFactory(slug="rv", gold_rate=0)


def test_only_reviewers_and_managers_see_the_queue(project, client):
    item = judged(project, ["a", "b", "tie"])
    urls = ["/projects/rv/review", f"/projects/rv/review/{item.pk}", "/projects/rv/review/next"]
    for url in urls:
        assert client.get(url).status_code == 302  # to the login page
    annotator, _ = member_client(project, "just-annotates", "annotator")
    outsider = Client()
    outsider.force_login(UserFactory(username="outsider"))
    for url in urls:
        assert annotator.get(url).status_code == 403
        assert outsider.get(url).status_code == 404
    body = {"submission_key": "key-00001", "action": "decide", "verdict": {"choice": "a"}}
    assert decide(annotator, item, body).status_code == 403
    assert decide(outsider, item, body).status_code == 404
    assert decide(Client(), item, body).status_code == 401
    assert not ReviewDecision.objects.exists()
    for role in ("reviewer", "manager"):
        allowed, _ = member_client(project, f"a-{role}", role)
        assert allowed.get(urls[0]).status_code == 200
        assert allowed.get(urls[1]).status_code == 200
    # The project list offers the queue to reviewers only.
    assert "Review (1 waiting)" in allowed.get("/").content.decode()
    assert "Review (" not in annotator.get("/").content.decode()


def test_the_item_page_shows_judgments_under_pseudonyms_and_escapes_untrusted_text(project):
    item = judged(project, ["a", "b", "tie"], rationale=HOSTILE)
    Response.objects.filter(pk=item.comparison.entries.get(position=0).response_id).update(text=HOSTILE)
    other = judged(project, ["b", "b", "a"], queued_at="2026-12-02T00:00Z")
    client, _ = member_client(project, "reviewer", "reviewer")
    page = client.get(f"/projects/rv/review/{item.pk}").content.decode()
    judges = {judgment.annotator for judgment in item.comparison.judgments.all()}
    for judge in judges:
        assert judge.username not in page
        assert annotator_pseudonym(project_id=project.pk, annotator_id=judge.pk) in page
    # The same annotator reads the same on another item of the project, and differently in another project.
    other_page = client.get(f"/projects/rv/review/{other.pk}").content.decode()
    first_judge = next(iter(judges))
    assert annotator_pseudonym(project_id=project.pk, annotator_id=first_judge.pk) in other_page
    assert annotator_pseudonym(project_id=project.pk + 1, annotator_id=first_judge.pk) != (
        annotator_pseudonym(project_id=project.pk, annotator_id=first_judge.pk)
    )
    assert "<script>alert" not in page
    assert re.search(r"<img[^>]*onerror", page) is None  # the response's markup is sanitized
    assert page.count("&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;") == 3  # the three rationales
    assert "1 × A better, 1 × B better, 1 × Tie" in re.sub(r"\s+", " ", page)


def test_a_gold_item_shows_the_expected_verdict_and_which_judgments_matched(project):
    item = judged(project, ["a", "b", "b"])
    Comparison.objects.filter(pk=item.comparison_id).update(
        is_gold=True, required_judgments=None, status="open"
    )
    first = item.comparison.entries.get(position=0).response_id
    GoldVerdict.objects.create(comparison_id=item.comparison_id, verdict={"accepted": [str(first)]})
    client, _ = member_client(project, "reviewer", "reviewer")
    page = client.get(f"/projects/rv/review/{item.pk}").content.decode()
    assert re.search(r'id="gold-expected">A<', page)
    assert page.count("not as expected") == 2
    assert page.count('"badge ok">as expected') == 1


def test_a_decision_is_recorded_once_and_the_statuses_say_what_went_wrong(project):
    item = judged(project, ["a", "b", "tie"])
    later = judged(project, ["a", "b", "b"], queued_at="2026-12-02T00:00Z")
    first, first_user = member_client(project, "first", "reviewer")
    second, _ = member_client(project, "second", "manager")
    body = {"submission_key": "key-decide-1", "action": "decide", "verdict": {"choice": "b", "strength": 2}}
    # Bad input: 400 with field messages, nothing written.
    for bad, field in [
        ({**body, "verdict": {"choice": "c"}}, "verdict"),
        ({**body, "action": "approve"}, "action"),
        ({**body, "extra": 1}, "non_field_errors"),
        ({"submission_key": "key-send-1", "action": "send_back", "reason": " "}, "reason"),
        ("{not json", "non_field_errors"),
    ]:
        response = decide(first, item, bad)
        assert response.status_code == 400, bad
        assert field in response.json()["errors"]
    assert not ReviewDecision.objects.exists()

    response = decide(first, item, body)
    assert response.status_code == 201
    assert response.json()["next_url"] == f"/projects/rv/review/next?after={item.pk}"
    assert decide(first, item, body).status_code == 200  # a retry replays
    assert decide(first, item, {**body, "verdict": {"choice": "a"}}).status_code == 422  # key reused
    conflict = decide(second, item, {**body, "submission_key": "key-other-1"})
    assert conflict.status_code == 409
    assert "already decided by first" in conflict.json()["detail"]
    item.refresh_from_db()
    assert (item.status, item.verdict["choice"], item.verdict["strength"], item.decided_by) == (
        "decided",
        "b",
        2,
        first_user,
    )
    assert ReviewDecision.objects.count() == 1
    # The next item, then the queue once none waits; a decided item's page has no form.
    assert first.get(response.json()["next_url"])["Location"] == f"/projects/rv/review/{later.pk}"
    decide(
        first, later, {"submission_key": "key-retire-1", "action": "retire", "reason": "Duplicate prompt."}
    )
    assert first.get("/projects/rv/review/next")["Location"] == "/projects/rv/review"
    decided_page = first.get(f"/projects/rv/review/{item.pk}").content.decode()
    assert 'id="already-decided"' in decided_page
    assert 'form id="review"' not in decided_page
    assert "Nothing waits for a review" in first.get("/projects/rv/review").content.decode()


def test_the_queue_lists_waiting_items_oldest_first(project):
    newer = judged(project, ["a", "b", "tie"], queued_at="2026-12-03T00:00Z")
    older = judged(project, ["a", "b", "b"], queued_at="2026-12-01T00:00Z")
    client, _ = member_client(project, "reviewer", "reviewer")
    page = client.get("/projects/rv/review").content.decode()
    assert page.index(f"#{older.pk}<") < page.index(f"#{newer.pk}<")
    assert "Waiting for a reviewer: <strong>2</strong>" in page
    assert client.get("/projects/rv/review/next")["Location"] == f"/projects/rv/review/{older.pk}"
    assert (
        client.get(f"/projects/rv/review/next?after={older.pk}")["Location"]
        == f"/projects/rv/review/{newer.pk}"
    )
    # Past the last, round to the start again.
    assert (
        client.get(f"/projects/rv/review/next?after={newer.pk}")["Location"]
        == f"/projects/rv/review/{older.pk}"
    )
