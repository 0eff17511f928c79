"""Gold items: imported or marked by admins, served inside the normal flow at the project's rate, never
twice to one annotator, out of progress and exports, and grading annotators into warnings and
suspensions that the next claim explains."""

from __future__ import annotations

import io
import json
import math
import re
import uuid

import pytest
from django.urls import reverse

from annotate.assignment import (
    AnnotatorSuspended,
    comparison_lease_next,
    gold_due,
    judgment_submit,
)
from annotate.progress import project_completion_count
from annotate.rendering import markdown_to_safe_html
from annotate.selectors import comparison_page
from annotate.submission import JudgmentSubmission
from feedback.export.options import ExportOptions
from feedback.export.source import judgments_selected
from feedback.models import (
    AnnotatorStanding,
    Assignment,
    Comparison,
    GoldVerdict,
    Judgment,
    Project,
    Prompt,
    Response,
    StandingChange,
)
from feedback.services.gold import GoldInvalid, comparison_mark_gold, gold_import
from feedback.services.prompts import PromptImportError
from feedback.services.standing import (
    StandingChangeInvalid,
    annotator_reinstate,
    annotator_suspend,
    gold_answers,
    standing_evaluate,
)
from tests.annotate.conftest import comparisons_bulk_create
from tests.factories import AdminFactory, AnnotatorFactory, ProjectFactory

pytestmark = pytest.mark.django_db


def jsonl(*records: object) -> io.BytesIO:
    return io.BytesIO("\n".join(json.dumps(record) for record in records).encode())


def gold_line(number: int, expected: object = "A", **extra: object) -> dict[str, object]:
    return {
        "id": f"gold-{number}",
        "prompt": f"Gold question {number}?",
        "responses": [f"The right answer to {number}.", f"A wrong answer to {number}."],
        "expected": expected,
        **extra,
    }


def gold_items(project: Project, count: int, expected: object = "A") -> list[Comparison]:
    gold_import(project=project, source=jsonl(*(gold_line(number, expected) for number in range(count))))
    return list(Comparison.objects.filter(project=project, is_gold=True).order_by("pk"))


def right_answer(comparison: Comparison) -> JudgmentSubmission:
    """The choice that names the response the gold line listed first (its verdict), wherever it is shown."""
    verdict = GoldVerdict.objects.get(comparison=comparison).verdict
    (best,) = [key for key in verdict["accepted"] if key.isdigit()]
    first_shown = comparison.entries.get(position=0).response_id
    return JudgmentSubmission(choice="a" if str(first_shown) == best else "b", strength=1)


def wrong_answer(comparison: Comparison) -> JudgmentSubmission:
    right = right_answer(comparison)
    return JudgmentSubmission(choice="b" if right.choice == "a" else "a", strength=1)


def judge(annotator, project, answer=None) -> Assignment | None:
    """Claim the next comparison and submit `answer(comparison)` (default: A) on it."""
    lease = comparison_lease_next(annotator=annotator, project=project)
    if lease is None:
        return None
    comparison = Comparison.objects.get(pk=lease.comparison_id)
    submission = (
        answer(comparison) if answer and comparison.is_gold else JudgmentSubmission(choice="a", strength=1)
    )
    judgment_submit(
        annotator=annotator, assignment_id=lease.pk, submission_key=uuid.uuid4().hex, submission=submission
    )
    return lease


# --- Import and marking ---------------------------------------------------------------------------------


def test_an_imported_gold_item_is_a_gold_comparison_with_its_verdict_by_response(project):
    admin = AdminFactory()
    report = gold_import(
        project=project,
        source=jsonl(gold_line(1, ["B", "tie"], explanation="B cites the source."), gold_line(2)),
        actor=admin,
    )
    assert (report.created, report.unchanged) == (2, 0)
    comparison = Comparison.objects.get(prompt__external_id="gold-1")
    assert (comparison.is_gold, comparison.required_judgments, comparison.status) == (True, None, "open")
    assert comparison.prompt.is_gold
    responses = list(Response.objects.filter(prompt=comparison.prompt).order_by("sample_index"))
    assert [(response.source, response.checkpoint_id, response.run_id) for response in responses] == [
        ("imported", None, None)
    ] * 2
    verdict = GoldVerdict.objects.get(comparison=comparison)
    # "B" is the line's second response, whatever position it is shown in.
    assert verdict.verdict == {"accepted": sorted([str(responses[1].pk), "tie"])}
    assert (verdict.explanation, verdict.created_by) == ("B cites the source.", admin)
    assert sorted(comparison.entries.values_list("position", flat=True)) == [0, 1]


