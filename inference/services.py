"""The workers' write paths: claim a chunk, store what it generated, complete or fail it; record a
checkpoint's validation. No torch here.

Locks are always taken run first, then chunk, so two workers (or a worker and an admin cancelling) never
wait on each other in opposite orders. A chunk's `attempts` doubles as its claim token: a worker that
claimed attempt n may write to the chunk only while `attempts` is still n and the chunk still runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from feedback.models import GenerationChunk, GenerationRun, PolicyCheckpoint, Response
from feedback.sampling import SamplingParameters
from feedback.services.battles import style_fields
from feedback.services.generation import sample_seed
from inference.backends.base import CheckpointSpec, GeneratedText, GenerationRequest
from inference.pairing import comparisons_create_for_prompts

ERROR_MAX_CHARS = 4_000


@dataclass(frozen=True)
class ChunkWork:
    """What a claimed chunk still has to generate."""

    chunk_id: int
    run_id: int
    run_seed: int
    attempt: int
    spec: CheckpointSpec
    sampling: SamplingParameters
    completion_template: str
    requests: list[GenerationRequest]


def _lock_run_and_chunk(chunk_id: int) -> tuple[GenerationRun, GenerationChunk]:
    run_id = GenerationChunk.objects.values_list("run_id", flat=True).get(pk=chunk_id)
    run = GenerationRun.objects.select_for_update().select_related("project").get(pk=run_id)
    chunk = GenerationChunk.objects.select_for_update().select_related("checkpoint").get(pk=chunk_id)
    return run, chunk


def generation_chunk_claim(*, chunk_id: int) -> ChunkWork | None:
    """Take a chunk for this worker, or None when there is nothing to do: the chunk is finished, its run
    was cancelled, another worker holds it, or it has used up its attempts (it is then marked failed)."""
    with transaction.atomic():
        run, chunk = _lock_run_and_chunk(chunk_id)
        if chunk.status != GenerationChunk.Status.QUEUED:
            return None  # running elsewhere, or finished: a duplicate or late message
        if run.is_finished:
            # Cancelled, or every prompt already counted (the sibling of a failed chunk): nothing to add.
            chunk.status = GenerationChunk.Status.CANCELLED
            chunk.save(update_fields=["status"])
            return None
        if chunk.attempts >= settings.RANKWISE_GENERATION_MAX_ATTEMPTS:
            reason = chunk.error or "its worker was lost during every attempt"
            _fail_chunk_locked(run, chunk, f"Gave up after {chunk.attempts} attempts: {reason}")
            return None
        now = timezone.now()
        chunk.status = GenerationChunk.Status.RUNNING
        chunk.attempts += 1
        chunk.started_at = chunk.heartbeat_at = now
        chunk.save(update_fields=["status", "attempts", "started_at", "heartbeat_at"])
        if run.status == GenerationRun.Status.QUEUED:
            run.status = GenerationRun.Status.RUNNING
            run.started_at = now
            run.save(update_fields=["status", "started_at"])

        done = set(
            Response.objects.filter(
                run=run, checkpoint=chunk.checkpoint, prompt_id__in=chunk.prompt_ids
            ).values_list("prompt_id", "sample_index")
        )
        conversations = dict(
            run.project.prompts.filter(pk__in=chunk.prompt_ids).values_list("id", "conversation")
        )
    requests = [
        GenerationRequest(
            key=(prompt_id, sample_index),
            conversation=conversations[prompt_id],
            seed=sample_seed(run_seed=run.seed, prompt_id=prompt_id, sample_index=sample_index),
        )
        for prompt_id in chunk.prompt_ids
        if prompt_id in conversations
        for sample_index in range(run.samples_per_prompt)
        if (prompt_id, sample_index) not in done
    ]
    return ChunkWork(
        chunk_id=chunk.pk,
        run_id=run.pk,
        run_seed=run.seed,
        attempt=chunk.attempts,
        spec=CheckpointSpec.from_checkpoint(chunk.checkpoint),
        sampling=SamplingParameters.from_dict(run.sampling_parameters),
        completion_template=run.project.completion_template,
        requests=requests,
    )


def generation_chunk_store(*, work: ChunkWork, results: Sequence[GeneratedText]) -> bool:
    """Store one batch of responses (idempotent: the response key is unique) and beat the heartbeat.

    Returns whether the worker still owns the chunk; False means stop: the run was cancelled or the chunk
    was given to another worker. Responses are kept either way (they are valid samples of the run).
    """
    sampling_parameters = work.sampling.as_dict()
    responses = [
        Response(
            prompt_id=result.key[0],
            sample_index=result.key[1],
            checkpoint_id=work.spec.checkpoint_id,
            run_id=work.run_id,
            # PostgreSQL text cannot hold NUL, and a byte-level tokenizer can decode one.
            text=result.text.replace("\x00", "\ufffd"),
            sampling_parameters=sampling_parameters,
            seed=sample_seed(run_seed=work.run_seed, prompt_id=result.key[0], sample_index=result.key[1]),
            token_count=result.token_count,
            finish_reason=result.finish_reason,
            latency_seconds=result.latency_seconds,
            **style_fields(result.text),
        )
        for result in results
    ]
    with transaction.atomic():
        Response.objects.bulk_create(responses, ignore_conflicts=True)
        owned = GenerationChunk.objects.filter(
            pk=work.chunk_id, status=GenerationChunk.Status.RUNNING, attempts=work.attempt
        ).update(heartbeat_at=timezone.now())
    return bool(owned)


def generation_chunk_complete(*, work: ChunkWork) -> bool:
    """Mark the chunk done once all its samples are stored; when it is the last of its prompts' chunks
    (one per checkpoint of the run), pair those prompts and count them done. Returns False if the chunk
    is not this worker's any more or samples are missing (then nothing changes)."""
    with transaction.atomic():
        run, chunk = _lock_run_and_chunk(work.chunk_id)
        if chunk.status != GenerationChunk.Status.RUNNING or chunk.attempts != work.attempt:
            return False
        stored = Response.objects.filter(
            run=run, checkpoint_id=chunk.checkpoint_id, prompt_id__in=chunk.prompt_ids
        ).count()
        # A prompt deleted during the run takes its responses with it and is not waited for.
        existing = run.project.prompts.filter(pk__in=chunk.prompt_ids).count()
        if stored < existing * run.samples_per_prompt:
            return False
        chunk.status = GenerationChunk.Status.DONE
        chunk.finished_at = timezone.now()
        chunk.error = ""
        chunk.save(update_fields=["status", "finished_at", "error"])
        siblings = GenerationChunk.objects.filter(run=run, index=chunk.index).exclude(pk=chunk.pk)
        if all(status == GenerationChunk.Status.DONE for status in siblings.values_list("status", flat=True)):
            comparisons_create_for_prompts(run=run, prompt_ids=chunk.prompt_ids)
            run.done_prompts = F("done_prompts") + len(chunk.prompt_ids)
            run.save(update_fields=["done_prompts"])
            run.refresh_from_db(fields=["done_prompts", "failed_prompts"])
        _finish_run_if_complete(run)
    return True


