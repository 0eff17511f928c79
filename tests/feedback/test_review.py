"""The review queue: filled by the quality refresh and by managers, decided by reviewers, one decision
per item even when two race, every decision recorded with the state it replaced."""

from __future__ import annotations

import threading

import pytest
from django.db import connections

from feedback.models import Comparison, ProjectMembership, ReviewDecision, ReviewItem
from feedback.services.quality import project_quality_refresh
from feedback.services.review import (
    ReviewConflict,
    ReviewForbidden,
    ReviewInvalid,
    ReviewKeyReused,
    review_decide,
    review_pick,
)
from tests.factories import PAIRWISE_RANKINGS as RANKINGS
from tests.factories import AnnotatorFactory, JudgmentFactory, ProjectFactory, UserFactory, judged_comparison

judged = judged_comparison


def member(project, username: str, role: str):
    user = UserFactory(username=username)
    ProjectMembership.objects.create(project=project, user=user, role=role)
    return user


@pytest.fixture
def project(db):
    return ProjectFactory(slug="rev", review_agreement_below=0.6, gold_rate=0)


@pytest.mark.django_db
def test_the_quality_refresh_queues_low_agreement_and_flags(project):
    agreed = judged(project, ["a", "a", "a"])
    split = judged(project, ["a", "b", "tie"])  # 1 of 3 made the majority: below 0.6
    unfinished = judged(project, ["a", "b"], status="open")  # not complete: more judgments may settle it
    flagged = judged(project, ["a", "a", "a"], flags=["unsafe"])
    project_quality_refresh(project_id=project.pk)
    queued = dict(ReviewItem.objects.values_list("comparison_id", "reasons"))
    assert queued == {split.pk: ["low_agreement"], flagged.pk: ["flagged"]}
    assert agreed.pk not in queued
    assert unfinished.pk not in queued
    # Refreshing again queues nothing twice.
    project_quality_refresh(project_id=project.pk)
    assert ReviewItem.objects.count() == 2


@pytest.mark.django_db
def test_a_reviewer_decides_once_and_a_retry_replays(project):
    reviewer = member(project, "rita", "reviewer")
    item = ReviewItem.objects.create(
        comparison=judged(project, ["a", "b", "tie"]), project=project, queued_at="2026-12-01T00:00Z"
    )
    result = review_decide(
        reviewer=reviewer,
        item_id=item.pk,
        submission_key="key-0001",
        action="decide",
        verdict={"choice": "b"},
    )
    assert not result.replayed
    item.refresh_from_db()
    assert (item.status, item.verdict, item.decided_by) == (
        "decided",
        {"choice": "b", "ranking": [2, 1], "strength": None},
        reviewer,
    )
    decision = result.decision
    assert (decision.previous_status, decision.previous_verdict, decision.action) == (
        "pending",
        None,
        "decide",
    )
    again = review_decide(
        reviewer=reviewer,
        item_id=item.pk,
        submission_key="key-0001",
        action="decide",
        verdict={"choice": "b"},
    )
    assert again.replayed
    assert again.decision.pk == decision.pk
    with pytest.raises(ReviewKeyReused):
        review_decide(
            reviewer=reviewer,
            item_id=item.pk,
            submission_key="key-0001",
            action="decide",
            verdict={"choice": "a"},
        )
    with pytest.raises(ReviewConflict, match="already decided by rita"):
        review_decide(
            reviewer=reviewer,
            item_id=item.pk,
            submission_key="key-0002",
            action="decide",
            verdict={"choice": "a"},
        )
    assert ReviewDecision.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("who", "action", "verdict", "reason", "error"),
    [
        ("annotator", "decide", {"choice": "a"}, "", ReviewForbidden),
        ("reviewer", "decide", {"choice": "c"}, "", ReviewInvalid),
        ("reviewer", "decide", None, "", ReviewInvalid),
        ("reviewer", "retire", None, "", ReviewInvalid),  # retiring needs a reason
        ("reviewer", "publish", None, "why", ReviewInvalid),
    ],
)
def test_a_refused_decision_changes_nothing(project, who, action, verdict, reason, error):
    reviewer = member(project, "rita", "reviewer")
    annotator = member(project, "andy", "annotator")
    comparison = judged(project, ["a", "b", "tie"])
    item = ReviewItem.objects.create(comparison=comparison, project=project, queued_at="2026-12-01T00:00Z")
    with pytest.raises(error):
        review_decide(
            reviewer=reviewer if who == "reviewer" else annotator,
            item_id=item.pk,
            submission_key="key-0001",
            action=action,
            verdict=verdict,
            reason=reason,
        )
    item.refresh_from_db()
    assert (item.status, item.verdict, ReviewDecision.objects.count()) == ("pending", None, 0)
    assert Comparison.objects.get(pk=comparison.pk).status == "completed"


