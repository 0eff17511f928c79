"""Generation end to end: the web side starts a run, real worker processes generate it through Redis."""

import socket
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from django.urls import reverse

from feedback.models import Comparison, GenerationChunk, GenerationRun, PolicyCheckpoint, Response
from feedback.services.generation import generation_reconcile, generation_run_start
from tests.conftest import logged_in_client
from tests.e2e.conftest import wait_for
from tests.factories import AdminFactory, ProjectFactory, PromptFactory

pytestmark = pytest.mark.django_db(transaction=True)


def make_project(tiny_checkpoint, *, prompts: int, max_new_tokens: int):
    checkpoint = PolicyCheckpoint.objects.create(name="tiny", source=str(tiny_checkpoint))
    project = ProjectFactory(
        current_checkpoint=checkpoint, samples_per_prompt=2, max_new_tokens=max_new_tokens
    )
    PromptFactory.create_batch(prompts, project=project)
    return project


def finished(run: GenerationRun) -> bool:
    run.refresh_from_db()
    return run.is_finished


def expected_comparisons(run: GenerationRun) -> int:
    """Pairwise, disjoint, 2 samples: one comparison per prompt whose two answers differ."""
    texts: dict[int, set[str]] = {}
    for prompt_id, text in Response.objects.filter(run=run).values_list("prompt_id", "text"):
        texts.setdefault(prompt_id, set()).add(text)
    return sum(1 for distinct in texts.values() if len(distinct) == 2)


def test_a_run_of_20_prompts_by_2_samples_on_a_real_worker(tiny_checkpoint, start_worker):
    project = make_project(tiny_checkpoint, prompts=20, max_new_tokens=12)
    worker = start_worker()
    run = generation_run_start(project=project, chunk_size=4, seed=3)

    wait_for(lambda: finished(run), timeout=180, what="the run to finish", workers=[worker])
    assert (run.status, run.total_prompts, run.done_prompts, run.failed_prompts) == ("completed", 20, 20, 0)
    responses = Response.objects.filter(run=run)
    assert responses.count() == 40
    assert Counter(responses.values_list("prompt_id", flat=True)) == dict.fromkeys(
        project.prompts.values_list("id", flat=True), 2
    )
    assert set(responses.values_list("finish_reason", flat=True)) <= {"eos", "length"}
    assert all(0 <= count <= 12 for count in responses.values_list("token_count", flat=True))
    comparisons = Comparison.objects.filter(generation_run=run)
    # Random weights rarely write the same text twice; the exact count depends on the texts.
    assert comparisons.count() == expected_comparisons(run) >= 15
    assert all(len(c.responses.all()) == 2 for c in comparisons.prefetch_related("responses"))
    assert set(run.chunks.values_list("status", "attempts")) == {("done", 1)}
    # The worker loaded the model once and kept it for all five chunks.
    assert worker.output().count("Loading checkpoint tiny") == 1

    client = logged_in_client(AdminFactory())
    page = client.get(reverse("admin:feedback_generationrun_changelist")).content.decode()
    assert "20/20 (100%)" in page