def generation_chunk_release(*, work: ChunkWork, error: str = "", counts_as_attempt: bool = True) -> bool:
    """Give the chunk back to the queue (after an error, or at the task's deadline with work left).
    Returns whether it was still this worker's to give back."""
    with transaction.atomic():
        _run, chunk = _lock_run_and_chunk(work.chunk_id)
        if chunk.status != GenerationChunk.Status.RUNNING or chunk.attempts != work.attempt:
            return False
        chunk.status = GenerationChunk.Status.QUEUED
        chunk.enqueued_at = timezone.now()
        fields = ["status", "enqueued_at"]
        if error:
            chunk.error = error[:ERROR_MAX_CHARS]
            fields.append("error")
        if not counts_as_attempt:
            chunk.attempts -= 1
            fields.append("attempts")
        chunk.save(update_fields=fields)
    return True


def generation_chunk_fail(*, work: ChunkWork, error: str) -> bool:
    """End the chunk `failed` with its error; the rest of the run goes on."""
    with transaction.atomic():
        run, chunk = _lock_run_and_chunk(work.chunk_id)
        if chunk.status != GenerationChunk.Status.RUNNING or chunk.attempts != work.attempt:
            return False
        _fail_chunk_locked(run, chunk, error)
    return True


def generation_run_fail(*, run_id: int, error: str) -> None:
    """A permanent error (the checkpoint cannot load): fail every chunk that has not finished, and the run."""
    with transaction.atomic():
        run = GenerationRun.objects.select_for_update().get(pk=run_id)
        if run.is_finished:
            return
        now = timezone.now()
        run.chunks.filter(status__in=[GenerationChunk.Status.QUEUED, GenerationChunk.Status.RUNNING]).update(
            status=GenerationChunk.Status.FAILED, error=error[:ERROR_MAX_CHARS], finished_at=now
        )
        run.failed_prompts = run.total_prompts - run.done_prompts
        run.status = GenerationRun.Status.FAILED
        run.error = error[:ERROR_MAX_CHARS]
        run.finished_at = now
        run.save(update_fields=["failed_prompts", "status", "error", "finished_at"])


def _fail_chunk_locked(run: GenerationRun, chunk: GenerationChunk, error: str) -> None:
    chunk.status = GenerationChunk.Status.FAILED
    chunk.error = error[:ERROR_MAX_CHARS]
    chunk.finished_at = timezone.now()
    chunk.save(update_fields=["status", "error", "finished_at"])
    # Prompts are counted failed once, by the first of their chunks (one per checkpoint) to fail.
    siblings = GenerationChunk.objects.filter(run=run, index=chunk.index).exclude(pk=chunk.pk)
    if not siblings.filter(status=GenerationChunk.Status.FAILED).exists():
        run.failed_prompts = F("failed_prompts") + len(chunk.prompt_ids)
        run.save(update_fields=["failed_prompts"])
        run.refresh_from_db(fields=["done_prompts", "failed_prompts"])
    _finish_run_if_complete(run)


def _finish_run_if_complete(run: GenerationRun) -> None:
    if run.is_finished or run.done_prompts + run.failed_prompts < run.total_prompts:
        return
    run.status = GenerationRun.Status.COMPLETED if run.done_prompts else GenerationRun.Status.FAILED
    if not run.done_prompts:
        run.error = "Every chunk failed; see the chunks' errors."
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "error", "finished_at"])


def checkpoint_validation_record(
    *, checkpoint_id: int, report: dict[str, Any] | None = None, error: str = ""
) -> None:
    """Store a worker's verdict on a checkpoint: its report when valid, the reason when not."""
    PolicyCheckpoint.objects.filter(pk=checkpoint_id).update(
        validation_status=(
            PolicyCheckpoint.ValidationStatus.INVALID if error else PolicyCheckpoint.ValidationStatus.VALID
        ),
        validation_report={"error": error[:ERROR_MAX_CHARS]} if error else (report or {}),
        validated_at=timezone.now(),
    )