def test_reimporting_a_gold_file_skips_what_is_there(project):
    gold_items(project, 2)
    report = gold_import(project=project, source=jsonl(gold_line(0), gold_line(1), gold_line(7)))
    assert (report.created, report.unchanged) == (1, 2)
    assert Comparison.objects.filter(project=project, is_gold=True).count() == 3


def test_a_gold_file_with_bad_lines_stores_nothing_and_names_every_line(project):
    comparisons_bulk_create(project, 1)  # an ordinary prompt with id engine-0
    before = (Prompt.objects.count(), Response.objects.count(), Comparison.objects.count())
    source = jsonl(
        gold_line(1),
        gold_line(2, "C"),
        {**gold_line(3), "responses": ["only one"]},
        {**gold_line(4), "responses": ["same", "same"]},
        {key: value for key, value in gold_line(5).items() if key != "expected"},
        {**gold_line(6), "unexpected": 1},
        gold_line(1),
        {**gold_line(8), "id": "engine-0"},
    )
    with pytest.raises(PromptImportError) as refused:
        gold_import(project=project, source=source)
    assert [str(error) for error in refused.value.errors] == [
        "line 2: expected: 'C' is not a response here; use one of A, B.",
        "line 3: responses: this project compares 2 responses, the line gives 1",
        "line 4: two responses are the same text: nothing to choose between",
        "line 5: missing the expected verdict ('expected')",
        "line 6: unknown field(s) unexpected; allowed: id, prompt, messages, category, metadata, responses, "
        "expected, explanation",
        "line 7: id 'gold-1' repeats line 1",
    ]
    assert (Prompt.objects.count(), Response.objects.count(), Comparison.objects.count()) == before
    # Lines that only clash with what is stored are refused after the file reads well, all the same.
    with pytest.raises(PromptImportError) as clash:
        gold_import(project=project, source=jsonl(gold_line(1), {**gold_line(8), "id": "engine-0"}))
    assert [str(error) for error in clash.value.errors] == [
        "line 2: id 'engine-0' is already an ordinary prompt of this project"
    ]
    assert (Prompt.objects.count(), Response.objects.count(), Comparison.objects.count()) == before


def test_marking_a_judged_comparison_gold_reopens_it_and_grades_its_judgments(project, annotator, colleagues):
    project.gold_rate = 0
    project.save()
    (comparison,) = comparisons_bulk_create(project, 1)
    for person in (annotator, colleagues[0]):
        judge(person, project)
    assert Comparison.objects.get(pk=comparison.pk).status == "completed"
    gold = comparison_mark_gold(comparison_id=comparison.pk, expected="A", explanation="A is right.")
    first = comparison.entries.get(position=0).response_id
    assert gold.verdict == {"accepted": [str(first)]}
    comparison.refresh_from_db()
    assert (comparison.is_gold, comparison.required_judgments, comparison.status) == (True, None, "open")
    assert [answer.correct for answer in gold_answers(project_id=project.pk)] == [True, True]
    # Changing the verdict regrades.
    comparison_mark_gold(comparison_id=comparison.pk, expected=["B"])
    assert [answer.correct for answer in gold_answers(project_id=project.pk)] == [False, False]
    with pytest.raises(GoldInvalid, match="'D' is not a response here"):
        comparison_mark_gold(comparison_id=comparison.pk, expected="D")


# --- Serving ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [0.05, 0.1, 0.25, 0.5])
def test_gold_due_averages_the_rate_and_never_runs_ahead_of_it(rate):
    import random

    rng = random.Random(7)
    gold = 0
    for leases in range(4000):
        if gold_due(rate=rate, leases=leases, gold_slots=gold, draw=rng.random()):
            gold += 1
        assert gold <= rate * (leases + 1) + 1
    assert gold == pytest.approx(rate * 4000, abs=1)


def test_gold_is_served_at_the_rate_never_twice_and_is_left_out_of_progress(project, annotator):
    project.judgments_per_comparison = 1
    project.save()
    comparisons_bulk_create(project, 60)
    gold = gold_items(project, 20)
    served = []
    while (lease := judge(annotator, project, right_answer)) is not None:
        served.append(lease.comparison_id)
    gold_ids = {comparison.pk for comparison in gold}
    gold_served = [pk for pk in served if pk in gold_ids]
    assert len(served) == 60 + len(gold_served)  # every ordinary comparison, and gold among them
    assert len(gold_served) == len(set(gold_served))
    assert 60 * 0.1 - 1 <= len(gold_served) <= math.floor(0.1 * len(served)) + 1
    standing = AnnotatorStanding.objects.get(project=project, annotator=annotator)
    assert (standing.leases, standing.gold_leases) == (len(served), len(gold_served))
    # Gold never completes and never counts: the project is done when the 60 ordinary ones are.
    completion = project_completion_count(project_id=project.pk)
    assert (completion.completed, completion.total) == (60, 60)
    assert set(Comparison.objects.filter(is_gold=True).values_list("status", flat=True)) == {"open"}
    # The last claim found no ordinary work: gold is not served alone, where it would stand out.
    assert comparison_lease_next(annotator=annotator, project=project) is None


