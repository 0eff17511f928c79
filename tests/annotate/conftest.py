import pytest

from feedback.models import (
    Comparison,
    ComparisonResponse,
    GenerationRun,
    PolicyCheckpoint,
    Project,
    Prompt,
    Response,
)
from feedback.models import conversation_hash as hash_of
from tests.factories import AnnotatorFactory, ProjectFactory


def comparisons_bulk_create(project: Project, count: int, *, responses_each: int = 2) -> list[Comparison]:
    """`count` comparisons of `responses_each` responses, one prompt each, written in bulk (factories
    would take minutes for the thousands the concurrency tests need)."""
    checkpoint = PolicyCheckpoint.objects.create(
        name=f"bulk-{project.slug}", source=f"/models/{project.slug}"
    )
    run = GenerationRun.objects.create(
        project=project, checkpoint=checkpoint, samples_per_prompt=responses_each
    )
    conversations = [
        [{"role": "user", "content": f"{project.slug} question {index}?"}] for index in range(count)
    ]
    prompts = Prompt.objects.bulk_create(
        Prompt(
            project=project,
            external_id=f"{project.slug}-{index}",
            conversation=conversation,
            content_hash=hash_of(conversation),
        )
        for index, conversation in enumerate(conversations)
    )
    responses = Response.objects.bulk_create(
        Response(
            prompt=prompt,
            checkpoint=checkpoint,
            run=run,
            sample_index=sample,
            text=f"Answer {sample} to {prompt.external_id}.",
        )
        for prompt in prompts
        for sample in range(responses_each)
    )
    comparisons = Comparison.objects.bulk_create(
        Comparison(
            project=project,
            prompt=prompt,
            generation_run=run,
            required_judgments=project.judgments_per_comparison,
        )
        for prompt in prompts
    )
    ComparisonResponse.objects.bulk_create(
        ComparisonResponse(
            comparison=comparison, response=responses[index * responses_each + position], position=position
        )
        for index, comparison in enumerate(comparisons)
        for position in range(responses_each)
    )
    return comparisons


@pytest.fixture
def project(annotator):
    project = ProjectFactory(judgments_per_comparison=2, slug="engine")
    project.members.add(annotator)
    return project


@pytest.fixture
def colleagues(project):
    """Three more members of `project`."""
    people = [AnnotatorFactory(username=f"colleague-{index}") for index in range(3)]
    project.members.add(*people)
    return people
