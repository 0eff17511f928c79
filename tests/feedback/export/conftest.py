"""A small, fully known judgment set: every export test derives its expected rows from it by hand."""

import zipfile
from dataclasses import dataclass

import pytest

from feedback.export.options import ExportOptions
from feedback.models import Comparison, ComparisonResponse, Judgment, PolicyCheckpoint, Project
from feedback.services.exports import export_create, export_path, export_run
from tests.factories import (
    AnnotatorFactory,
    ComparisonFactory,
    GenerationRunFactory,
    JudgmentFactory,
    PolicyCheckpointFactory,
    ProjectFactory,
    PromptFactory,
    ResponseFactory,
)


@dataclass
class Corpus:
    project: Project
    kwise_project: Project
    alpha: PolicyCheckpoint
    beta: PolicyCheckpoint
    annotators: list
    comparisons: dict[str, Comparison]


def comparison_of(project, prompt, checkpoints_and_texts, *, required=3):
    """A comparison whose position i shows texts[i], written by checkpoints[i]."""
    comparison = Comparison.objects.create(project=project, prompt=prompt, required_judgments=required)
    runs = {}
    for position, (checkpoint, text) in enumerate(checkpoints_and_texts):
        run = runs.setdefault(checkpoint.pk, GenerationRunFactory(project=project, checkpoint=checkpoint))
        response = ResponseFactory(
            prompt=prompt, run=run, checkpoint=checkpoint, sample_index=position, text=text
        )
        ComparisonResponse.objects.create(comparison=comparison, response=response, position=position)
    return comparison


def judge(
    comparison, annotator, choice, *, strength=None, ranking=None, flags=(), ratings=None, rationale=""
):
    if ranking is None:
        ranking = {"a": [1, 2], "b": [2, 1], "tie": [1, 1], "both_bad": [1, 1]}[choice]
    return JudgmentFactory(
        comparison=comparison,
        annotator=annotator,
        choice=choice,
        strength=strength,
        ranking=ranking,
        flags=list(flags),
        ratings=ratings or {},
        rationale=rationale,
    )


@pytest.fixture
def corpus(db):
    project = ProjectFactory(slug="chat", strength_labels=["Slightly", "Clearly", "Much"])
    kwise = ProjectFactory(
        slug="ranks",
        comparison_mode="ranking",
        responses_per_comparison=3,
        allows_tie=True,
        strength_labels=[],
    )
    alpha = PolicyCheckpointFactory(name="alpha")
    beta = PolicyCheckpointFactory(name="beta")
    people = [AnnotatorFactory(username=f"rater-{index}") for index in range(4)]
    haiku = PromptFactory(
        project=project,
        external_id="haiku",
        conversation=[{"role": "user", "content": "Write a haiku about rain."}],
    )
    multi = PromptFactory(
        project=project,
        external_id="multi",
        category="list",
        conversation=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Name a colour."},
            {"role": "assistant", "content": "Blue."},
            {"role": "user", "content": "Another, «please»."},
        ],
    )
    sort = PromptFactory(
        project=kwise, external_id="sort", conversation=[{"role": "user", "content": "Sort 3,1,2."}]
    )
    comparisons = {
        # A wins 2–1, strengths 3 and 1: consensus A, margin mean(3, 1) = 2, agreement 2/3.
        "majority": comparison_of(project, haiku, [(alpha, "Rain taps the roof."), (beta, "It rains.")]),
        # One vote each for tie and both_bad and A: no majority.
        "split": comparison_of(project, multi, [(beta, "Green."), (alpha, 'Red, "crimson".')]),
        "tie": comparison_of(project, multi, [(alpha, "Yellow."), (alpha, "Gold.")]),
        "bad": comparison_of(project, haiku, [(beta, "Sun."), (beta, "Snow.")]),
        "kwise": comparison_of(kwise, sort, [(alpha, "1,2,3"), (beta, "3,2,1"), (alpha, "1,3,2")]),
    }
    a, b, c, d = people
    judge(comparisons["majority"], a, "a", strength=3, ratings={})
    judge(comparisons["majority"], b, "a", strength=1)
    judge(comparisons["majority"], c, "b", strength=2)
    judge(comparisons["split"], a, "tie")
    judge(comparisons["split"], b, "both_bad")
    judge(comparisons["split"], c, "a", strength=1)
    judge(comparisons["tie"], a, "tie")
    judge(comparisons["tie"], b, "tie")
    judge(comparisons["bad"], a, "both_bad", flags=["broken"])
    judge(comparisons["bad"], d, "both_bad")
    kwise_comparison = comparisons["kwise"]
    entries = list(kwise_comparison.entries.order_by("position").values_list("response_id", flat=True))
    judge(
        kwise_comparison,
        a,
        "ranked",
        ranking=[1, 3, 2],
        ratings={str(entries[0]): {"helpfulness": 5}, str(entries[1]): {"helpfulness": 1}},
    )
    judge(kwise_comparison, b, "ranked", ranking=[1, 3, 2], ratings={str(entries[0]): {"helpfulness": 4}})
    judge(kwise_comparison, c, "ranked", ranking=[2, 3, 1])
    assert Judgment.objects.count() == 13
    return Corpus(project, kwise, alpha, beta, people, comparisons)


@pytest.fixture
def prompt_factory():
    return PromptFactory


@pytest.fixture
def comparison_factory():
    return ComparisonFactory


def exported(tmp_path, **options):
    """Run the export job and unpack its archive, as a data engineer would after downloading it:
    (the directory, the export)."""
    export = export_run(export_id=export_create(options=ExportOptions.from_mapping(options)).pk)
    assert export.status == "completed", export.error
    target = tmp_path / f"export-{export.pk}"
    with zipfile.ZipFile(export_path(export)) as bundle:
        bundle.extractall(target)
    return target, export
