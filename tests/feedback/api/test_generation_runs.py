"""Generation runs over the API: start one through the service, read them, poll their status."""

import pytest

from feedback.models import GenerationChunk, GenerationRun
from tests.factories import GenerationRunFactory, PolicyCheckpointFactory, ProjectFactory, PromptFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/generation-runs"


@pytest.fixture
def project():
    project = ProjectFactory(slug="gen", current_checkpoint=PolicyCheckpointFactory(name="current"))
    PromptFactory.create_batch(3, project=project)
    return project


def counts() -> tuple[int, int]:
    return GenerationRun.objects.count(), GenerationChunk.objects.count()


def test_starting_a_run_answers_201_with_its_status(
    engineer_api, data_engineer, project, django_capture_on_commit_callbacks
):
    opponent = PolicyCheckpointFactory(name="challenger")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = engineer_api.post(
            URL,
            {
                "project": "gen",
                "opponent_checkpoint": opponent.pk,
                "samples_per_prompt": 1,
                "sampling": {"temperature": 0.5, "max_new_tokens": 64},
                "seed": 7,
                "chunk_size": 2,
            },
            format="json",
        )
    assert response.status_code == 201
    run = GenerationRun.objects.get()
    assert response["Location"] == f"/api/v1/generation-runs/{run.pk}"
    body = response.json()
    assert {
        key: body[key] for key in ("id", "project", "checkpoint_name", "opponent_checkpoint_name", "status")
    } == {
        "id": run.pk,
        "project": "gen",
        "checkpoint_name": "current",
        "opponent_checkpoint_name": "challenger",
        "status": "queued",
    }
    assert (body["total_prompts"], body["seed"], body["chunk_size"], body["created_by"]) == (
        3,
        7,
        2,
        "engineer-user",
    )
    assert body["sampling_parameters"]["temperature"] == 0.5
    assert run.created_by == data_engineer
    assert run.chunks.count() == 4  # two slices of prompts × two checkpoints
    assert len(callbacks) == 1  # the chunks are sent once the transaction commits


