"""People against the model end to end on PostgreSQL with a real worker: writers answer a demonstration
project's prompts through the engine, the tiny checkpoint answers them on the worker, the admin asks for
people-against-checkpoint comparisons in a pairwise project and the worker pairs them, annotators judge
through the engine (a writer never sees their own answer), and the worker's leaderboard ranks `people`
beside the checkpoint."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotate.assignment import comparison_lease_next, judgment_submit
from annotate.submission import JudgmentSubmission
from annotate.writing import answer_submit
from feedback.models import PEOPLE, Comparison, GenerationRun, PolicyCheckpoint, Project, Response
from feedback.services.answers import writing_tasks_open
from feedback.services.generation import generation_run_start
from tests.conftest import logged_in_client
from tests.e2e.conftest import wait_for
from tests.factories import AdminFactory, AnnotatorFactory, DataEngineerFactory, ProjectFactory, PromptFactory
from tests.feedback.api.conftest import token_client

pytestmark = pytest.mark.django_db(transaction=True)

PROMPTS = 6


def test_writers_answers_meet_the_checkpoint_and_the_leaderboard_ranks_people(tiny_checkpoint, start_worker):
    checkpoint = PolicyCheckpoint.objects.create(name="tiny-chat", source=str(tiny_checkpoint))
    writing = ProjectFactory(
        slug="write",
        comparison_mode=Project.ComparisonMode.DEMONSTRATION,
        judgments_per_comparison=2,
        samples_per_prompt=2,
        max_new_tokens=8,
    )
    judged = ProjectFactory(slug="people-vs-model", judgments_per_comparison=1)
    PromptFactory.create_batch(PROMPTS, project=writing)
    writing_tasks_open(project=writing)
    writers = [AnnotatorFactory(username=f"writer-{index}") for index in range(2)]
    judges = [AnnotatorFactory(username=f"judge-{index}") for index in range(2)]
    writing.members.add(*writers)
    judged.members.add(*writers, *judges)
    for writer in writers:
        while (task := comparison_lease_next(annotator=writer, project=writing)) is not None:
            answer_submit(
                annotator=writer,
                assignment_id=task.pk,
                submission_key=f"write-{writer.pk}-{task.pk}",
                text=f"A careful answer by {writer.username} to prompt {task.comparison.prompt_id}.",
            )
    assert Response.objects.filter(source="human").count() == 2 * PROMPTS

    worker = start_worker()
    run = generation_run_start(project=writing, checkpoint=checkpoint, seed=3)

    def generated() -> bool:
        run.refresh_from_db()
        return run.is_finished

    wait_for(generated, timeout=240, what="the checkpoint's answers", workers=[worker])
    assert run.status == GenerationRun.Status.COMPLETED

    admin = logged_in_client(AdminFactory())
    sent = admin.post(
        reverse("admin:feedback_project_compare_answers", args=[judged.pk]),
        {"source": writing.pk, "against": checkpoint.pk, "seed": 0},
    )
    assert sent.status_code == 302

    # Disjoint pairs: per prompt, as many as the fewer of its two people's answers and the checkpoint's
    # distinct texts (random weights, 8 tokens: two samples are sometimes the same).
    expected = sum(
        min(2, len(set(Response.objects.filter(run=run, prompt=prompt).values_list("text", flat=True))))
        for prompt in writing.prompts.all()
    )

    def paired() -> bool:
        return Comparison.objects.filter(project=judged).count() == expected

    wait_for(paired, timeout=120, what="the worker to pair people's answers", workers=[worker])
    judged.refresh_from_db()  # as each request loads it

    # Everyone judges what they are given; people's answer wins three times in four.
    judged_count = 0
    for annotator in [*writers, *judges]:
        while (assignment := comparison_lease_next(annotator=annotator, project=judged)) is not None:
            shown = list(assignment.comparison.entries.select_related("response").order_by("position"))
            assert annotator.pk not in {entry.response.author_id for entry in shown}
            people_side = "a" if shown[0].response.source == Response.Source.HUMAN else "b"
            other = "b" if people_side == "a" else "a"
            judgment_submit(
                annotator=annotator,
                assignment_id=assignment.pk,
                submission_key=f"judge-{annotator.pk}-{assignment.pk}",
                submission=JudgmentSubmission(choice=people_side if judged_count % 4 else other, strength=1),
            )
            judged_count += 1
    assert judged_count == expected
    assert not Comparison.objects.filter(project=judged, status="open").exists()

    api = token_client(DataEngineerFactory())
    assert api.get("/api/v1/projects/people-vs-model/leaderboard").status_code == 202

    def served() -> bool:
        return api.get("/api/v1/projects/people-vs-model/leaderboard").status_code == 200

    wait_for(served, timeout=120, what="the worker to compute the leaderboard", workers=[worker])
    report = api.get("/api/v1/projects/people-vs-model/leaderboard").json()["report"]
    entries = {entry["name"]: entry for entry in report["checkpoints"]}
    assert set(entries) == {PEOPLE, "tiny-chat"}
    assert entries[PEOPLE]["wins"] == sum(1 for index in range(expected) if index % 4)
    assert entries[PEOPLE]["raw"]["elo"] > entries["tiny-chat"]["raw"]["elo"]