@pytest.mark.django_db
def test_sending_back_reopens_the_comparison_and_it_queues_again_when_complete(project):
    reviewer = member(project, "rita", "reviewer")
    comparison = judged(project, ["a", "b", "tie"])
    project_quality_refresh(project_id=project.pk)
    item = ReviewItem.objects.get(comparison=comparison)
    review_decide(
        reviewer=reviewer,
        item_id=item.pk,
        submission_key="key-0001",
        action="send_back",
        reason="Split three ways.",
    )
    comparison.refresh_from_db()
    assert (comparison.status, comparison.required_judgments) == ("open", 5)
    for index, choice in enumerate(["b", "a"]):
        JudgmentFactory(
            comparison=comparison,
            annotator=AnnotatorFactory(username=f"late-{index}"),
            choice=choice,
            ranking=RANKINGS[choice],
        )
    Comparison.objects.filter(pk=comparison.pk).update(judgment_count=5, status="completed")
    project_quality_refresh(project_id=project.pk)  # 2 of 5 for the majority: still below 0.6
    item.refresh_from_db()
    assert (item.status, item.reasons) == ("pending", ["low_agreement"])


@pytest.mark.django_db
def test_retiring_withdraws_the_comparison(project):
    reviewer = member(project, "rita", "manager")
    comparison = judged(project, ["a", "b", "tie"])
    item = ReviewItem.objects.create(comparison=comparison, project=project, queued_at="2026-12-01T00:00Z")
    review_decide(
        reviewer=reviewer,
        item_id=item.pk,
        submission_key="key-0001",
        action="retire",
        reason="Broken prompt.",
    )
    assert Comparison.objects.get(pk=comparison.pk).status == "retired"
    assert ReviewDecision.objects.get().reason == "Broken prompt."


@pytest.mark.django_db
def test_managers_pick_items_for_review_and_reviewers_cannot(project):
    manager = member(project, "mona", "manager")
    reviewer = member(project, "rita", "reviewer")
    comparison = judged(project, ["a", "a", "a"])
    with pytest.raises(ReviewForbidden):
        review_pick(
            manager=reviewer, comparison_id=comparison.pk, reason="Looks off.", submission_key="pick-0001"
        )
    item = review_pick(
        manager=manager, comparison_id=comparison.pk, reason="Looks off.", submission_key="pick-0001"
    )
    assert (item.status, item.reasons) == ("pending", ["picked"])
    review_decide(
        reviewer=reviewer,
        item_id=item.pk,
        submission_key="key-0001",
        action="decide",
        verdict={"choice": "a"},
    )
    # Picked again after a decision: waiting again, and the log keeps the decided state it replaced.
    again = review_pick(
        manager=manager, comparison_id=comparison.pk, reason="Second look.", submission_key="pick-0002"
    )
    assert again.status == "pending"
    assert list(ReviewDecision.objects.values_list("action", "previous_status")) == [
        ("pick", ""),
        ("decide", "pending"),
        ("pick", "decided"),
    ]


