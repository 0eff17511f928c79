"""Celery tasks of the GPU workers (queue `generation`). They take ids and call services; no torch here.

`inference.generate_chunk` is safe to run any number of times for the same chunk: the chunk row is claimed
under a lock, responses are unique per prompt/checkpoint/run/sample, and a chunk that is done, taken or
cancelled makes the task return at once. That is what `acks_late` redelivery and reconcile rely on.
"""

from __future__ import annotations

import logging
import time
import traceback

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from feedback.prompting import CompletionTemplateError
from feedback.services.answers import ANSWERS_PAIR_TASK, AnswersPairingError
from feedback.services.generation import GENERATE_CHUNK_TASK, VALIDATE_CHECKPOINT_TASK, send_task_on_commit
from inference.backends.base import CheckpointError, CheckpointSpec
from inference.services import (
    checkpoint_validation_record,
    generation_chunk_claim,
    generation_chunk_complete,
    generation_chunk_fail,
    generation_chunk_release,
    generation_chunk_store,
    generation_run_fail,
)
from inference.worker import loaded_backend

logger = logging.getLogger(__name__)


@shared_task(name=GENERATE_CHUNK_TASK, bind=True)
def generate_chunk(self: Task, chunk_id: int) -> str:
    """Generate the chunk's missing samples batch by batch, storing each batch as it finishes."""
    work = generation_chunk_claim(chunk_id=chunk_id)
    if work is None:
        return "nothing to do"
    deadline = time.monotonic() + settings.RANKWISE_GENERATION_TASK_DEADLINE
    try:
        if work.requests:
            backend = loaded_backend(work.spec)
            batches = backend.generate(
                work.requests, work.sampling, completion_template=work.completion_template
            )
            for results in batches:
                if not generation_chunk_store(work=work, results=results):
                    return "stopped: cancelled or taken over"
                if time.monotonic() > deadline:
                    # Past the in-task deadline: give the rest of the chunk to a fresh task rather than run
                    # into the time limit (or Redis' visibility timeout) mid-batch.
                    if generation_chunk_release(work=work, counts_as_attempt=False):
                        send_task_on_commit(GENERATE_CHUNK_TASK, [chunk_id])
                    return "deadline: continues in a new task"
    except (CheckpointError, CompletionTemplateError) as error:
        # Permanent: every chunk of the run would fail the same way.
        logger.error("Run of chunk %s failed: %s", chunk_id, error)
        generation_run_fail(run_id=work.run_id, error=str(error))
        return "failed: checkpoint"
    except SoftTimeLimitExceeded:
        if generation_chunk_release(work=work, error="Hit the task's soft time limit."):
            send_task_on_commit(GENERATE_CHUNK_TASK, [chunk_id])
        return "soft time limit: re-enqueued"
    except Exception as error:
        message = f"{type(error).__name__}: {error}\n\n{traceback.format_exc(limit=8)}"
        logger.exception("Chunk %s failed (attempt %s)", chunk_id, work.attempt)
        if work.attempt >= settings.RANKWISE_GENERATION_MAX_ATTEMPTS:
            generation_chunk_fail(work=work, error=message)
            return "failed"
        if generation_chunk_release(work=work, error=message):
            # The retry is a new message for the same chunk, sent after a back-off; this one is acked.
            delays = settings.RANKWISE_GENERATION_RETRY_DELAYS
            countdown = delays[min(work.attempt, len(delays)) - 1]
            self.app.signature(GENERATE_CHUNK_TASK, args=(chunk_id,)).apply_async(countdown=countdown)
            return "error: retrying"
        return "error: the chunk is no longer ours"
    if generation_chunk_complete(work=work):
        return "done"
    return "incomplete: someone else holds the chunk"


@shared_task(name=VALIDATE_CHECKPOINT_TASK)
def validate_checkpoint(checkpoint_id: int) -> str:
    """Inspect a checkpoint on a worker (where its files are) and record the verdict."""
    from feedback.models import PolicyCheckpoint
    from inference.checkpoints import inspect_checkpoint

    checkpoint = PolicyCheckpoint.objects.filter(pk=checkpoint_id).first()
    if checkpoint is None:
        return "gone"
    try:
        report = inspect_checkpoint(CheckpointSpec.from_checkpoint(checkpoint))
    except CheckpointError as error:
        checkpoint_validation_record(checkpoint_id=checkpoint_id, error=str(error))
        return "invalid"
    checkpoint_validation_record(checkpoint_id=checkpoint_id, report=report)
    return "valid"


@shared_task(name=ANSWERS_PAIR_TASK)
def answers_pair(*, project_id: int, source_id: int, against_id: int | None, seed: int) -> str:
    """Put people's answers into a project's comparisons (`answers_comparisons_create`): idempotent, the
    same request again creates nothing."""
    from feedback.models import PolicyCheckpoint, Project
    from inference.pairing import answers_comparisons_create

    project = Project.objects.filter(pk=project_id).first()
    source = Project.objects.filter(pk=source_id).first()
    against = PolicyCheckpoint.objects.filter(pk=against_id).first() if against_id is not None else None
    if project is None or source is None or (against_id is not None and against is None):
        return "gone"
    try:
        report = answers_comparisons_create(project=project, source=source, against=against, seed=seed)
    except AnswersPairingError as error:
        logger.warning("People's answers not paired in %s: %s", project, error)
        return f"refused: {error}"
    logger.info("People's answers paired in %s: %s", project, report.summary())
    return report.summary()
