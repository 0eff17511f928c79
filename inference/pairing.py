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

from feedback.models import (
    PEOPLE_ID,
    Comparison,
    ComparisonResponse,
    GenerationRun,
    PolicyCheckpoint,
    Project,
    Prompt,
    Response,
    participant,
)
from feedback.services.answers import (
    AnswersPairingError,
    answers_pairing_errors,
    counted_answers,
    writing_tasks_open,
)


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
    return _comparisons_store(project=project, run=run, planned=planned)


def _comparisons_store(
    *, project: Project, run: GenerationRun | None, planned: list[tuple[int, list[Candidate]]]
) -> int:
    """Store the planned comparisons (prompt, candidates in display order); returns how many."""
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


# --- people's answers -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnswersPairingReport:
    prompts: int  # prompts with people's answers that count
    answers: int  # those answers
    comparisons: int  # comparisons created now
    already: int  # comparisons of the same kind the project had already
    short: int  # prompts that got none: too few distinct answers (or no answer of the checkpoint) left

    def summary(self) -> str:
        return (
            f"{self.comparisons} comparison(s) created from {self.answers} people's answer(s) to "
            f"{self.prompts} prompt(s); {self.already} of the same kind already there; {self.short} "
            "prompt(s) without enough answers to pair."
        )


def answers_comparisons_create(
    *,
    project: Project,
    source: Project | None = None,
    against: PolicyCheckpoint | None = None,
    seed: int = 0,
    prompt_ids: Sequence[int] | None = None,
) -> AnswersPairingReport:
    """Put people's answers into `project`'s comparisons: against `against`'s answers to the same prompts
    (pairs, people's answer on one side), or with no checkpoint against each other (groups of the
    project's size). The answers are those that count (accepted, or written where no review was asked)
    to the prompts of `source` (default: the project itself; a demonstration project, say, whose writers'
    answers a pairwise project judges), gold prompts aside.

    The project's pairing policy applies as to a run's answers: disjoint groups use each answer at most
    once among the comparisons of this kind (so calling again pairs only what is new), all pairs takes
    every group not compared yet, both up to the project's cap per prompt; byte-identical texts are never
    compared. Random choices are seeded by `seed`, the opponent and the prompt, so the same call gives
    the same comparisons, and again creates nothing. One transaction, under the project's row lock."""
    source = source or project
    if errors := answers_pairing_errors(project=project, against=against, seed=seed, source=source):
        raise AnswersPairingError(errors)
    prompts = Prompt.objects.filter(project=source, is_gold=False)
    if prompt_ids is not None:
        prompts = prompts.filter(pk__in=list(prompt_ids))
    by_prompt: dict[int, list[Candidate]] = {}
    people = (
        counted_answers().filter(prompt__in=prompts).values_list("id", "prompt_id", "sample_index", "text")
    )
    for response_id, prompt_id, sample_index, text in people.order_by("prompt_id", "sample_index"):
        by_prompt.setdefault(prompt_id, []).append(Candidate(response_id, PEOPLE_ID, sample_index, text))
    answers = sum(len(found) for found in by_prompt.values())
    if against is not None and by_prompt:
        model = Response.objects.filter(
            prompt_id__in=list(by_prompt), checkpoint=against, source=Response.Source.MODEL
        ).values_list("id", "prompt_id", "text")
        for response_id, prompt_id, text in model.order_by("prompt_id", "run_id", "sample_index"):
            # Sample indexes restart with each run: number them after the people's, in run order.
            by_prompt[prompt_id].append(Candidate(response_id, against.pk, len(by_prompt[prompt_id]), text))
    opponent = PEOPLE_ID if against is None else against.pk
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).get()
        compared = _compared(project=project, prompt_ids=list(by_prompt), opponent=opponent)
        planned: list[tuple[int, list[Candidate]]] = []
        already = short = 0
        for prompt_id, candidates in by_prompt.items():
            existing = compared.get(prompt_id, set())
            already += len(existing)
            if project.pairing_strategy == Project.PairingStrategy.DISJOINT:
                used = set().union(*existing) if existing else set()
                candidates = [c for c in candidates if c.response_id not in used]
            groups = plan_comparisons(
                candidates=candidates,
                checkpoint_id=PEOPLE_ID,
                opponent_checkpoint_id=against.pk if against is not None else None,
                size=project.responses_per_comparison,
                strategy=project.pairing_strategy,
                cap=project.max_comparisons_per_prompt,
                # Reproducible, not secret: the same call pairs the same way.
                rng=random.Random(f"answers:{seed}:{opponent}:{prompt_id}"),  # noqa: S311
            )
            fresh = [group for group in groups if frozenset(c.response_id for c in group) not in existing]
            fresh = fresh[: max(0, project.max_comparisons_per_prompt - len(existing))]
            if not fresh and not existing:
                short += 1
            planned.extend((prompt_id, group) for group in fresh)
        created = _comparisons_store(project=project, run=None, planned=planned)
        if created and not project.compares_people:
            Project.objects.filter(pk=project.pk).update(compares_people=True)
    return AnswersPairingReport(
        prompts=len(by_prompt), answers=answers, comparisons=created, already=already, short=short
    )


def _compared(*, project: Project, prompt_ids: list[int], opponent: int) -> dict[int, set[frozenset[int]]]:
    """The project's comparisons of people's answers against `opponent` (a checkpoint's id, or PEOPLE_ID
    for each other), per prompt: each as the set of its responses."""
    groups: dict[int, dict[int, list[tuple[int, int]]]] = {}
    # Only comparisons showing a person's answer (the partial index of people's answers finds them), not
    # every comparison a large project holds for these prompts.
    shown = ComparisonResponse.objects.filter(
        comparison__project=project,
        comparison__prompt_id__in=prompt_ids,
        response__source=Response.Source.HUMAN,
    ).values("comparison_id")
    rows = ComparisonResponse.objects.filter(comparison_id__in=shown, comparison__is_gold=False).values_list(
        "comparison_id", "comparison__prompt_id", "response_id", "response__source", "response__checkpoint_id"
    )
    for comparison_id, prompt_id, response_id, source, checkpoint_id in rows:
        groups.setdefault(prompt_id, {}).setdefault(comparison_id, []).append(
            (response_id, participant(checkpoint_id, source))
        )
    kind = {PEOPLE_ID, opponent}  # one participant when people meet each other
    compared: dict[int, set[frozenset[int]]] = {}
    for prompt_id, comparisons in groups.items():
        for entries in comparisons.values():
            if {participant for _, participant in entries} == kind:
                compared.setdefault(prompt_id, set()).add(frozenset(r for r, _ in entries))
    return compared
