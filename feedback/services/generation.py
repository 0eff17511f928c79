"""Starting, cancelling and reconciling generation runs: the web side of generation.

`feedback` records a run and its chunks and sends each chunk to the GPU workers by task name through the
Celery app, after the transaction commits; it never imports `inference` (nor torch). The workers' side
(claiming a chunk, storing responses, pairing) is `inference.services`.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from feedback.celery import app
from feedback.models import GenerationChunk, GenerationRun, PolicyCheckpoint, Project, Prompt
from feedback.sampling import SamplingParameters, SamplingParametersError

GENERATE_CHUNK_TASK = "inference.generate_chunk"
VALIDATE_CHECKPOINT_TASK = "inference.validate_checkpoint"
MAX_CHUNK_SIZE = 1_000


def sample_seed(*, run_seed: int, prompt_id: int, sample_index: int) -> int:
    """The seed of one sample: fixed by the run's base seed, the prompt and the sample index, so the
    same run reproduces each sample whatever batch or worker draws it. 63 bits, positive."""
    digest = hashlib.sha256(f"{run_seed}:{prompt_id}:{sample_index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & ((1 << 63) - 1)


def send_task_on_commit(name: str, ids: Iterable[int]) -> None:
    """Send one message per id once the current transaction commits (a rolled-back write sends nothing).

    Sent by registered name: `feedback` never imports the module that defines the task. Without a broker
    (the demo) Celery runs the task inline here, so the caller waits for it.
    """
    ids = list(ids)

    def send() -> None:
        for object_id in ids:
            task_send(name, args=(object_id,))

    transaction.on_commit(send)


def task_send(name: str, *, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None) -> None:
    """Send the task by its registered name, now. Without a broker (the demo) Celery runs it inline."""
    if app.conf.task_always_eager:
        # The demo runs tasks inline, which needs them registered: import the task modules Celery's
        # autodiscovery would import in a worker (none of them imports torch at import time).
        app.loader.import_default_modules()
        app.tasks[name].apply_async(args=tuple(args), kwargs=kwargs or {})
        return
    app.send_task(name, args=tuple(args), kwargs=kwargs or {})


def generation_run_start(
    *,
    project: Project,
    checkpoint: PolicyCheckpoint | None = None,
    opponent_checkpoint: PolicyCheckpoint | None = None,
    prompts: QuerySet[Prompt] | Sequence[Prompt] | None = None,
    samples_per_prompt: int | None = None,
    sampling: SamplingParameters | dict[str, Any] | None = None,
    seed: int | None = None,
    chunk_size: int | None = None,
    created_by: Any = None,
) -> GenerationRun:
    """Record a run over `prompts` (default: all of the project's but gold items' own) and enqueue its
    chunks after commit.

    With an opponent, both checkpoints answer every prompt and each comparison pits one response of each.
    Raises ValidationError with field messages; nothing is written then.
    """
    checkpoint = checkpoint or project.current_checkpoint
    samples = samples_per_prompt if samples_per_prompt is not None else project.samples_per_prompt
    errors: dict[str, str] = {}
    if checkpoint is None:
        errors["checkpoint"] = f"The project {project} has no current checkpoint; choose one."
    elif checkpoint.validation_status == PolicyCheckpoint.ValidationStatus.INVALID:
        errors["checkpoint"] = f"The checkpoint {checkpoint} failed validation: fix it and validate it again."
    if opponent_checkpoint is not None:
        if checkpoint is not None and opponent_checkpoint.pk == checkpoint.pk:
            errors["opponent_checkpoint"] = "The opponent must be a different checkpoint."
        elif opponent_checkpoint.validation_status == PolicyCheckpoint.ValidationStatus.INVALID:
            errors["opponent_checkpoint"] = f"The checkpoint {opponent_checkpoint} failed validation."
        if project.comparison_mode != Project.ComparisonMode.PAIRWISE:
            errors["opponent_checkpoint"] = "Checkpoint against checkpoint needs a pairwise project."
    if not isinstance(samples, int) or isinstance(samples, bool) or not 1 <= samples <= 64:
        errors["samples_per_prompt"] = "Must be a whole number from 1 to 64."
    elif opponent_checkpoint is None and samples < project.responses_per_comparison:
        errors["samples_per_prompt"] = (
            f"Comparisons of {project.responses_per_comparison} responses from one checkpoint need at "
            f"least {project.responses_per_comparison} samples per prompt."
        )
    try:
        if sampling is None:
            sampling = project.sampling_parameters()
        elif isinstance(sampling, dict):
            sampling = SamplingParameters.from_dict(sampling)
    except SamplingParametersError as error:
        errors.update(error.errors)
    size = chunk_size if chunk_size is not None else settings.RANKWISE_GENERATION_CHUNK_SIZE
    if not isinstance(size, int) or not 1 <= size <= MAX_CHUNK_SIZE:
        errors["chunk_size"] = f"Must be a whole number from 1 to {MAX_CHUNK_SIZE}."
    if seed is not None and not 0 <= seed < 2**63:
        errors["seed"] = "Must be a whole number from 0 to 2^63 - 1."

    if prompts is None:
        prompt_ids = list(project.prompts.filter(is_gold=False).order_by("id").values_list("id", flat=True))
    else:
        prompt_ids = sorted({prompt.pk for prompt in prompts if prompt.project_id == project.pk})
        if len(prompt_ids) != len({prompt.pk for prompt in prompts}):
            errors["prompts"] = "Every prompt must belong to the project."
    if not prompt_ids and "prompts" not in errors:
        errors["prompts"] = "There are no prompts to generate for."
    if errors:
        raise ValidationError(errors)
    assert checkpoint is not None
    assert isinstance(sampling, SamplingParameters)

    with transaction.atomic():
        now = timezone.now()
        run = GenerationRun.objects.create(
            project=project,
            checkpoint=checkpoint,
            opponent_checkpoint=opponent_checkpoint,
            status=GenerationRun.Status.QUEUED,
            samples_per_prompt=samples,
            sampling_parameters=sampling.as_dict(),
            seed=seed if seed is not None else secrets.randbits(31),
            chunk_size=size,
            total_prompts=len(prompt_ids),
            created_by=created_by,
        )
        chunks = [
            GenerationChunk(
                run=run,
                checkpoint_id=checkpoint_id,
                index=index,
                prompt_ids=prompt_ids[start : start + size],
                enqueued_at=now,
            )
            for index, start in enumerate(range(0, len(prompt_ids), size))
            for checkpoint_id in run.checkpoint_ids
        ]
        GenerationChunk.objects.bulk_create(chunks, batch_size=2_000)
        chunk_ids = (
            GenerationChunk.objects.filter(run=run)
            .order_by("index", "checkpoint_id")
            .values_list("id", flat=True)
        )
        send_task_on_commit(GENERATE_CHUNK_TASK, chunk_ids)
    run.refresh_from_db()
    return run


def generation_run_cancel(*, run: GenerationRun) -> bool:
    """Cancel a run that has not finished: queued chunks never start, running ones stop after their
    current batch. What was generated and paired stays. Returns False if the run had already finished."""
    with transaction.atomic():
        locked = GenerationRun.objects.select_for_update().get(pk=run.pk)
        if locked.is_finished:
            return False
        now = timezone.now()
        locked.chunks.filter(
            status__in=[GenerationChunk.Status.QUEUED, GenerationChunk.Status.RUNNING]
        ).update(status=GenerationChunk.Status.CANCELLED, finished_at=now)
        locked.status = GenerationRun.Status.CANCELLED
        locked.finished_at = now
        locked.save(update_fields=["status", "finished_at"])
    return True


def generation_reconcile(*, stale_after: timedelta | None = None) -> int:
    """Re-enqueue chunks whose message was lost; returns how many.

    A running chunk whose heartbeat is older than `stale_after` lost its worker (killed, out of memory,
    host gone); a queued chunk enqueued longer ago than that may have lost its message (Redis restarted).
    Re-sending is safe: the chunk row decides, and a duplicate message finds the chunk taken or done and
    does nothing. Each chunk is re-sent at most once per `stale_after`, so a long queue does not fill with
    duplicates. Takes row locks with SKIP LOCKED: a chunk being claimed right now is left to its claimer.
    """
    stale_after = stale_after if stale_after is not None else settings.RANKWISE_GENERATION_STALE_AFTER
    with transaction.atomic():
        cutoff = timezone.now() - stale_after
        stale = list(
            GenerationChunk.objects.select_for_update(skip_locked=True)
            .filter(
                Q(status=GenerationChunk.Status.RUNNING, heartbeat_at__lt=cutoff)
                | Q(status=GenerationChunk.Status.QUEUED, enqueued_at__lt=cutoff)
                | Q(status=GenerationChunk.Status.QUEUED, enqueued_at__isnull=True),
                run__status__in=[GenerationRun.Status.QUEUED, GenerationRun.Status.RUNNING],
            )
            .order_by("id")
            .values_list("id", flat=True)
        )
        if stale:
            # A stale running chunk goes back to the queue: the next claim takes it (counting an attempt),
            # and its old worker, if it was only slow, sees at its next heartbeat that it lost the chunk.
            GenerationChunk.objects.filter(pk__in=stale).update(
                status=GenerationChunk.Status.QUEUED, enqueued_at=timezone.now()
            )
            send_task_on_commit(GENERATE_CHUNK_TASK, stale)
    return len(stale)


def checkpoint_validation_request(*, checkpoints: Iterable[PolicyCheckpoint]) -> int:
    """Mark checkpoints as being checked and ask a worker to inspect each; returns how many."""
    ids = [checkpoint.pk for checkpoint in checkpoints]
    with transaction.atomic():
        PolicyCheckpoint.objects.filter(pk__in=ids).update(
            validation_status=PolicyCheckpoint.ValidationStatus.PENDING
        )
        send_task_on_commit(VALIDATE_CHECKPOINT_TASK, ids)
    return len(ids)
