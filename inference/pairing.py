"""Pairing a prompt's responses into comparisons, by the project's policy.

- One checkpoint: random disjoint groups of k among the samples (each response in at most one
  comparison), or all pairs (all k-sets) up to the project's cap.
- Two checkpoints (pairwise only): every comparison pits one response of each; disjoint pairs match the
  shuffled samples one to one, all pairs take the cross product up to the cap.
- Byte-identical responses are never compared with each other: a comparison between equal texts would
  ask annotators to choose between nothing.
- Display order is shuffled per comparison and stored as positions; nothing about which checkpoint wrote
  which response is part of a comparison.

The random choices come from a generator seeded by the run's seed and the prompt id, so pairing the same
run again gives the same comparisons.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import transaction

from feedback.models import Comparison, ComparisonResponse, GenerationRun, Project, Response
from feedback.services.answers import writing_tasks_open


@dataclass(frozen=True)
class Candidate:
    response_id: int
    checkpoint_id: int
    sample_index: int
    text: str


def pairing_random(*, run_seed: int, prompt_id: int) -> random.Random:
    # Reproducible, not secret: the same run pairs the same way.
    return random.Random(f"pairing:{run_seed}:{prompt_id}")  # noqa: S311


def distinct_texts(candidates: Sequence[Candidate]) -> list[Candidate]:
    """The first sample of each distinct text, in sample order."""
    seen: set[str] = set()
    kept = []
    for candidate in sorted(candidates, key=lambda c: c.sample_index):
        if candidate.text not in seen:
            seen.add(candidate.text)
            kept.append(candidate)
    return kept


def plan_comparisons(
    *,
    candidates: Sequence[Candidate],
    checkpoint_id: int,
    opponent_checkpoint_id: int | None,
    size: int,
    strategy: str,
    cap: int,
    rng: random.Random,
) -> list[list[Candidate]]:
    """The comparisons to create, each a list of candidates in display order (position 0 first)."""
    if opponent_checkpoint_id is None:
        groups = _one_checkpoint_groups(
            distinct_texts(candidates), size=size, strategy=strategy, cap=cap, rng=rng
        )
    else:
        if size != 2:
            raise ValueError("Checkpoint against checkpoint compares pairs.")
        ours = distinct_texts([c for c in candidates if c.checkpoint_id == checkpoint_id])
        theirs = distinct_texts([c for c in candidates if c.checkpoint_id == opponent_checkpoint_id])
        groups = _head_to_head_pairs(ours, theirs, strategy=strategy, cap=cap, rng=rng)
    for group in groups:
        rng.shuffle(group)
    return groups


def _one_checkpoint_groups(
    candidates: list[Candidate], *, size: int, strategy: str, cap: int, rng: random.Random
) -> list[list[Candidate]]:
    if len(candidates) < size:
        return []
    if strategy == Project.PairingStrategy.DISJOINT:
        shuffled = list(candidates)
        rng.shuffle(shuffled)
        count = min(len(shuffled) // size, cap)
        return [shuffled[i * size : (i + 1) * size] for i in range(count)]
    if math.comb(len(candidates), size) <= cap:
        groups = [list(group) for group in itertools.combinations(candidates, size)]
        rng.shuffle(groups)
        return groups
    # More k-sets than the cap: draw distinct ones at random (the cap is small, so this ends quickly).
    chosen: set[tuple[int, ...]] = set()
    by_index = {candidate.response_id: candidate for candidate in candidates}
    while len(chosen) < cap:
        chosen.add(tuple(sorted(c.response_id for c in rng.sample(candidates, size))))
    return [[by_index[response_id] for response_id in key] for key in sorted(chosen)]


def _head_to_head_pairs(
    ours: list[Candidate], theirs: list[Candidate], *, strategy: str, cap: int, rng: random.Random
) -> list[list[Candidate]]:
    if strategy == Project.PairingStrategy.DISJOINT:
        ours, theirs = list(ours), list(theirs)
        rng.shuffle(ours)
        rng.shuffle(theirs)
        pairs = list(zip(ours, theirs, strict=False))
    else:
        pairs = list(itertools.product(ours, theirs))
        rng.shuffle(pairs)
    return [[a, b] for a, b in pairs if a.text != b.text][:cap]


def comparisons_create_for_prompts(*, run: GenerationRun, prompt_ids: Sequence[int]) -> int:
    """Pair the run's responses to these prompts and store the comparisons; returns how many.

    The caller holds the run's row lock and calls this once per prompt (when the prompt's last chunk
    completes), which is what makes pairing happen exactly once.
    """
    project = run.project
    if project.comparison_mode == Project.ComparisonMode.DEMONSTRATION:
        # Writing tasks, the run's answers shown for reference (none when the project shows none).
        return writing_tasks_open(project=project, prompt_ids=prompt_ids, run=run)
    candidates: dict[int, list[Candidate]] = {prompt_id: [] for prompt_id in prompt_ids}
    rows = Response.objects.filter(run=run, prompt_id__in=prompt_ids).values_list(
        "id", "prompt_id", "checkpoint_id", "sample_index", "text"
    )
    for response_id, prompt_id, checkpoint_id, sample_index, text in rows:
        candidates[prompt_id].append(Candidate(response_id, checkpoint_id, sample_index, text))

    planned: list[tuple[int, list[Candidate]]] = []
    for prompt_id in prompt_ids:
        groups = plan_comparisons(
            candidates=candidates[prompt_id],
            checkpoint_id=run.checkpoint_id,
            opponent_checkpoint_id=run.opponent_checkpoint_id,
            size=project.responses_per_comparison,
            strategy=project.pairing_strategy,
            cap=project.max_comparisons_per_prompt,
            rng=pairing_random(run_seed=run.seed, prompt_id=prompt_id),
        )
        planned.extend((prompt_id, group) for group in groups)
    if not planned:
        return 0
    with transaction.atomic():
        comparisons = Comparison.objects.bulk_create(
            [
                Comparison(
                    project=project,
                    prompt_id=prompt_id,
                    generation_run=run,
                    required_judgments=project.judgments_per_comparison,
                    characters=sum(len(candidate.text) for candidate in group),
                )
                for prompt_id, group in planned
            ]
        )
        ComparisonResponse.objects.bulk_create(
            [
                ComparisonResponse(
                    comparison=comparison, response_id=candidate.response_id, position=position
                )
                for comparison, (_, group) in zip(comparisons, planned, strict=True)
                for position, candidate in enumerate(group)
            ]
        )
    return len(comparisons)