def test_gold_serves_every_annotator_beyond_the_overlap(project, annotator, colleagues):
    project.gold_rate = 0.5
    project.save()
    comparisons_bulk_create(project, 40)
    (gold,) = gold_items(project, 1)
    for person in [annotator, *colleagues]:
        while judge(person, project, right_answer) is not None:
            if Judgment.objects.filter(annotator=person, comparison=gold).exists():
                break
    assert Judgment.objects.filter(comparison=gold).count() == 4 > project.judgments_per_comparison
    gold.refresh_from_db()
    assert (gold.judgment_count, gold.lease_count, gold.status) == (4, 0, "open")


def _page_shape(html: str, texts: list[str]) -> str:
    """The page with the comparison's own texts, numbers (ids, counts) and CSRF token taken out."""
    for text in texts:
        html = html.replace(markdown_to_safe_html(text), "TEXT")
    html = re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "CSRF", html)
    return re.sub(r"\d+", "0", html)


def test_the_page_of_a_gold_item_is_the_page_of_any_other(client, project, annotator):
    """Same template, fields, script config and URLs: with their texts and numbers taken out, the page
    of a gold item and of an ordinary one are the same bytes."""
    project.gold_rate = 0.5
    project.save()
    comparisons_bulk_create(project, 8)
    (gold,) = gold_items(project, 1)
    client.force_login(annotator)
    pages: dict[bool, str] = {}
    while len(pages) < 2:
        page = client.get(reverse("annotate:workspace", args=[project.slug]))
        lease = Assignment.objects.get(annotator=annotator, state="leased")
        shown = comparison_page(assignment=lease, project=project)
        texts = [message["content"] for message in shown.conversation] + [
            item.text for item in shown.responses
        ]
        pages[lease.comparison_id == gold.pk] = _page_shape(page.content.decode(), texts)
        answered = client.post(
            reverse("annotate:judgment", args=[project.slug, lease.pk]),
            {"submission_key": uuid.uuid4().hex, "choice": "a", "strength": 1},
            content_type="application/json",
        )
        assert answered.status_code == 201
        assert set(answered.json()) == {"judgment_id", "replayed", "progress", "next_url"}
    assert pages[True] == pages[False]


def test_gold_judgments_never_enter_a_preference_export(project, annotator):
    comparisons_bulk_create(project, 30)
    gold_items(project, 10)
    while judge(annotator, project, right_answer) is not None:
        pass
    assert Judgment.objects.filter(comparison__is_gold=True).exists()
    exported = judgments_selected(ExportOptions.from_mapping({"format": "preference"}), high_water_mark=10**9)
    assert exported.count() == Judgment.objects.filter(comparison__is_gold=False).count() > 0
    assert not exported.filter(comparison__is_gold=True).exists()


# --- Standing --------------------------------------------------------------------------------------------


