"""The database, not only Python, keeps the data consistent: each invariant is tried with raw writes."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from feedback.models import (
    Comparison,
    ComparisonResponse,
    Judgment,
    Project,
    Prompt,
    Response,
    conversation_hash,
    default_rating_rubric,
    validate_rating_rubric,
)
from tests.factories import (
    AnnotatorFactory,
    AssignmentFactory,
    ComparisonFactory,
    GenerationRunFactory,
    JudgmentFactory,
    PolicyCheckpointFactory,
    ProjectFactory,
    PromptFactory,
    ResponseFactory,
)

pytestmark = pytest.mark.django_db


def refused(model, **changes) -> str:
    """Insert or update through `QuerySet.update` / `create`, bypassing model validation; return the error."""
    if "pk" in changes:
        pk = changes.pop("pk")

        def write():
            model.objects.filter(pk=pk).update(**changes)
    else:

        def write():
            model.objects.create(**changes)

    with pytest.raises(IntegrityError) as caught, transaction.atomic():
        write()
    return str(caught.value)


def test_a_second_judgment_by_the_same_annotator_is_refused_by_the_database():
    judgment = JudgmentFactory()
    error = refused(
        Judgment,
        comparison=judgment.comparison,
        annotator=judgment.annotator,
        choice="b",
        ranking=[2, 1],
        submission_key="another-key",
    )
    assert "judgment_once_per_annotator" in error
    assert Judgment.objects.count() == 1


def test_a_submission_key_is_unique_per_annotator_but_not_across_annotators():
    first = JudgmentFactory(submission_key="key-1")
    error = refused(
        Judgment,
        comparison=ComparisonFactory(project=first.comparison.project),
        annotator=first.annotator,
        choice="a",
        ranking=[1, 2],
        submission_key="key-1",
    )
    assert "judgment_unique_submission_key" in error
    JudgmentFactory(comparison=first.comparison, submission_key="key-1")  # another annotator, same key
    assert Judgment.objects.filter(submission_key="key-1").count() == 2


@pytest.mark.parametrize(
    ("changes", "constraint"),
    [
        ({"choice": "maybe"}, "judgment_choice_valid"),
        ({"choice": "tie", "strength": 2}, "judgment_strength_only_for_preference"),
        ({"strength": 0}, "judgment_strength_only_for_preference"),
        ({"rationale": "x" * 5_001}, "judgment_rationale_bounded"),
        ({"submission_key": ""}, "judgment_submission_key_not_empty"),
    ],
)
def test_judgment_check_constraints(changes, constraint):
    judgment = JudgmentFactory()
    assert constraint in refused(Judgment, pk=judgment.pk, **changes)
    judgment.refresh_from_db()
    assert (judgment.choice, judgment.strength, judgment.rationale) == ("a", 2, "")


@pytest.mark.parametrize(
    "counters", [{"judgment_count": 4}, {"lease_count": 4}, {"judgment_count": 2, "lease_count": 2}]
)
def test_a_comparison_never_holds_more_judgments_and_leases_than_it_requires(counters):
    comparison = ComparisonFactory(required_judgments=3)
    # PostgreSQL checks constraints by name: the overlap rule comes before `comparison_not_over_judged`.
    assert "comparison_not_over_assigned" in refused(Comparison, pk=comparison.pk, **counters)
    Comparison.objects.filter(pk=comparison.pk).update(judgment_count=2, lease_count=1)
    comparison.refresh_from_db()
    assert (comparison.judgment_count, comparison.lease_count) == (2, 1)


def test_a_response_appears_once_per_comparison_and_each_position_once():
    comparison = ComparisonFactory()
    first = comparison.entries.get(position=0)
    assert "comparison_response_unique" in refused(
        ComparisonResponse, comparison=comparison, response=first.response, position=2
    )
    third = ResponseFactory(prompt=comparison.prompt, run=first.response.run, sample_index=9)
    assert "comparison_position_unique" in refused(
        ComparisonResponse, comparison=comparison, response=third, position=1
    )
    assert "comparison_position_range" in refused(
        ComparisonResponse, comparison=comparison, response=third, position=8
    )
    assert [entry.label for entry in comparison.entries.order_by("position")] == ["A", "B"]


def test_a_sample_is_unique_per_prompt_checkpoint_run_and_index():
    response = ResponseFactory(sample_index=0)
    error = refused(
        Response,
        prompt=response.prompt,
        checkpoint=response.checkpoint,
        run=response.run,
        sample_index=0,
        text="the same sample again",
    )
    assert "response_unique_sample" in error
    ResponseFactory(prompt=response.prompt, run=response.run, sample_index=1)
    assert Response.objects.count() == 2


def test_one_assignment_per_comparison_and_annotator():
    assignment = AssignmentFactory()
    error = refused(
        type(assignment),
        comparison=assignment.comparison,
        annotator=assignment.annotator,
        leased_at=assignment.leased_at,
        expires_at=assignment.expires_at,
    )
    assert "assignment_unique_per_annotator" in error
    assert "assignment_expiry_after_lease" in refused(
        type(assignment), pk=assignment.pk, expires_at=assignment.leased_at - timedelta(seconds=1)
    )


def test_prompt_external_id_is_unique_per_project_only():
    prompt = PromptFactory(external_id="p-1")
    assert "prompt_unique_external_id" in refused(
        Prompt,
        project=prompt.project,
        external_id="p-1",
        conversation=prompt.conversation,
        content_hash=prompt.content_hash,
    )
    PromptFactory(external_id="p-1")  # another project
    assert Prompt.objects.filter(external_id="p-1").count() == 2


@pytest.mark.parametrize(
    ("changes", "constraint"),
    [
        ({"category": "poetry"}, "prompt_category_valid"),
        ({"external_id": ""}, "prompt_external_id_not_empty"),
        ({"content_hash": "abc"}, "prompt_content_hash_sha256"),
    ],
)
def test_prompt_check_constraints(changes, constraint):
    prompt = PromptFactory()
    assert constraint in refused(Prompt, pk=prompt.pk, **changes)


@pytest.mark.parametrize(
    ("changes", "constraint"),
    [
        ({"responses_per_comparison": 3}, "project_pairwise_compares_two"),
        (
            {"comparison_mode": "ranking", "responses_per_comparison": 9},
            "project_responses_per_comparison_range",
        ),
        ({"judgments_per_comparison": 0}, "project_judgments_per_comparison_positive"),
        ({"lease_duration": timedelta(0)}, "project_lease_duration_positive"),
        ({"top_p": 1.5}, "project_sampling_range"),
    ],
)
def test_project_check_constraints(changes, constraint):
    project = ProjectFactory()
    assert constraint in refused(Project, pk=project.pk, **changes)


def test_a_run_cannot_pit_a_checkpoint_against_itself_or_finish_more_than_it_has():
    run = GenerationRunFactory(total_prompts=10)
    assert "run_opponent_differs" in refused(type(run), pk=run.pk, opponent_checkpoint=run.checkpoint)
    assert "run_progress_within_total" in refused(type(run), pk=run.pk, done_prompts=9, failed_prompts=2)
    type(run).objects.filter(pk=run.pk).update(opponent_checkpoint=PolicyCheckpointFactory(), done_prompts=8)


def test_a_checkpoint_cannot_be_its_own_parent_and_revision_is_for_hub_sources():
    checkpoint = PolicyCheckpointFactory()
    assert "checkpoint_not_own_parent" in refused(type(checkpoint), pk=checkpoint.pk, parent=checkpoint.pk)
    assert "checkpoint_revision_only_for_hub" in refused(type(checkpoint), pk=checkpoint.pk, revision="main")
    type(checkpoint).objects.filter(pk=checkpoint.pk).update(
        source_type="hub", source="org/model", revision="main"
    )


def test_project_clean_explains_the_mode_and_size_rule():
    with pytest.raises(ValidationError) as caught:
        ProjectFactory.build(comparison_mode="ranking", responses_per_comparison=2).clean()
    assert caught.value.message_dict == {
        "responses_per_comparison": ["A ranking project compares 3 to 8 responses."]
    }


def test_the_default_rubric_is_valid_and_bad_rubrics_say_why():
    validate_rating_rubric(default_rating_rubric())
    assert [axis["key"] for axis in default_rating_rubric()] == [
        "instruction_following",
        "helpfulness",
        "format",
        "tone",
        "safety",
    ]
    axis = default_rating_rubric()[0]
    for rubric, message in [
        ({"key": "x"}, "The rubric must be a list of axes."),
        ([axis, axis], "Axis 2: key 'instruction_following' is used twice."),
        (
            [{**axis, "key": "Has Space"}],
            "Axis 1: key 'Has Space' must use lowercase letters, digits and '_'.",
        ),
        (
            [{**axis, "scale": {"min": 5, "max": 1}}],
            "Axis 1 (instruction_following): scale needs 0 <= min < max <= 100.",
        ),
        ([{**axis, "weight": 2}], "Axis 1: unknown fields ['weight']."),
    ]:
        with pytest.raises(ValidationError) as caught:
            validate_rating_rubric(rubric)
        assert caught.value.messages == [message]


def test_conversation_hash_ignores_key_order_but_not_content():
    a = [{"role": "user", "content": "Hi"}]
    assert conversation_hash(a) == conversation_hash([{"content": "Hi", "role": "user"}])
    assert conversation_hash(a) != conversation_hash([{"role": "user", "content": "Hi "}])
    assert len(conversation_hash(a)) == 64


def test_deleting_an_annotator_with_judgments_is_refused():
    judgment = JudgmentFactory()
    with pytest.raises(Exception, match="protected"):
        judgment.annotator.delete()
    assert Judgment.objects.filter(pk=judgment.pk).exists()
    AnnotatorFactory().delete()  # without judgments, fine