def test_kill_9_mid_run_then_a_new_worker_finishes_with_every_response_exactly_once(
    tiny_checkpoint, start_worker
):
    project = make_project(tiny_checkpoint, prompts=20, max_new_tokens=48)
    # One sample per forward pass makes a chunk take long enough to be killed in the middle of.
    first = start_worker(RANKWISE_GENERATION_BATCH_SIZE="1")
    run = generation_run_start(project=project, chunk_size=4, seed=5)

    def a_chunk_half_done() -> bool:
        for chunk in GenerationChunk.objects.filter(run=run, status="running"):
            stored = Response.objects.filter(run=run, prompt_id__in=chunk.prompt_ids).count()
            if 0 < stored < len(chunk.prompt_ids) * 2:
                return True
        return False

    wait_for(a_chunk_half_done, timeout=120, what="a chunk in the middle of generating", workers=[first])
    first.kill()
    killed = GenerationChunk.objects.get(run=run, status="running")
    assert not finished(run)
    before = Response.objects.filter(run=run).count()
    assert 0 < before < 40

    second = start_worker(RANKWISE_GENERATION_BATCH_SIZE="4")

    # The dead worker's chunk stays `running` with a heartbeat that no longer moves; reconcile (celery beat
    # in production) hands it to the queue again. Queued chunks older than the period are re-sent too,
    # which exercises duplicate messages.
    def reconciled() -> bool:
        generation_reconcile(stale_after=timedelta(seconds=2))
        killed.refresh_from_db()
        return killed.status != "running" or killed.attempts > 1

    wait_for(reconciled, timeout=60, what="reconcile to re-send the dead worker's chunk", workers=[second])
    wait_for(lambda: finished(run), timeout=180, what="the run to finish", workers=[second])

    assert (run.status, run.done_prompts, run.failed_prompts) == ("completed", 20, 0)
    keys = list(Response.objects.filter(run=run).values_list("prompt_id", "sample_index"))
    assert len(keys) == len(set(keys)) == 40
    killed.refresh_from_db()
    assert (killed.status, killed.attempts) == ("done", 2)
    assert Comparison.objects.filter(generation_run=run).count() == expected_comparisons(run)
    # Each prompt was paired once, however many messages its chunk got.
    assert (
        max(
            Counter(
                Comparison.objects.filter(generation_run=run).values_list("prompt_id", flat=True)
            ).values()
        )
        == 1
    )


def test_a_chunk_that_keeps_failing_ends_failed_after_three_attempts_with_its_error(start_worker):
    """A server that is down is a transient error: retried, then given up on, and shown in the admin."""
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    checkpoint = PolicyCheckpoint.objects.create(
        name="served",
        source="served-model",
        backend=PolicyCheckpoint.Backend.OPENAI,
        api_base_url=f"http://127.0.0.1:{closed_port}",
    )
    project = ProjectFactory(current_checkpoint=checkpoint, samples_per_prompt=2)
    PromptFactory.create_batch(2, project=project)
    worker = start_worker(RANKWISE_GENERATION_RETRY_DELAYS="0")
    run = generation_run_start(project=project, chunk_size=1)

    wait_for(lambda: finished(run), timeout=120, what="the run to give up", workers=[worker])
    assert (run.status, run.done_prompts, run.failed_prompts) == ("failed", 0, 2)
    chunks = list(run.chunks.all())
    assert [(chunk.status, chunk.attempts) for chunk in chunks] == [("failed", 3), ("failed", 3)]
    assert all(chunk.error.startswith("BackendUnavailable: ") for chunk in chunks)
    assert Response.objects.filter(run=run).count() == 0

    client = logged_in_client(AdminFactory())
    page = client.get(reverse("admin:feedback_generationrun_change", args=[run.pk])).content.decode()
    assert "BackendUnavailable: " in page
    assert "0/2 (0%), 2 failed" in page


def loaded_libraries(pid: int) -> set[str]:
    return {
        Path(line.split()[-1]).name
        for line in Path(f"/proc/{pid}/maps").read_text().splitlines()
        if ".so" in line
    }


def test_a_forking_worker_parent_never_loads_torch_only_its_child_does(tiny_checkpoint, start_worker):
    """Under the prefork pool the parent forks children; CUDA cannot survive a fork, so torch must only
    ever be initialised in the child that runs the task."""
    project = make_project(tiny_checkpoint, prompts=2, max_new_tokens=4)
    worker = start_worker(pool="prefork")
    run = generation_run_start(project=project, chunk_size=2)
    wait_for(lambda: finished(run), timeout=120, what="the run to finish", workers=[worker])
    assert run.status == "completed"

    parent = worker.process.pid
    children = [int(pid) for pid in Path(f"/proc/{parent}/task/{parent}/children").read_text().split()]
    assert len(children) == 1
    assert "libtorch_cpu.so" in loaded_libraries(children[0])  # the check can see torch where it is
    assert not any(name.startswith("libtorch") for name in loaded_libraries(parent))
