"""A chunk's life on a worker: claim, store batches, complete or fail; exactly-once under redelivery.

The services are driven here with generated results written by the test (the backends have their own
tests); the real worker process runs them in tests/e2e.
"""

from datetime import timedelta

import pytest
from django.test import override_settings

from feedback.models import Comparison, GenerationChunk, GenerationRun, Response
from feedback.services.generation import (
    generation_reconcile,
    generation_run_cancel,
    generation_run_start,
    sample_seed,
)
from inference.backends.base import GeneratedText
from inference.services import (
    generation_chunk_claim,
    generation_chunk_complete,
    generation_chunk_fail,
    generation_chunk_release,
    generation_chunk_store,
    generation_run_fail,
)
from tests.factories import PolicyCheckpointFactory, ProjectFactory, PromptFactory

pytestmark = pytest.mark.django_db


def answer(work, *, texts=None):
    """One distinct answer per request of the claimed work."""
    return [
        GeneratedText(
            key=request.key,
            text=(texts or {}).get(request.key, f"answer {request.key} of {work.spec.checkpoint_id}"),
            token_count=3,
            finish_reason="eos",
            latency_seconds=0.25,
        )
        for request in work.requests
    ]


@pytest.fixture
def start(django_capture_on_commit_callbacks):
    def start(*, prompts=4, chunk_size=2, opponent=False, samples=2):
        project = ProjectFactory(current_checkpoint=PolicyCheckpointFactory())
        PromptFactory.create_batch(prompts, project=project)
        with django_capture_on_commit_callbacks(execute=False):
            return generation_run_start(
                project=project,
                chunk_size=chunk_size,
                samples_per_prompt=samples,
                opponent_checkpoint=PolicyCheckpointFactory() if opponent else None,
                seed=11,
            )

    return start


def chunk_ids(run):
    return list(run.chunks.order_by("index", "checkpoint_id").values_list("id", flat=True))


def run_chunk(chunk_id, **kwargs):
    work = generation_chunk_claim(chunk_id=chunk_id)
    assert work is not None
    assert generation_chunk_store(work=work, results=answer(work, **kwargs)) is True
    assert generation_chunk_complete(work=work) is True
    return work


def test_a_claimed_chunk_asks_for_every_sample_with_its_seed(start):
    run = start(prompts=3, chunk_size=2)
    work = generation_chunk_claim(chunk_id=chunk_ids(run)[0])
    prompt_ids = run.chunks.get(index=0).prompt_ids
    assert [request.key for request in work.requests] == [(p, s) for p in prompt_ids for s in (0, 1)]
    assert [request.seed for request in work.requests] == [
        sample_seed(run_seed=11, prompt_id=p, sample_index=s) for p in prompt_ids for s in (0, 1)
    ]
    assert work.requests[0].conversation == run.project.prompts.get(pk=prompt_ids[0]).conversation
    assert work.attempt == 1
    assert work.sampling.as_dict() == run.sampling_parameters
    run.refresh_from_db()
    assert run.status == GenerationRun.Status.RUNNING
    # A second message for the same chunk finds it taken.
    assert generation_chunk_claim(chunk_id=chunk_ids(run)[0]) is None


def test_a_whole_run_stores_pairs_counts_and_completes(start):
    run = start(prompts=3, chunk_size=2)
    for chunk_id in chunk_ids(run):
        run_chunk(chunk_id)
    run.refresh_from_db()
    assert (run.status, run.done_prompts, run.failed_prompts) == (GenerationRun.Status.COMPLETED, 3, 0)
    assert run.finished_at is not None
    assert Response.objects.filter(run=run).count() == 6
    stored = Response.objects.filter(run=run).first()
    assert (stored.token_count, stored.finish_reason, stored.latency_seconds) == (3, "eos", 0.25)
    assert stored.seed == sample_seed(
        run_seed=11, prompt_id=stored.prompt_id, sample_index=stored.sample_index
    )
    assert stored.sampling_parameters == run.sampling_parameters
    assert Comparison.objects.filter(generation_run=run).count() == 3
    assert set(run.chunks.values_list("status", flat=True)) == {"done"}
    # A late duplicate message does nothing.
    assert generation_chunk_claim(chunk_id=chunk_ids(run)[0]) is None


