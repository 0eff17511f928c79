"""Quality over REST: gold import and list, the project's figures and each annotator's, for data
engineers and admins; annotators get 403 on all of it."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from feedback.models import Comparison, Prompt
from feedback.services.quality import project_quality_refresh
from feedback.services.standing import annotator_suspend
from tests.factories import AdminFactory, AnnotatorFactory, ComparisonFactory, JudgmentFactory, ProjectFactory

pytestmark = pytest.mark.django_db

BASE = "/api/v1/projects/gq"


@pytest.fixture
def project():
    return ProjectFactory(slug="gq")


def jsonl(*records: dict) -> bytes:
    return "".join(json.dumps(record) + "\n" for record in records).encode()


LINE = {
    "id": "g1",
    "prompt": "2 + 2?",
    "responses": ["4", "5"],
    "expected": ["A", "tie"],
    "explanation": "Arithmetic.",
}


def test_gold_imports_as_a_file_or_a_body_and_lists_with_its_verdict(engineer_api, project):
    upload = SimpleUploadedFile("gold.jsonl", jsonl(LINE), content_type="application/x-ndjson")
    response = engineer_api.post(f"{BASE}/gold", {"file": upload}, format="multipart")
    assert response.status_code == 200, response.json()
    assert response.json() == {
        "created": 1,
        "unchanged": 0,
        "summary": "1 gold item(s) imported, 0 already there",
    }
    again = engineer_api.post(f"{BASE}/gold", jsonl(LINE), content_type="application/x-ndjson")
    assert again.json()["unchanged"] == 1
    (item,) = engineer_api.get(f"{BASE}/gold").json()["results"]
    four = next(response for response in item["responses"] if response["text"] == "4")
    assert item["expected"] == f"{four['label']} or tie"
    assert item["explanation"] == "Arithmetic."
    assert (item["prompt_id"], item["answers"], item["status"]) == ("g1", 0, "open")
    assert sorted(response["label"] for response in item["responses"]) == ["A", "B"]


def test_a_bad_gold_file_is_400_naming_every_line_and_stores_nothing(engineer_api, project):
    body = jsonl(LINE, {**LINE, "id": "g2", "expected": "Z"}, {**LINE, "id": "g3", "responses": ["only"]})
    response = engineer_api.post(f"{BASE}/gold", body, content_type="application/x-ndjson")
    assert response.status_code == 400
    assert response.json()["errors"]["file"] == [
        "line 2: expected: 'Z' is not a response here; use one of A, B.",
        "line 3: responses: this project compares 2 responses, the line gives 1",
    ]
    assert (Prompt.objects.count(), Comparison.objects.count()) == (0, 0)


def test_the_projects_figures_name_the_annotators(engineer_api, project):
    assert engineer_api.get(f"{BASE}/quality").status_code == 404  # not computed yet
    people = [AnnotatorFactory(username=name) for name in ("ann", "bob")]
    for index in range(25):
        comparison = ComparisonFactory(prompt__project=project, with_responses=2)
        for person, choice in zip(people, ["a", "a" if index % 5 else "b"], strict=True):
            JudgmentFactory(
                comparison=comparison,
                annotator=person,
                choice=choice,
                ranking=[1, 2] if choice == "a" else [2, 1],
            )
    project_quality_refresh(project_id=project.pk)
    body = engineer_api.get(f"{BASE}/quality").json()
    assert body["project"] == "gq"
    assert body["report"]["judgments"] == 50
    (pair,) = body["report"]["kappa"]["pairs"]
    assert (pair["first"], pair["second"], pair["shared"], pair["agreement"]) == ("ann", "bob", 25, 0.8)
    assert set(body["report"]["alpha"]) >= {"choice", "strength"}


def test_each_annotators_figures_come_with_their_standing(engineer_api, project):
    people = [AnnotatorFactory(username=name) for name in ("ann", "bob")]
    comparison = ComparisonFactory(prompt__project=project, with_responses=2)
    for person in people:
        JudgmentFactory(comparison=comparison, annotator=person, choice="a", ranking=[1, 2])
    annotator_suspend(project_id=project.pk, annotator_id=people[1].pk, actor=AdminFactory(), reason="Spam.")
    project_quality_refresh(project_id=project.pk)
    rows = {row["annotator"]: row for row in engineer_api.get(f"{BASE}/annotators").json()["results"]}
    assert (rows["ann"]["status"], rows["bob"]["status"], rows["bob"]["status_reason"]) == (
        "active",
        "suspended",
        "Spam.",
    )
    assert rows["ann"]["judgments"] == 1
    assert rows["ann"]["anomalies"] == []


@pytest.mark.parametrize("path", ["gold", "quality", "annotators"])
def test_annotators_are_refused_and_strangers_must_authenticate(annotator_api, anonymous_api, project, path):
    assert annotator_api.get(f"{BASE}/{path}").status_code == 403
    assert anonymous_api.get(f"{BASE}/{path}").status_code == 401
    assert (
        annotator_api.post(f"{BASE}/gold", jsonl(LINE), content_type="application/x-ndjson").status_code
        == 403
    )
    assert Comparison.objects.count() == 0
