"""Starting, cancelling and reconciling generation runs (the web side: rows and messages, no worker)."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.utils import timezone

from feedback.models import GenerationChunk, GenerationRun, PolicyCheckpoint, Project
from feedback.sampling import SamplingParameters
from feedback.services.generation import (
    generation_reconcile,
    generation_run_cancel,
    generation_run_start,
    sample_seed,
)
from tests.factories import GenerationRunFactory, PolicyCheckpointFactory, ProjectFactory, PromptFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def project():
    project = ProjectFactory(current_checkpoint=PolicyCheckpointFactory(), samples_per_prompt=2)
    PromptFactory.create_batch(5, project=project)
    return project


def counts():
    return GenerationRun.objects.count(), GenerationChunk.objects.count()


def test_a_run_covers_the_projects_prompts_in_chunks_and_sends_them_after_commit(
    project, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        run = generation_run_start(project=project, chunk_size=2, seed=42)
    assert len(callbacks) == 1
    assert run.status == GenerationRun.Status.QUEUED
    assert (run.total_prompts, run.done_prompts, run.failed_prompts) == (5, 0, 0)
    assert run.checkpoint == project.current_checkpoint
    assert run.sampling_parameters == project.sampling_parameters().as_dict()
    prompt_ids = list(project.prompts.order_by("id").values_list("id", flat=True))
    chunks = list(run.chunks.order_by("index"))
    assert [chunk.prompt_ids for chunk in chunks] == [prompt_ids[0:2], prompt_ids[2:4], prompt_ids[4:5]]
    assert {chunk.status for chunk in chunks} == {GenerationChunk.Status.QUEUED}


def test_two_checkpoints_get_a_chunk_each_per_slice_of_prompts(project, django_capture_on_commit_callbacks):
    opponent = PolicyCheckpointFactory()
    with django_capture_on_commit_callbacks(execute=False):
        run = generation_run_start(
            project=project, opponent_checkpoint=opponent, samples_per_prompt=1, chunk_size=3
        )
    assert sorted(run.chunks.values_list("index", "checkpoint_id")) == sorted(
        (index, checkpoint.pk) for index in (0, 1) for checkpoint in (project.current_checkpoint, opponent)
    )


def test_a_selection_of_prompts_and_explicit_sampling(project, django_capture_on_commit_callbacks):
    chosen = list(project.prompts.order_by("id")[:2])
    with django_capture_on_commit_callbacks(execute=False):
        run = generation_run_start(
            project=project,
            prompts=chosen,
            sampling={"temperature": 0.5, "top_k": 20, "stop_strings": ["\nUser:"]},
        )
    assert run.total_prompts == 2
    assert run.chunks.get().prompt_ids == [prompt.pk for prompt in chosen]
    assert (
        run.sampling_parameters
        == SamplingParameters(temperature=0.5, top_k=20, stop_strings=("\nUser:",)).as_dict()
    )


@pytest.mark.parametrize(
    ("arguments", "field", "message"),
    [
        ({"samples_per_prompt": 1}, "samples_per_prompt", "need at least 2 samples per prompt"),
        ({"samples_per_prompt": 65}, "samples_per_prompt", "from 1 to 64"),
        ({"sampling": {"temperature": 9}}, "temperature", "from 0 to 5"),
        ({"sampling": {"beam_width": 4}}, "beam_width", "Unknown sampling parameter"),
        ({"sampling": {"stop_strings": ["a\x00b"]}}, "stop_strings", "cannot contain the NUL character"),
        ({"chunk_size": 0}, "chunk_size", "from 1 to 1000"),
        ({"seed": -1}, "seed", "from 0 to 2^63 - 1"),
        ({"prompts": []}, "prompts", "no prompts"),
    ],
)
def test_bad_arguments_are_refused_with_field_messages_and_nothing_written(
    project, arguments, field, message
):
    before = counts()
    with pytest.raises(ValidationError) as caught:
        generation_run_start(project=project, **arguments)
    assert message in " ".join(caught.value.message_dict[field])
    assert counts() == before


def test_refusals_about_checkpoints_and_prompts_of_other_projects(project):
    before = counts()
    with pytest.raises(ValidationError) as caught:
        generation_run_start(project=project, opponent_checkpoint=project.current_checkpoint)
    assert caught.value.message_dict["opponent_checkpoint"] == [
        "The opponent must be a different checkpoint."
    ]

    bare = ProjectFactory()
    PromptFactory(project=bare)
    with pytest.raises(ValidationError) as caught:
        generation_run_start(project=bare)
    assert "has no current checkpoint" in caught.value.message_dict["checkpoint"][0]

    invalid = PolicyCheckpointFactory(validation_status=PolicyCheckpoint.ValidationStatus.INVALID)
    with pytest.raises(ValidationError) as caught:
        generation_run_start(project=project, checkpoint=invalid)
    assert "failed validation" in caught.value.message_dict["checkpoint"][0]

    ranking = ProjectFactory(comparison_mode=Project.ComparisonMode.RANKING, responses_per_comparison=3)
    PromptFactory(project=ranking)
    with pytest.raises(ValidationError) as caught:
        generation_run_start(
            project=ranking,
            checkpoint=PolicyCheckpointFactory(),
            opponent_checkpoint=PolicyCheckpointFactory(),
        )
    assert caught.value.message_dict["opponent_checkpoint"] == [
        "Checkpoint against checkpoint needs a pairwise project."
    ]

    with pytest.raises(ValidationError) as caught:
        generation_run_start(project=project, prompts=[PromptFactory()])
    assert caught.value.message_dict["prompts"] == ["Every prompt must belong to the project."]
    assert counts() == before


def test_sample_seeds_are_stable_distinct_and_positive():
    seeds = {sample_seed(run_seed=7, prompt_id=p, sample_index=s) for p in range(50) for s in range(4)}
    assert len(seeds) == 200
    assert all(0 <= seed < 2**63 for seed in seeds)
    assert sample_seed(run_seed=7, prompt_id=3, sample_index=1) == sample_seed(
        run_seed=7, prompt_id=3, sample_index=1
    )
    assert sample_seed(run_seed=8, prompt_id=3, sample_index=1) != sample_seed(
        run_seed=7, prompt_id=3, sample_index=1
    )


def test_cancel_stops_unfinished_chunks_and_keeps_finished_ones(project, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        run = generation_run_start(project=project, chunk_size=2)
    first, second, _third = run.chunks.order_by("index")
    GenerationChunk.objects.filter(pk=first.pk).update(status=GenerationChunk.Status.DONE)
    GenerationChunk.objects.filter(pk=second.pk).update(status=GenerationChunk.Status.RUNNING)

    assert generation_run_cancel(run=run) is True
    run.refresh_from_db()
    assert run.status == GenerationRun.Status.CANCELLED
    assert run.finished_at is not None
    assert list(run.chunks.order_by("index").values_list("status", flat=True)) == [
        "done",
        "cancelled",
        "cancelled",
    ]
    assert generation_run_cancel(run=run) is False


def test_reconcile_resends_stale_chunks_once_per_period(project, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        run = generation_run_start(project=project, chunk_size=1)
    chunks = list(run.chunks.order_by("index"))
    long_ago = timezone.now() - timedelta(hours=1)
    GenerationChunk.objects.filter(pk=chunks[0].pk).update(status="running", heartbeat_at=long_ago)
    GenerationChunk.objects.filter(pk=chunks[1].pk).update(status="running", heartbeat_at=timezone.now())
    GenerationChunk.objects.filter(pk=chunks[2].pk).update(enqueued_at=long_ago)
    GenerationChunk.objects.filter(pk=chunks[3].pk).update(status="done")

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert generation_reconcile(stale_after=timedelta(minutes=10)) == 2
    assert len(callbacks) == 1
    statuses = dict(run.chunks.values_list("pk", "status"))
    assert [statuses[chunk.pk] for chunk in chunks] == ["queued", "running", "queued", "done", "queued"]
    # Sent again just now: not stale until another period passes.
    with django_capture_on_commit_callbacks(execute=False):
        assert generation_reconcile(stale_after=timedelta(minutes=10)) == 0
    # Chunks of finished runs are left alone.
    GenerationRun.objects.filter(pk=run.pk).update(status=GenerationRun.Status.CANCELLED)
    with django_capture_on_commit_callbacks(execute=False):
        assert generation_reconcile(stale_after=timedelta(0)) == 0


def test_reconcile_command_reports_the_count(project, capsys, django_capture_on_commit_callbacks):
    GenerationRunFactory(project=project)
    with django_capture_on_commit_callbacks(execute=False):
        generation_run_start(project=project, chunk_size=5)
        call_command("reconcile_generation", "--stale-after", "0")
    assert capsys.readouterr().out.strip() == "Re-enqueued 1 chunk(s)."