def test_a_run_with_the_project_defaults(engineer_api, project, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        response = engineer_api.post(URL, {"project": "gen"}, format="json")
    assert response.status_code == 201
    run = GenerationRun.objects.get()
    assert (run.checkpoint, run.samples_per_prompt) == (
        project.current_checkpoint,
        project.samples_per_prompt,
    )
    assert run.sampling_parameters == project.sampling_parameters().as_dict()


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({}, {"project": ["This field is required."]}),
        ({"project": "nope"}, {"project": ["No project with slug 'nope'."]}),
        ({"project": "gen", "checkpoint": 999_999}, {"checkpoint": ["No checkpoint with id 999999."]}),
        (
            {"project": "gen", "samples_per_prompt": 0},
            {"samples_per_prompt": ["Ensure this value is greater than or equal to 1."]},
        ),
        (
            {"project": "gen", "samples_per_prompt": 1},
            {
                "samples_per_prompt": [
                    "Comparisons of 2 responses from one checkpoint need at least 2 samples per prompt."
                ]
            },
        ),
        (
            {"project": "gen", "sampling": {"temperature": 9}},
            {"sampling.temperature": ["Must be a number from 0 to 5."]},
        ),
        ({"project": "gen", "sampling": {"beam": 4}}, {"sampling.beam": ["Unknown sampling parameter."]}),
        (
            {"project": "gen", "sampling": {"stop_strings": ["a\x00"]}},
            {"sampling.stop_strings": ["A stop string cannot contain the NUL character."]},
        ),
        (
            {"project": "gen", "sampling": [1]},
            {"sampling": ['Expected a dictionary of items but got type "list".']},
        ),
        ({"project": "gen", "seed": -1}, {"seed": ["Ensure this value is greater than or equal to 0."]}),
        (
            {"project": "gen", "chunk_size": 1001},
            {"chunk_size": ["Ensure this value is less than or equal to 1000."]},
        ),
        (
            {"project": "gen", "checkpoint": "CURRENT", "opponent_checkpoint": "CURRENT"},
            {"opponent_checkpoint": ["The opponent must be a different checkpoint."]},
        ),
    ],
)
def test_bad_runs_are_400_and_start_nothing(engineer_api, project, body, errors):
    body = {
        key: project.current_checkpoint_id if value == "CURRENT" else value for key, value in body.items()
    }
    response = engineer_api.post(URL, body, format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == errors
    assert counts() == (0, 0)


def test_a_project_without_a_checkpoint_gets_the_services_message(engineer_api):
    bare = ProjectFactory(slug="bare", name="Bare")
    PromptFactory(project=bare)
    response = engineer_api.post(URL, {"project": "bare"}, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "detail": "No run was started: fix the fields named in `errors`.",
        "errors": {"checkpoint": ["The project Bare has no current checkpoint; choose one."]},
    }
    assert counts() == (0, 0)


@pytest.mark.parametrize("body", ["[1, 2]", '"gen"', "{bad json"])
def test_a_body_that_is_not_an_object_is_400(engineer_api, project, body):
    response = engineer_api.generic("POST", URL, body, content_type="application/json")
    assert response.status_code == 400
    assert set(response.json()) == {"detail"} | ({"errors"} if body != "{bad json" else set())
    assert counts() == (0, 0)


def test_annotators_cannot_start_runs(annotator_api, project):
    assert annotator_api.post(URL, {"project": "gen"}, format="json").status_code == 403
    assert counts() == (0, 0)


def test_runs_list_newest_first_and_filter(engineer_api, project):
    other = PolicyCheckpointFactory(name="other")
    first = GenerationRunFactory(project=project, checkpoint=project.current_checkpoint, status="completed")
    second = GenerationRunFactory(
        project=project, checkpoint=other, opponent_checkpoint=project.current_checkpoint
    )
    third = GenerationRunFactory(checkpoint=other)
    assert [r["id"] for r in engineer_api.get(URL).json()["results"]] == [third.pk, second.pk, first.pk]
    assert [r["id"] for r in engineer_api.get(URL, {"project": "gen"}).json()["results"]] == [
        second.pk,
        first.pk,
    ]
    assert [r["id"] for r in engineer_api.get(URL, {"status": "completed"}).json()["results"]] == [first.pk]
    by_checkpoint = engineer_api.get(URL, {"checkpoint": project.current_checkpoint_id}).json()["results"]
    assert [r["id"] for r in by_checkpoint] == [second.pk, first.pk]


@pytest.mark.parametrize(
    ("query", "errors"),
    [
        ({"status": "done"}, {"status": ['"done" is not a valid choice.']}),
        (
            {"project": "not a slug"},
            {"project": ['Enter a valid "slug" consisting of letters, numbers, underscores or hyphens.']},
        ),
        ({"checkpoint": "-3"}, {"checkpoint": ["Ensure this value is greater than or equal to 1."]}),
    ],
)
def test_bad_run_filters_are_400(engineer_api, query, errors):
    response = engineer_api.get(URL, query)
    assert response.status_code == 400
    assert response.json()["errors"] == errors


def test_a_runs_detail_and_status(engineer_api, project):
    run = GenerationRunFactory(project=project, status="running", total_prompts=10, done_prompts=4)
    detail = engineer_api.get(f"{URL}/{run.pk}").json()
    assert (detail["id"], detail["status"], detail["done_prompts"]) == (run.pk, "running", 4)
    assert engineer_api.get(f"{URL}/{run.pk}/status").json() == {
        "id": run.pk,
        "status": "running",
        "is_finished": False,
        "total_prompts": 10,
        "done_prompts": 4,
        "failed_prompts": 0,
        "error": "",
        "started_at": None,
        "finished_at": None,
    }