@pytest.mark.django_db(transaction=True)
def test_two_reviewers_racing_on_one_item_one_wins():
    project = ProjectFactory(slug="race-review", gold_rate=0)
    reviewers = [member(project, f"reviewer-{index}", "reviewer") for index in range(2)]
    item = ReviewItem.objects.create(
        comparison=judged(project, ["a", "b", "tie"]), project=project, queued_at="2026-12-01T00:00Z"
    )
    start = threading.Barrier(2)
    outcomes: list[str] = []
    lock = threading.Lock()

    def decide(reviewer, choice: str) -> None:
        try:
            start.wait()
            review_decide(
                reviewer=reviewer,
                item_id=item.pk,
                submission_key=f"race-{choice}-key",
                action="decide",
                verdict={"choice": choice},
            )
            outcome = "won"
        except ReviewConflict:
            outcome = "conflict"
        finally:
            connections.close_all()
        with lock:
            outcomes.append(outcome)

    threads = [
        threading.Thread(target=decide, args=(reviewer, choice))
        for reviewer, choice in zip(reviewers, "ab", strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["conflict", "won"]
    item.refresh_from_db()
    (decision,) = ReviewDecision.objects.all()
    assert (item.status, item.decided_by_id, item.verdict["choice"]) == (
        "decided",
        decision.reviewer_id,
        decision.verdict["choice"],
    )


def consensus_rows(**filters) -> list[dict]:
    from django.db import transaction

    from feedback.export.options import ExportOptions
    from feedback.export.writer import export_row_groups

    options = ExportOptions.from_mapping(
        {
            "format": "preference",
            "aggregation": "consensus",
            "columns": ["ids", "reviewed", "votes"],
            **filters,
        }
    )
    with transaction.atomic():
        return [row for _, rows in export_row_groups(options, high_water_mark=10**9) for row in rows]


@pytest.mark.django_db
def test_an_adjudicated_verdict_changes_the_consensus_row(project):
    reviewer = member(project, "rita", "reviewer")
    comparison = judged(project, ["a", "a", "b"])  # the vote: A
    first, second = comparison.entries.order_by("position").values_list("response_id", flat=True)
    (row,) = consensus_rows()
    assert (row["chosen_response_id"], row["reviewed"]) == (first, False)
    item = ReviewItem.objects.create(comparison=comparison, project=project, queued_at="2026-12-01T00:00Z")
    review_decide(
        reviewer=reviewer,
        item_id=item.pk,
        submission_key="key-0001",
        action="decide",
        verdict={"choice": "b"},
    )
    (row,) = consensus_rows()
    assert (row["chosen_response_id"], row["rejected_response_id"], row["reviewed"]) == (second, first, True)
    assert (row["votes_chosen"], row["votes_rejected"]) == (1, 2)  # the votes stay visible beside it
    (vote,) = consensus_rows(adjudicated_wins=False)
    assert (vote["chosen_response_id"], vote["reviewed"]) == (first, False)


@pytest.mark.django_db
def test_reviewed_only_keeps_decided_items_and_retired_ones_leave_every_export(project):
    reviewer = member(project, "rita", "reviewer")
    decided, retired, untouched = (judged(project, ["a", "a", "b"]) for _ in range(3))
    for comparison, action, extra in (
        (decided, "decide", {"verdict": {"choice": "a"}}),
        (retired, "retire", {"reason": "Broken."}),
    ):
        item = ReviewItem.objects.create(
            comparison=comparison, project=project, queued_at="2026-12-01T00:00Z"
        )
        review_decide(
            reviewer=reviewer,
            item_id=item.pk,
            submission_key=f"key-{comparison.pk:05d}",
            action=action,
            **extra,
        )
    assert sorted(row["comparison_id"] for row in consensus_rows()) == sorted([decided.pk, untouched.pk])
    assert [row["comparison_id"] for row in consensus_rows(reviewed_only=True)] == [decided.pk]


@pytest.mark.django_db
def test_deciding_a_disputed_gold_item_makes_the_decision_its_answer(project):
    from feedback.models import GoldVerdict
    from feedback.services.standing import gold_answers

    comparison = judged(project, ["b", "b", "b"])  # every annotator put the second response shown first
    Comparison.objects.filter(pk=comparison.pk).update(is_gold=True, required_judgments=None, status="open")
    first, second = comparison.entries.order_by("position").values_list("response_id", flat=True)
    GoldVerdict.objects.create(
        comparison=comparison, verdict={"accepted": [str(first)]}, explanation="Was A."
    )
    assert [answer.correct for answer in gold_answers(project_id=project.pk)] == [False] * 3
    project_quality_refresh(project_id=project.pk)
    item = ReviewItem.objects.get(comparison=comparison)
    assert item.reasons == ["gold_disputed"]
    reviewer = member(project, "gold-reviewer", "reviewer")
    review_decide(
        reviewer=reviewer,
        item_id=item.pk,
        submission_key="gold-decide-1",
        action="decide",
        verdict={"choice": "b"},
        reason="B is right: A misreads the question.",
    )
    gold = GoldVerdict.objects.get(comparison=comparison)
    assert (gold.verdict, gold.explanation) == (
        {"accepted": [str(second)]},
        "B is right: A misreads the question.",
    )
    assert [answer.correct for answer in gold_answers(project_id=project.pk)] == [True] * 3


@pytest.mark.django_db
def test_a_refresh_adds_reasons_to_waiting_items_only_and_low_agreement_only_once_complete(project):
    from feedback.services.review import review_queue_refresh

    def item(comparison, reasons, status="pending"):
        return ReviewItem.objects.create(
            comparison=comparison,
            project=project,
            reasons=reasons,
            status=status,
            queued_at="2026-12-01T00:00Z",
            verdict={"choice": "a", "ranking": [1, 2], "strength": None} if status == "decided" else None,
        )

    complete = item(judged(project, ["a", "b", "tie"]), ["flagged"])
    still_open = item(judged(project, ["a", "b"], status="open"), ["flagged"])
    decided = item(judged(project, ["a", "b", "b"]), ["low_agreement"], status="decided")
    open_new = judged(project, ["a", "b"], status="open")
    flagged_new = judged(project, ["a", "b"], status="open")
    queued = review_queue_refresh(
        project=project,
        low_agreement=[complete.comparison_id, still_open.comparison_id, open_new.pk, flagged_new.pk],
        flagged=[decided.comparison_id, flagged_new.pk],
    )
    assert queued == 1  # only the new flagged one
    reasons = dict(ReviewItem.objects.values_list("comparison_id", "reasons"))
    assert reasons == {
        complete.comparison_id: ["flagged", "low_agreement"],
        still_open.comparison_id: ["flagged"],  # more judgments may settle it
        decided.comparison_id: ["low_agreement"],  # its reviewer had the last word
        flagged_new.pk: ["flagged"],
    }
    assert ReviewItem.objects.get(comparison=decided.comparison).status == "decided"
    assert review_queue_refresh(project=project, low_agreement=[complete.comparison_id]) == 0  # idempotent