def test_a_redelivered_chunk_generates_only_what_is_missing_and_nothing_twice(start):
    run = start(prompts=2, chunk_size=2)
    chunk_id = chunk_ids(run)[0]
    first = generation_chunk_claim(chunk_id=chunk_id)
    half = answer(first)[:3]
    assert generation_chunk_store(work=first, results=half)
    assert generation_chunk_release(work=first, error="worker lost")
    second = generation_chunk_claim(chunk_id=chunk_id)
    assert second.attempt == 2
    assert [request.key for request in second.requests] == [request.key for request in first.requests][3:]
    # Storing the first attempt's batch again (a slow duplicate) creates nothing twice.
    assert generation_chunk_store(work=second, results=half + answer(second)) is True
    assert generation_chunk_complete(work=second) is True
    assert Response.objects.filter(run=run).count() == 4
    run.refresh_from_db()
    assert run.status == GenerationRun.Status.COMPLETED


def test_complete_waits_for_every_sample(start):
    run = start(prompts=2, chunk_size=2)
    work = generation_chunk_claim(chunk_id=chunk_ids(run)[0])
    generation_chunk_store(work=work, results=answer(work)[:1])
    assert generation_chunk_complete(work=work) is False
    assert run.chunks.get().status == GenerationChunk.Status.RUNNING


def test_identical_samples_are_done_but_not_paired(start):
    run = start(prompts=1, chunk_size=1)
    work = generation_chunk_claim(chunk_id=chunk_ids(run)[0])
    generation_chunk_store(
        work=work, results=answer(work, texts={request.key: "same" for request in work.requests})
    )
    generation_chunk_complete(work=work)
    run.refresh_from_db()
    assert (run.status, run.done_prompts) == (GenerationRun.Status.COMPLETED, 1)
    assert Comparison.objects.filter(generation_run=run).count() == 0


def test_two_checkpoints_pair_when_the_second_chunk_of_a_slice_completes(start):
    run = start(prompts=2, chunk_size=2, opponent=True, samples=1)
    ours, theirs = chunk_ids(run)
    run_chunk(ours)
    run.refresh_from_db()
    assert (run.done_prompts, Comparison.objects.filter(generation_run=run).count()) == (0, 0)
    run_chunk(theirs)
    run.refresh_from_db()
    assert (run.status, run.done_prompts) == (GenerationRun.Status.COMPLETED, 2)
    comparisons = Comparison.objects.filter(generation_run=run)
    assert comparisons.count() == 2
    for comparison in comparisons:
        assert sorted(comparison.responses.values_list("checkpoint_id", flat=True)) == sorted(
            run.checkpoint_ids
        )


@override_settings(RANKWISE_GENERATION_MAX_ATTEMPTS=3)
def test_a_chunk_that_keeps_failing_ends_failed_and_the_run_goes_on(start):
    run = start(prompts=4, chunk_size=2)
    failing, healthy = chunk_ids(run)
    for attempt in (1, 2, 3):
        work = generation_chunk_claim(chunk_id=failing)
        assert work.attempt == attempt
        if attempt < 3:
            assert generation_chunk_release(work=work, error=f"CUDA out of memory #{attempt}")
        else:
            assert generation_chunk_fail(work=work, error="CUDA out of memory #3")
    chunk = GenerationChunk.objects.get(pk=failing)
    assert (chunk.status, chunk.attempts, chunk.error) == ("failed", 3, "CUDA out of memory #3")
    run.refresh_from_db()
    assert (run.status, run.failed_prompts) == (GenerationRun.Status.RUNNING, 2)

    run_chunk(healthy)
    run.refresh_from_db()
    assert (run.status, run.done_prompts, run.failed_prompts) == (GenerationRun.Status.COMPLETED, 2, 2)


@override_settings(RANKWISE_GENERATION_MAX_ATTEMPTS=3)
def test_a_chunk_whose_worker_dies_every_time_fails_at_the_next_claim(start):
    run = start(prompts=1, chunk_size=1)
    (chunk_id,) = chunk_ids(run)
    for _ in range(3):
        assert generation_chunk_claim(chunk_id=chunk_id) is not None
        GenerationChunk.objects.filter(pk=chunk_id).update(status="queued")  # what reconcile does
    assert generation_chunk_claim(chunk_id=chunk_id) is None
    chunk = GenerationChunk.objects.get(pk=chunk_id)
    assert chunk.status == "failed"
    assert chunk.error == "Gave up after 3 attempts: its worker was lost during every attempt"
    run.refresh_from_db()
    assert (run.status, run.failed_prompts, run.error) == (
        GenerationRun.Status.FAILED,
        1,
        "Every chunk failed; see the chunks' errors.",
    )


