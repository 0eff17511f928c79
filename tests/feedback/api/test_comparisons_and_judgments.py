"""Comparisons with their entries, and judgments with cursor pages and incremental pulls."""

from datetime import UTC, datetime, timedelta

import pytest

from feedback.models import Comparison, Judgment
from tests.factories import (
    AnnotatorFactory,
    ComparisonFactory,
    JudgmentFactory,
    ProjectFactory,
    PromptFactory,
)

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_a_comparison_shows_its_entries_in_display_order(engineer_api):
    comparison = ComparisonFactory(
        prompt=PromptFactory(project=ProjectFactory(slug="cmp"), external_id="p-1")
    )
    entries = list(comparison.entries.select_related("response__checkpoint").order_by("position"))
    body = engineer_api.get(f"/api/v1/comparisons/{comparison.pk}").json()
    assert {key: body[key] for key in ("id", "project", "prompt", "prompt_external_id", "status")} == {
        "id": comparison.pk,
        "project": "cmp",
        "prompt": comparison.prompt_id,
        "prompt_external_id": "p-1",
        "status": "open",
    }
    assert body["entries"] == [
        {
            "position": entry.position,
            "label": "AB"[entry.position],
            "response": entry.response_id,
            "source": "model",
            "checkpoint": entry.response.checkpoint.name,
            "checkpoint_id": entry.response.checkpoint_id,
            "text": entry.response.text,
            "finish_reason": "",
        }
        for entry in entries
    ]


def test_the_comparison_list_reads_in_a_fixed_number_of_queries(engineer_api, django_assert_max_num_queries):
    ComparisonFactory()
    with django_assert_max_num_queries(10) as few:
        engineer_api.get("/api/v1/comparisons")
    ComparisonFactory.create_batch(5)
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert len(engineer_api.get("/api/v1/comparisons").json()["results"]) == 6


def test_comparisons_filter(engineer_api):
    project = ProjectFactory(slug="mine")
    old = ComparisonFactory(prompt=PromptFactory(project=project), status=Comparison.Status.COMPLETED)
    new = ComparisonFactory(prompt=PromptFactory(project=project))
    elsewhere = ComparisonFactory()
    Comparison.objects.filter(pk=old.pk).update(created_at=T0)
    Comparison.objects.filter(pk__in=[new.pk, elsewhere.pk]).update(created_at=T0 + timedelta(days=1))

    def ids(**query):
        response = engineer_api.get("/api/v1/comparisons", query)
        assert response.status_code == 200, response.json()
        return [comparison["id"] for comparison in response.json()["results"]]

    assert ids() == [old.pk, new.pk, elsewhere.pk]
    assert ids(project="mine") == [old.pk, new.pk]
    assert ids(status="completed") == [old.pk]
    assert ids(created_after="2026-03-01T12:00:00Z") == [new.pk, elsewhere.pk]
    assert ids(created_before="2026-03-02T00:00:00+00:00", project="mine") == [old.pk]
    assert ids(prompt=new.prompt_id) == [new.pk]
    assert ids(generation_run=new.entries.first().response.run_id) == []  # the factory sets no run


@pytest.mark.parametrize(
    ("query", "errors"),
    [
        (
            {"created_after": "yesterday"},
            {
                "created_after": [
                    "Datetime has wrong format. Use one of these formats instead: "
                    "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]."
                ]
            },
        ),
        ({"status": "closed"}, {"status": ['"closed" is not a valid choice.']}),
        ({"prompt": "1.5"}, {"prompt": ["A valid integer is required."]}),
    ],
)
def test_bad_comparison_filters_are_400(engineer_api, query, errors):
    response = engineer_api.get("/api/v1/comparisons", query)
    assert response.status_code == 400
    assert response.json()["errors"] == errors


# --- judgments -------------------------------------------------------------------------------------------


@pytest.fixture
def judgments():
    """Five judgments whose update times are out of id order: 3, 1, 4, 0, 2 (by index)."""
    project = ProjectFactory(slug="judged")
    made = [
        JudgmentFactory(comparison=ComparisonFactory(prompt=PromptFactory(project=project))) for _ in range(5)
    ]
    for index, minutes in enumerate([3, 1, 4, 0, 2]):
        Judgment.objects.filter(pk=made[index].pk).update(updated_at=T0 + timedelta(minutes=minutes))
    return made


def pull(client, url: str, **query) -> list[int]:
    seen: list[int] = []
    response = client.get(url, query)
    while True:
        assert response.status_code == 200, response.json()
        body = response.json()
        assert len(body["results"]) <= int(query.get("page_size", 100))
        seen.extend(judgment["id"] for judgment in body["results"])
        if body["next"] is None:
            return seen
        response = client.get(body["next"])