def test_low_gold_accuracy_warns_then_suspends_and_the_next_claim_says_why(client, project, annotator):
    project.gold_rate = 0.5
    project.gold_min_answers = 4
    project.save()
    comparisons_bulk_create(project, 40)
    gold_items(project, 20)
    answers = iter([right_answer, right_answer, right_answer, wrong_answer])  # 3 of 4: 75%, warned
    while AnnotatorStanding.objects.filter(annotator=annotator, status="active").exists() or not (
        AnnotatorStanding.objects.filter(annotator=annotator).exists()
    ):
        lease = comparison_lease_next(annotator=annotator, project=project)
        comparison = Comparison.objects.get(pk=lease.comparison_id)
        answer = (
            next(answers) if comparison.is_gold else (lambda _: JudgmentSubmission(choice="a", strength=1))
        )
        judgment_submit(
            annotator=annotator,
            assignment_id=lease.pk,
            submission_key=uuid.uuid4().hex,
            submission=answer(comparison),
        )
        standing_evaluate(project_id=project.pk, annotator_id=annotator.pk)
    standing = AnnotatorStanding.objects.get(annotator=annotator)
    assert standing.status == "warned"
    assert (
        standing.reason == "Your gold accuracy 75% (3 of 4 gold items) is below the 80% this project expects."
    )
    # Wrong answers from now on: suspended once even the top of the 95% interval is below 60%, which
    # 3 of 4 right then 4 wrong (3 of 8: the interval reaches 69%) is not yet; 3 of 10 (reaching 60.3%)
    # neither; 3 of 11 (at most 56%) is.
    wrong = 0
    while wrong < 7:
        lease = comparison_lease_next(annotator=annotator, project=project)
        comparison = Comparison.objects.get(pk=lease.comparison_id)
        submission = (
            wrong_answer(comparison) if comparison.is_gold else JudgmentSubmission(choice="a", strength=1)
        )
        judgment_submit(
            annotator=annotator,
            assignment_id=lease.pk,
            submission_key=uuid.uuid4().hex,
            submission=submission,
        )
        wrong += comparison.is_gold
        if wrong < 7:
            assert standing_evaluate(project_id=project.pk, annotator_id=annotator.pk).status == "warned"
    held = comparison_lease_next(annotator=annotator, project=project)  # a lease open when suspended
    standing = standing_evaluate(project_id=project.pk, annotator_id=annotator.pk)
    assert standing.status == "suspended"
    assert Assignment.objects.get(pk=held.pk).state == "expired"  # its place went back
    assert Comparison.objects.get(pk=held.comparison_id).lease_count == 0
    message = r"gold accuracy 27% \(3 of 11 gold items\), at most 57% with 95% confidence, is below the 60%"
    with pytest.raises(AnnotatorSuspended, match=message):
        comparison_lease_next(annotator=annotator, project=project)
    client.force_login(annotator)
    page = client.get(reverse("annotate:workspace", args=[project.slug]))
    assert page.status_code == 403
    assert "is below the 60% this project requires" in page.content.decode()
    refused = client.post(
        reverse("annotate:judgment", args=[project.slug, held.pk]),
        {"submission_key": uuid.uuid4().hex, "choice": "a", "strength": 1},
        content_type="application/json",
    )
    assert refused.status_code == 403
    assert "suspended" in refused.json()["detail"]
    changes = list(
        StandingChange.objects.order_by("created_at").values_list("previous_status", "status", "changed_by")
    )
    assert changes == [("active", "warned", None), ("warned", "suspended", None)]


def test_reinstating_starts_the_gold_count_afresh_and_is_recorded(project, annotator):
    manager = AdminFactory(username="manager")
    project.gold_rate = 0.5
    project.gold_min_answers = 2
    project.save()
    comparisons_bulk_create(project, 30)
    gold_items(project, 10)
    while AnnotatorStanding.objects.filter(annotator=annotator, status="suspended").count() == 0:
        judge(annotator, project, wrong_answer)
        standing_evaluate(project_id=project.pk, annotator_id=annotator.pk)
    with pytest.raises(StandingChangeInvalid, match="Say why"):
        annotator_reinstate(project_id=project.pk, annotator_id=annotator.pk, actor=manager, reason=" ")
    standing = annotator_reinstate(
        project_id=project.pk, annotator_id=annotator.pk, actor=manager, reason="Retrained on the guidelines."
    )
    assert standing.status == "active"
    # The old wrong answers no longer count: evaluating again changes nothing.
    assert standing_evaluate(project_id=project.pk, annotator_id=annotator.pk).status == "active"
    assert comparison_lease_next(annotator=annotator, project=project) is not None
    with pytest.raises(StandingChangeInvalid, match="not suspended"):
        annotator_reinstate(project_id=project.pk, annotator_id=annotator.pk, actor=manager, reason="again")
    annotator_suspend(
        project_id=project.pk, annotator_id=annotator.pk, actor=manager, reason="Copied answers."
    )
    last = StandingChange.objects.first()
    assert (last.previous_status, last.status, last.changed_by, last.reason) == (
        "active",
        "suspended",
        manager,
        "Copied answers.",
    )
    assert StandingChange.objects.filter(changed_by=manager, status="active").get().reason == (
        "Retrained on the guidelines."
    )


def test_a_suspension_is_per_project(project, annotator):
    other = ProjectFactory(slug="elsewhere")
    other.members.add(annotator)
    comparisons_bulk_create(other, 2)
    annotator_suspend(project_id=project.pk, annotator_id=annotator.pk, actor=AdminFactory(), reason="Spam.")
    with pytest.raises(AnnotatorSuspended):
        comparison_lease_next(annotator=annotator, project=project)
    assert comparison_lease_next(annotator=annotator, project=other) is not None
    assert AnnotatorFactory(username="bystander")  # other people are untouched