def test_a_failed_sibling_counts_its_prompts_once(start):
    run = start(prompts=2, chunk_size=2, opponent=True, samples=1)
    ours, theirs = chunk_ids(run)
    theirs_work = generation_chunk_claim(chunk_id=theirs)
    generation_chunk_fail(work=generation_chunk_claim(chunk_id=ours), error="boom")
    generation_chunk_fail(work=theirs_work, error="boom too")
    run.refresh_from_db()
    assert (run.status, run.done_prompts, run.failed_prompts) == (GenerationRun.Status.FAILED, 0, 2)


def test_the_sibling_of_a_failed_chunk_is_not_generated_for_nothing(start):
    run = start(prompts=2, chunk_size=2, opponent=True, samples=1)
    ours, theirs = chunk_ids(run)
    generation_chunk_fail(work=generation_chunk_claim(chunk_id=ours), error="boom")
    assert generation_chunk_claim(chunk_id=theirs) is None
    assert GenerationChunk.objects.get(pk=theirs).status == "cancelled"
    run.refresh_from_db()
    assert (run.status, run.done_prompts, run.failed_prompts) == (GenerationRun.Status.FAILED, 0, 2)
    assert Comparison.objects.filter(generation_run=run).count() == 0


def test_a_taken_over_chunk_stops_its_old_worker(start, django_capture_on_commit_callbacks):
    run = start(prompts=1, chunk_size=1)
    (chunk_id,) = chunk_ids(run)
    old = generation_chunk_claim(chunk_id=chunk_id)
    GenerationChunk.objects.filter(pk=chunk_id).update(heartbeat_at=old_time())
    with django_capture_on_commit_callbacks(execute=False):
        assert generation_reconcile(stale_after=timedelta(minutes=1)) == 1
    new = generation_chunk_claim(chunk_id=chunk_id)
    assert new.attempt == 2
    # The old worker's batch is kept (the samples are valid), but it learns it lost the chunk.
    assert generation_chunk_store(work=old, results=answer(old)) is False
    assert generation_chunk_complete(work=old) is False
    assert generation_chunk_release(work=old, error="late") is False
    assert generation_chunk_complete(work=new) is True
    assert Response.objects.filter(run=run).count() == 2


def old_time():
    from django.utils import timezone

    return timezone.now() - timedelta(hours=1)


def test_cancelling_stops_a_running_chunk_and_queued_ones_never_start(start):
    run = start(prompts=4, chunk_size=2)
    running, queued = chunk_ids(run)
    work = generation_chunk_claim(chunk_id=running)
    generation_run_cancel(run=run)
    assert generation_chunk_store(work=work, results=answer(work)) is False
    assert generation_chunk_complete(work=work) is False
    assert generation_chunk_claim(chunk_id=queued) is None
    assert GenerationChunk.objects.get(pk=queued).status == "cancelled"


def test_nul_characters_in_model_output_are_replaced(start):
    run = start(prompts=1, chunk_size=1)
    work = generation_chunk_claim(chunk_id=chunk_ids(run)[0])
    generation_chunk_store(work=work, results=answer(work, texts={work.requests[0].key: "a\x00b"}))
    assert Response.objects.get(run=run, sample_index=0).text == "a\ufffdb"


def test_a_permanent_error_fails_the_run_and_its_unfinished_chunks(start):
    run = start(prompts=4, chunk_size=2)
    done, pending = chunk_ids(run)
    run_chunk(done)
    generation_run_fail(run_id=run.pk, error="The checkpoint weights are pickle files")
    run.refresh_from_db()
    assert (run.status, run.done_prompts, run.failed_prompts) == (GenerationRun.Status.FAILED, 2, 2)
    assert run.error == "The checkpoint weights are pickle files"
    assert GenerationChunk.objects.get(pk=pending).status == "failed"