def test_judgments_page_by_update_time_with_cursors(engineer_api, judgments):
    expected = [judgments[index].pk for index in (3, 1, 4, 0, 2)]
    assert pull(engineer_api, "/api/v1/judgments", page_size=2) == expected
    assert pull(engineer_api, "/api/v1/judgments") == expected


def test_equal_update_times_page_by_id(engineer_api, judgments):
    Judgment.objects.update(updated_at=T0)
    assert pull(engineer_api, "/api/v1/judgments", page_size=2) == sorted(j.pk for j in judgments)


def test_incremental_pulls_take_what_changed_after_a_moment(engineer_api, judgments):
    after = (T0 + timedelta(minutes=1)).isoformat()
    assert pull(engineer_api, "/api/v1/judgments", updated_after=after, page_size=1) == [
        judgments[index].pk for index in (4, 0, 2)
    ]
    # A judgment changed since shows up in the next pull.
    Judgment.objects.filter(pk=judgments[3].pk).update(updated_at=T0 + timedelta(minutes=9))
    assert pull(engineer_api, "/api/v1/judgments", updated_after=(T0 + timedelta(minutes=4)).isoformat()) == [
        judgments[3].pk
    ]


def test_previous_links_walk_back(engineer_api, judgments):
    first = engineer_api.get("/api/v1/judgments", {"page_size": 2}).json()
    second = engineer_api.get(first["next"]).json()
    back = engineer_api.get(second["previous"]).json()
    assert back["results"] == first["results"]


def test_judgments_filter_by_project_comparison_and_annotator(engineer_api, judgments):
    someone = AnnotatorFactory(username="someone")
    theirs = JudgmentFactory(annotator=someone)
    assert pull(engineer_api, "/api/v1/judgments", annotator="someone") == [theirs.pk]
    assert pull(engineer_api, "/api/v1/judgments", comparison=judgments[2].comparison_id) == [judgments[2].pk]
    assert sorted(pull(engineer_api, "/api/v1/judgments", project="judged")) == sorted(
        j.pk for j in judgments
    )


def test_a_judgment_in_full(engineer_api):
    judgment = JudgmentFactory(
        comparison=ComparisonFactory(prompt=PromptFactory(project=ProjectFactory(slug="full"))),
        rationale="A is more precise.",
        flags=["off_topic"],
        time_spent_ms=4200,
    )
    body = engineer_api.get(f"/api/v1/judgments/{judgment.pk}").json()
    assert {key: value for key, value in body.items() if key not in ("created_at", "updated_at")} == {
        "id": judgment.pk,
        "comparison": judgment.comparison_id,
        "project": "full",
        "annotator": judgment.annotator.username,
        "choice": "a",
        "ranking": [1, 2],
        "strength": 2,
        "ratings": {},
        "rationale": "A is more precise.",
        "flags": ["off_topic"],
        "time_spent_ms": 4200,
    }
    assert "submission_key" not in body


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"updated_after": "2026-13-01T00:00:00Z"}, "updated_after"),
        ({"comparison": "0"}, "comparison"),
        ({"annotator": "a" * 151}, "annotator"),
        ({"annotator": "nul\x00"}, "annotator"),
    ],
)
def test_bad_judgment_filters_are_400(engineer_api, query, field):
    response = engineer_api.get("/api/v1/judgments", query)
    assert response.status_code == 400
    assert list(response.json()["errors"]) == [field]


def test_entries_of_people_and_of_imported_answers_name_their_source(engineer_api):
    from feedback.models import Comparison, ComparisonResponse, Response
    from inference.pairing import answers_comparisons_create
    from tests.factories import writing_project

    source, checkpoint, _ = writing_project(prompts=1, writers=1, model_answers=1)
    judged = ProjectFactory()
    answers_comparisons_create(project=judged, source=source, against=checkpoint)
    mixed = Comparison.objects.get(project=judged)
    entries = engineer_api.get(f"/api/v1/comparisons/{mixed.pk}").json()["entries"]
    assert sorted((entry["source"], entry["checkpoint"], entry["checkpoint_id"]) for entry in entries) == [
        ("human", "people", None),
        ("model", checkpoint.name, checkpoint.pk),
    ]
    prompt = PromptFactory(project=judged)
    gold = Comparison.objects.create(project=judged, prompt=prompt, required_judgments=None, is_gold=True)
    for position in range(2):
        imported = Response.objects.create(
            prompt=prompt,
            source=Response.Source.IMPORTED,
            sample_index=position,
            text=f"Imported {position}.",
        )
        ComparisonResponse.objects.create(comparison=gold, response=imported, position=position)
    entries = engineer_api.get(f"/api/v1/comparisons/{gold.pk}").json()["entries"]
    assert [(entry["source"], entry["checkpoint"], entry["checkpoint_id"]) for entry in entries] == [
        ("imported", None, None)
    ] * 2
