"""factory_boy factories: rows the way services would make them, with the least a test must say."""

from datetime import timedelta

import factory
import numpy as np
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone

from feedback import models
from feedback.roles import ANNOTATORS_GROUP, DATA_ENGINEERS_GROUP
from feedback.services import answers

TEST_PASSWORD = "correct horse battery staple"


def _member_of(group_name: str) -> factory.PostGeneration:
    def add_to_group(user, create, extracted, **kwargs):
        if create:
            # get_or_create: transactional tests flush the database, data migrations' groups included.
            user.groups.add(Group.objects.get_or_create(name=group_name)[0])

    return factory.PostGeneration(add_to_group)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password(TEST_PASSWORD)


class AnnotatorFactory(UserFactory):
    role = _member_of(ANNOTATORS_GROUP)


class DataEngineerFactory(UserFactory):
    role = _member_of(DATA_ENGINEERS_GROUP)


class AdminFactory(UserFactory):
    is_staff = True
    is_superuser = True


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Project

    name = factory.Sequence(lambda n: f"Project {n}")
    slug = factory.Sequence(lambda n: f"project-{n}")


class PromptFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Prompt

    project = factory.SubFactory(ProjectFactory)
    external_id = factory.Sequence(lambda n: f"prompt-{n}")
    conversation = factory.Sequence(lambda n: [{"role": "user", "content": f"Question number {n}?"}])
    category = models.PromptCategory.EXPLAIN
    content_hash = factory.LazyAttribute(lambda prompt: models.conversation_hash(prompt.conversation))


class PolicyCheckpointFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.PolicyCheckpoint

    name = factory.Sequence(lambda n: f"checkpoint-{n}")
    source = factory.Sequence(lambda n: f"/models/checkpoint-{n}")


class GenerationRunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.GenerationRun

    project = factory.SubFactory(ProjectFactory)
    checkpoint = factory.SubFactory(PolicyCheckpointFactory)
    samples_per_prompt = 2


class ResponseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Response

    prompt = factory.SubFactory(PromptFactory)
    run = factory.SubFactory(GenerationRunFactory, project=factory.SelfAttribute("..prompt.project"))
    checkpoint = factory.SelfAttribute("run.checkpoint")
    sample_index = factory.Sequence(lambda n: n)
    text = factory.Sequence(lambda n: f"Answer number {n}.")


class ComparisonFactory(factory.django.DjangoModelFactory):
    """A pairwise comparison of two fresh responses of one run to one prompt."""

    class Meta:
        model = models.Comparison
        skip_postgeneration_save = True

    prompt = factory.SubFactory(PromptFactory)
    project = factory.SelfAttribute("prompt.project")
    required_judgments = 3

    @factory.post_generation
    def with_responses(self, create, extracted, **kwargs):
        if not create:
            return
        run = GenerationRunFactory(project=self.project)
        for position in range(extracted or 2):
            response = ResponseFactory(prompt=self.prompt, run=run, sample_index=position)
            models.ComparisonResponse.objects.create(comparison=self, response=response, position=position)


class AssignmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Assignment

    comparison = factory.SubFactory(ComparisonFactory)
    annotator = factory.SubFactory(AnnotatorFactory)
    leased_at = factory.LazyFunction(timezone.now)
    expires_at = factory.LazyAttribute(lambda assignment: assignment.leased_at + timedelta(minutes=20))


class JudgmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Judgment

    comparison = factory.SubFactory(ComparisonFactory)
    annotator = factory.SubFactory(AnnotatorFactory)
    choice = models.Judgment.Choice.A
    ranking = [1, 2]
    strength = 2
    submission_key = factory.Faker("uuid4")


PAIRWISE_RANKINGS = {"a": [1, 2], "b": [2, 1], "tie": [1, 1], "both_bad": [1, 1]}


def judged_comparison(
    project: models.Project,
    choices: list[str],
    *,
    flags: tuple[str, ...] = (),
    status: str = "completed",
    rationale: str = "",
) -> models.Comparison:
    """A pairwise comparison judged once per choice by annotators judge-0, judge-1, …; the first judgment
    carries `flags`; counters and status as the engine would leave them."""
    comparison = ComparisonFactory(prompt__project=project, with_responses=2, required_judgments=len(choices))
    for index, choice in enumerate(choices):
        JudgmentFactory(
            comparison=comparison,
            annotator=AnnotatorFactory(username=f"judge-{index}"),
            choice=choice,
            ranking=PAIRWISE_RANKINGS[choice],
            strength=1 if choice in ("a", "b") else None,
            flags=list(flags) if index == 0 else [],
            rationale=rationale,
        )
    models.Comparison.objects.filter(pk=comparison.pk).update(judgment_count=len(choices), status=status)
    comparison.refresh_from_db()
    return comparison


# --- checkpoints in battle (the leaderboard) ------------------------------------------------------------


