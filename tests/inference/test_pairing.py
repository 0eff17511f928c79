"""Pairing a prompt's responses into comparisons: the plan (pure) and what gets stored."""

import itertools
import random

import pytest

from feedback.models import Comparison, ComparisonResponse, Project
from inference.pairing import Candidate, comparisons_create_for_prompts, plan_comparisons
from tests.factories import (
    GenerationRunFactory,
    PolicyCheckpointFactory,
    ProjectFactory,
    PromptFactory,
    ResponseFactory,
)

A, B = 1, 2


def candidates(
    count: int, *, checkpoint: int = A, start: int = 0, texts: list[str] | None = None
) -> list[Candidate]:
    return [
        Candidate(start + index, checkpoint, index, texts[index] if texts else f"text {checkpoint}-{index}")
        for index in range(count)
    ]


def plan(cands, *, opponent=None, size=2, strategy="disjoint", cap=100, seed=0):
    return plan_comparisons(
        candidates=cands,
        checkpoint_id=A,
        opponent_checkpoint_id=opponent,
        size=size,
        strategy=strategy,
        cap=cap,
        rng=random.Random(seed),
    )


def ids(groups):
    return [sorted(c.response_id for c in group) for group in groups]


def test_disjoint_pairs_use_each_response_at_most_once():
    groups = plan(candidates(7))
    assert len(groups) == 3
    used = [c.response_id for group in groups for c in group]
    assert len(used) == len(set(used)) == 6
    assert all(len(group) == 2 for group in groups)


def test_all_pairs_are_every_pair_up_to_the_cap():
    assert sorted(ids(plan(candidates(4), strategy="all_pairs"))) == [
        sorted(pair) for pair in itertools.combinations(range(4), 2)
    ]
    capped = plan(candidates(6), strategy="all_pairs", cap=4)
    assert len(capped) == 4
    assert len({tuple(group) for group in ids(capped)}) == 4


def test_k_wise_sets_for_ranking_projects():
    groups = plan(candidates(8), size=3)
    assert [len(group) for group in groups] == [3, 3]
    many = plan(candidates(10), size=4, strategy="all_pairs", cap=5)
    assert len(many) == 5
    assert len({tuple(group) for group in ids(many)}) == 5
    assert all(len(set(group)) == 4 for group in ids(many))


def test_byte_identical_responses_are_never_compared():
    same = candidates(4, texts=["same", "same", "other", "same"])
    groups = plan(same, strategy="all_pairs")
    assert ids(groups) == [[0, 2]]
    assert plan(candidates(3, texts=["x", "x", "x"])) == []


def test_two_checkpoints_pit_one_response_of_each():
    ours, theirs = candidates(3, checkpoint=A), candidates(3, checkpoint=B, start=10)
    for strategy, expected in (("disjoint", 3), ("all_pairs", 9)):
        groups = plan(ours + theirs, opponent=B, strategy=strategy)
        assert len(groups) == expected
        assert all(sorted(c.checkpoint_id for c in group) == [A, B] for group in groups)
    tied = plan(
        candidates(1, texts=["same"]) + candidates(1, checkpoint=B, start=10, texts=["same"]), opponent=B
    )
    assert tied == []


def test_display_order_is_shuffled_and_reproducible():
    cands = candidates(2, checkpoint=A) + candidates(2, checkpoint=B, start=10)
    first_positions = {
        plan(cands, opponent=B, strategy="all_pairs", seed=seed)[0][0].checkpoint_id for seed in range(40)
    }
    assert first_positions == {A, B}
    assert ids(plan(cands, opponent=B, seed=7)) == ids(plan(cands, opponent=B, seed=7))
    assert plan(cands, opponent=B, seed=7) == plan(cands, opponent=B, seed=7)


@pytest.mark.django_db
def test_comparisons_are_stored_with_positions_and_required_judgments():
    project = ProjectFactory(judgments_per_comparison=2, pairing_strategy=Project.PairingStrategy.ALL_PAIRS)
    ours, theirs = PolicyCheckpointFactory(), PolicyCheckpointFactory()
    run = GenerationRunFactory(
        project=project, checkpoint=ours, opponent_checkpoint=theirs, samples_per_prompt=2
    )
    prompt = PromptFactory(project=project)
    for checkpoint in (ours, theirs):
        for index in range(2):
            ResponseFactory(prompt=prompt, run=run, checkpoint=checkpoint, sample_index=index)

    assert comparisons_create_for_prompts(run=run, prompt_ids=[prompt.pk]) == 4
    comparisons = Comparison.objects.filter(generation_run=run)
    assert comparisons.count() == 4
    assert set(comparisons.values_list("required_judgments", "project_id", "prompt_id")) == {
        (2, project.pk, prompt.pk)
    }
    for comparison in comparisons:
        entries = list(ComparisonResponse.objects.filter(comparison=comparison).order_by("position"))
        assert [entry.position for entry in entries] == [0, 1]
        assert sorted(entry.response.checkpoint_id for entry in entries) == sorted([ours.pk, theirs.pk])
        # What an annotator has to read, stored once (characters, not bytes).
        assert comparison.characters == sum(len(entry.response.text) for entry in entries)