def shown(project, checkpoints, *, category="explain", texts=None):
    """A comparison of one response per checkpoint, in that display order."""
    prompt = PromptFactory(project=project, category=category)
    comparison = models.Comparison.objects.create(
        project=project, prompt=prompt, required_judgments=50, status="completed"
    )
    for position, checkpoint in enumerate(checkpoints):
        run = models.GenerationRun.objects.filter(project=project, checkpoint=checkpoint).first()
        if run is None:
            run = models.GenerationRun.objects.create(
                project=project, checkpoint=checkpoint, samples_per_prompt=1
            )
        text = texts[position] if texts else _answer(checkpoint, prompt.pk, position)
        response = models.Response.objects.create(
            prompt=prompt, checkpoint=checkpoint, run=run, sample_index=position, text=text
        )
        models.ComparisonResponse.objects.create(comparison=comparison, response=response, position=position)
    return comparison


def _answer(checkpoint, prompt_pk: int, position: int) -> str:
    """An answer of varied length and markdown, independent of the checkpoint's name."""
    items = (prompt_pk * 7 + position * 3) % 5
    words = " ".join(["word"] * ((prompt_pk * 13 + position * 29) % 40))
    return f"Answer to {prompt_pk}. {words}" + "".join(f"\n- point {index}" for index in range(items))


def judge(comparison, annotator, choice="a", *, ranking=None, ratings=None, rationale="", flags=()):
    return models.Judgment.objects.create(
        comparison=comparison,
        annotator=annotator,
        choice=choice,
        ranking=ranking or PAIRWISE_RANKINGS[choice],
        strength=1 if choice in ("a", "b") else None,
        ratings=ratings or {},
        rationale=rationale,
        flags=list(flags),
        submission_key=f"key-{comparison.pk}-{annotator.pk}",
    )


def planted_project(*, judgments_per_pair=60, seed=3):
    """A base checkpoint, its instruction-tuned child and a LoRA step on that (the newest), judged by
    six annotators who prefer the child to the base 75% of the time and the LoRA step to the child 60%;
    every judgment rates helpfulness, some with a rationale."""
    rng = np.random.default_rng(seed)
    project = ProjectFactory(rating_rubric=[{"key": "helpful", "label": "Helpfulness", "min": 1, "max": 5}])
    base = PolicyCheckpointFactory(name="base", kind="base")
    instruct = PolicyCheckpointFactory(name="instruct", parent=base)
    lora = PolicyCheckpointFactory(name="lora", parent=instruct, training_step=200)
    people = [AnnotatorFactory() for _ in range(6)]
    better = {(base.pk, instruct.pk): 0.25, (instruct.pk, lora.pk): 0.4, (base.pk, lora.pk): 0.2}
    quality = {base.pk: 2, instruct.pk: 4, lora.pk: 5}
    for (older, newer), p_older in better.items():
        checkpoint = {c.pk: c for c in (base, instruct, lora)}
        for index in range(judgments_per_pair):
            order = [checkpoint[older], checkpoint[newer]][:: 1 if index % 2 else -1]
            comparison = shown(project, order, category=["list", "explain"][index // 2 % 2])
            first, second = comparison.entries.order_by("position")
            older_wins = rng.random() < p_older
            older_first = order[0].pk == older
            choice = "a" if older_wins == older_first else "b"
            judge(
                comparison,
                people[index % 6],
                choice,
                ratings={
                    str(first.response_id): {
                        "helpful": quality[first.response.checkpoint_id] - index % 3 // 2
                    },
                    str(second.response_id): {
                        "helpful": quality[second.response.checkpoint_id] - index % 4 // 3
                    },
                },
                rationale="clearer" if index % 3 == 0 else "",
            )
    return project, base, instruct, lora


# --- people's answers against a checkpoint ------------------------------------------------------------


def writing_project(*, prompts=4, writers=2, model_answers=2):
    """A demonstration project whose prompts each have one answer per writer and `model_answers` answers
    of one checkpoint; returns (project, checkpoint, writers)."""
    project = ProjectFactory(comparison_mode=models.Project.ComparisonMode.DEMONSTRATION)
    checkpoint = PolicyCheckpointFactory()
    run = GenerationRunFactory(project=project, checkpoint=checkpoint)
    people = [AnnotatorFactory() for _ in range(writers)]
    for number in range(prompts):
        prompt = PromptFactory(project=project)
        for writer in people:
            answers.human_answer_create(
                prompt=prompt, author=writer, text=f"{writer.username} answers {number}."
            )
        for index in range(model_answers):
            ResponseFactory(prompt=prompt, run=run, sample_index=index, text=f"Model {index} on {number}.")
    return project, checkpoint, people


def judge_people_against(judged, *, people_win=0.8):
    """Three annotators judge every comparison: people's answer wins `people_win` of them."""
    annotators = [AnnotatorFactory() for _ in range(3)]
    comparisons = list(models.Comparison.objects.filter(project=judged).order_by("pk"))
    for index, comparison in enumerate(comparisons):
        first = models.ComparisonResponse.objects.get(comparison=comparison, position=0)
        first_is_people = first.response.source == models.Response.Source.HUMAN
        people_better = (index * 7 % 10) < people_win * 10
        for annotator in annotators:
            judge(comparison, annotator, "a" if first_is_people == people_better else "b")
    models.Comparison.objects.filter(project=judged).update(status="completed", judgment_count=3)
    return comparisons
