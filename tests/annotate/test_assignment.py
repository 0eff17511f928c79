"""The assignment engine on PostgreSQL: leases, overlap, expiry, submissions, replays, skips."""

import json
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from annotate.assignment import (
    SubmissionConflict,
    SubmissionKeyReused,
    assignment_skip,
    claim_candidates,
    comparison_lease_next,
    judgment_submit,
    leases_expire,
)
from annotate.selectors import AssignmentNotFound
from annotate.submission import JudgmentSubmission, SubmissionInvalid, submission_parse
from feedback.models import Assignment, Comparison, Judgment
from tests.annotate.conftest import comparisons_bulk_create
from tests.factories import ComparisonFactory, ProjectFactory

pytestmark = pytest.mark.django_db

PREFER_A = JudgmentSubmission(choice="a", strength=2)


def key(n: int) -> str:
    return f"submission-{n:04d}"


def rows() -> tuple:
    """Everything the engine writes, to show that a refused call changed nothing."""
    return (
        list(Comparison.objects.order_by("pk").values_list("pk", "judgment_count", "lease_count", "status")),
        list(Assignment.objects.order_by("pk").values_list("pk", "annotator", "state", "expires_at")),
        list(Judgment.objects.order_by("pk").values_list("pk", "annotator", "choice", "submission_key")),
    )


def test_a_lease_is_returned_again_until_it_is_finished(annotator, project):
    comparisons_bulk_create(project, 3)
    first = comparison_lease_next(annotator=annotator, project=project)
    assert comparison_lease_next(annotator=annotator, project=project).pk == first.pk
    assert Assignment.objects.count() == 1
    assert Comparison.objects.get(pk=first.comparison_id).lease_count == 1
    judgment_submit(annotator=annotator, assignment_id=first.pk, submission_key=key(1), submission=PREFER_A)
    second = comparison_lease_next(annotator=annotator, project=project)
    assert second.comparison_id != first.comparison_id


def test_comparisons_closest_to_completion_come_first_then_the_oldest(annotator, project, colleagues):
    oldest, _middle, newest = comparisons_bulk_create(project, 3)
    # `newest` misses one judgment, the others two: it comes first; then the oldest of the rest.
    lease = comparison_lease_next(annotator=colleagues[0], project=project)
    assert lease.comparison_id == oldest.pk
    judgment_submit(
        annotator=colleagues[0], assignment_id=lease.pk, submission_key=key(1), submission=PREFER_A
    )
    Comparison.objects.filter(pk=oldest.pk).update(required_judgments=3)
    Comparison.objects.filter(pk=newest.pk).update(judgment_count=1)
    assert comparison_lease_next(annotator=annotator, project=project).comparison_id == newest.pk
    assert comparison_lease_next(annotator=colleagues[1], project=project).comparison_id == oldest.pk
    assert comparison_lease_next(annotator=colleagues[2], project=project).comparison_id == oldest.pk


def test_never_more_holders_than_the_overlap_and_never_twice_to_one_annotator(annotator, project, colleagues):
    only, other = comparisons_bulk_create(project, 2)
    holders = [
        comparison_lease_next(annotator=person, project=project) for person in [annotator, *colleagues]
    ]
    assert [lease.comparison_id for lease in holders] == [only.pk, only.pk, other.pk, other.pk]
    for number, lease in enumerate(holders):
        judgment_submit(
            annotator=lease.annotator, assignment_id=lease.pk, submission_key=key(number), submission=PREFER_A
        )
    assert list(Comparison.objects.order_by("pk").values_list("judgment_count", "lease_count", "status")) == [
        (2, 0, "completed"),
        (2, 0, "completed"),
    ]
    assert comparison_lease_next(annotator=annotator, project=project) is None
    assert Comparison.objects.get(pk=only.pk).completed_at is not None


def test_a_judged_or_skipped_comparison_never_returns_to_the_annotator(annotator, project):
    _judged, skipped, fresh = comparisons_bulk_create(project, 3)
    lease = comparison_lease_next(annotator=annotator, project=project)
    judgment_submit(annotator=annotator, assignment_id=lease.pk, submission_key=key(1), submission=PREFER_A)
    lease = comparison_lease_next(annotator=annotator, project=project)
    assert lease.comparison_id == skipped.pk
    assignment_skip(annotator=annotator, assignment_id=lease.pk, reason="I cannot judge code.")
    assert comparison_lease_next(annotator=annotator, project=project).comparison_id == fresh.pk
    assert Comparison.objects.get(pk=skipped.pk).lease_count == 0
    assert Assignment.objects.get(comparison=skipped).skip_reason == "I cannot judge code."


def test_a_skipped_place_goes_to_someone_else(annotator, project, colleagues):
    (only,) = comparisons_bulk_create(project, 1)
    mine = comparison_lease_next(annotator=annotator, project=project)
    comparison_lease_next(annotator=colleagues[0], project=project)
    assert comparison_lease_next(annotator=colleagues[1], project=project) is None
    assignment_skip(annotator=annotator, assignment_id=mine.pk, reason="Off my expertise")
    assert comparison_lease_next(annotator=colleagues[1], project=project).comparison_id == only.pk
    # Skipping twice changes nothing; skipping a judged comparison is refused.
    before = rows()
    assert (
        assignment_skip(annotator=annotator, assignment_id=mine.pk, reason="again").skip_reason
        == "Off my expertise"
    )
    assert rows() == before
    with pytest.raises(SubmissionConflict, match="You skipped this comparison"):
        judgment_submit(
            annotator=annotator, assignment_id=mine.pk, submission_key=key(1), submission=PREFER_A
        )
    assert rows() == before


@pytest.mark.parametrize("reason", ["", "   ", "x" * 501, "nul\x00byte", None])
def test_a_skip_needs_a_clean_reason(annotator, project, reason):
    comparisons_bulk_create(project, 1)
    lease = comparison_lease_next(annotator=annotator, project=project)
    before = rows()
    with pytest.raises(SubmissionInvalid) as raised:
        assignment_skip(annotator=annotator, assignment_id=lease.pk, reason=reason)
    assert list(raised.value.errors) == ["reason"]
    assert rows() == before


def test_an_expired_lease_returns_its_place_to_the_pool(annotator, project, colleagues):
    (only,) = comparisons_bulk_create(project, 1)
    now = timezone.now()
    stale = comparison_lease_next(annotator=annotator, project=project, now=now)
    comparison_lease_next(annotator=colleagues[0], project=project, now=now)
    assert comparison_lease_next(annotator=colleagues[1], project=project, now=now) is None

    later = now + project.lease_duration + timedelta(seconds=1)
    takers = [
        comparison_lease_next(annotator=person, project=project, now=later) for person in colleagues[1:]
    ]
    assert [lease.comparison_id for lease in takers] == [only.pk, only.pk]
    stale.refresh_from_db()
    assert (stale.state, stale.finished_at) == ("expired", later)
    # Both places are held again, so the late judgment cannot count.
    before = rows()
    with pytest.raises(SubmissionConflict, match="expired and its place went to another annotator"):
        judgment_submit(
            annotator=annotator, assignment_id=stale.pk, submission_key=key(1), submission=PREFER_A, now=later
        )
    assert rows() == before


def test_a_late_judgment_counts_while_its_place_is_still_free(annotator, project):
    comparisons_bulk_create(project, 1)
    now = timezone.now()
    lease = comparison_lease_next(annotator=annotator, project=project, now=now)
    later = now + project.lease_duration * 2
    assert leases_expire(now=later) == 1
    result = judgment_submit(
        annotator=annotator, assignment_id=lease.pk, submission_key=key(1), submission=PREFER_A, now=later
    )
    assert not result.replayed
    lease.refresh_from_db()
    assert lease.state == "submitted"
    assert Comparison.objects.values_list("judgment_count", "lease_count").get() == (1, 0)


def test_an_overdue_lease_no_sweep_has_returned_still_holds_its_place(annotator, project):
    comparisons_bulk_create(project, 1)
    now = timezone.now()
    lease = comparison_lease_next(annotator=annotator, project=project, now=now)
    judgment_submit(
        annotator=annotator,
        assignment_id=lease.pk,
        submission_key=key(1),
        submission=PREFER_A,
        now=now + project.lease_duration * 3,
    )
    assert Comparison.objects.values_list("judgment_count", "lease_count").get() == (1, 0)


def test_an_annotator_takes_up_their_expired_lease_again_when_it_is_still_free(annotator, project):
    (only,) = comparisons_bulk_create(project, 1)
    now = timezone.now()
    first = comparison_lease_next(annotator=annotator, project=project, now=now)
    later = now + project.lease_duration + timedelta(minutes=1)
    again = comparison_lease_next(annotator=annotator, project=project, now=later)
    assert (again.pk, again.comparison_id, again.state, again.leased_at) == (
        first.pk,
        only.pk,
        "leased",
        later,
    )
    assert Comparison.objects.get().lease_count == 1


def test_the_sweep_is_bounded_and_counts_places_per_comparison(project, colleagues, annotator):
    comparisons_bulk_create(project, 2)
    now = timezone.now()
    for person in [annotator, *colleagues]:
        comparison_lease_next(annotator=person, project=project, now=now)
    assert leases_expire(now=now) == 0
    later = now + project.lease_duration
    assert leases_expire(now=later, limit=3) == 3
    assert leases_expire(now=later, limit=3) == 1
    assert list(Comparison.objects.values_list("lease_count", flat=True)) == [0, 0]


def test_submissions_are_idempotent_by_key(annotator, project):
    comparisons_bulk_create(project, 2)
    lease = comparison_lease_next(annotator=annotator, project=project)
    body = JudgmentSubmission(choice="b", strength=3, ratings={"A": {"helpfulness": 2}}, flags=("off_topic",))
    first = judgment_submit(
        annotator=annotator, assignment_id=lease.pk, submission_key=key(1), submission=body
    )
    before = rows()
    replay = judgment_submit(
        annotator=annotator, assignment_id=lease.pk, submission_key=key(1), submission=body
    )
    assert (replay.replayed, replay.judgment.pk) == (True, first.judgment.pk)
    assert rows() == before
    with pytest.raises(SubmissionKeyReused, match="already used for a different judgment"):
        judgment_submit(
            annotator=annotator,
            assignment_id=lease.pk,
            submission_key=key(1),
            submission=JudgmentSubmission(choice="a", strength=1),
        )
    # The key belongs to the first comparison: using it for the next one is a different judgment too.
    # The unique key refuses it at the insert, after the counters moved: all of it is rolled back.
    nxt = comparison_lease_next(annotator=annotator, project=project)
    leased = rows()
    with pytest.raises(SubmissionKeyReused):
        judgment_submit(annotator=annotator, assignment_id=nxt.pk, submission_key=key(1), submission=body)
    assert rows() == leased
    # A new key for the already judged comparison is a second judgment, which is refused.
    with pytest.raises(SubmissionConflict, match="already judged"):
        judgment_submit(annotator=annotator, assignment_id=lease.pk, submission_key=key(2), submission=body)
    assert rows()[2] == before[2]


def test_the_stored_judgment_names_responses_by_id_and_ranks_every_position(annotator, project):
    (comparison,) = comparisons_bulk_create(project, 1)
    lease = comparison_lease_next(annotator=annotator, project=project)
    judgment_submit(
        annotator=annotator,
        assignment_id=lease.pk,
        submission_key=key(1),
        submission=JudgmentSubmission(
            choice="b",
            strength=1,
            ratings={"A": {"tone": 2, "helpfulness": 4}, "B": {"safety": 5}},
            rationale="B answers the question.",
            flags=("unsafe", "broken"),
            time_spent_ms=12_345,
        ),
    )
    a, b = comparison.entries.order_by("position").values_list("response_id", flat=True)
    judgment = Judgment.objects.get()
    assert (judgment.choice, judgment.ranking, judgment.strength) == ("b", [2, 1], 1)
    assert judgment.ratings == {str(a): {"helpfulness": 4, "tone": 2}, str(b): {"safety": 5}}
    assert (judgment.rationale, judgment.flags, judgment.time_spent_ms) == (
        "B answers the question.",
        ["broken", "unsafe"],
        12_345,
    )
    assert (judgment.assignment_id, judgment.comparison_id) == (lease.pk, comparison.pk)


PAIRWISE_REFUSALS = [
    (JudgmentSubmission(), "choice", "Choose A, B, tie or both bad."),
    (JudgmentSubmission(choice="a"), "strength", "Say how much better: 1 to 3."),
    (JudgmentSubmission(choice="a", strength=4), "strength", "Strength runs from 1 to 3."),
    (
        JudgmentSubmission(choice="tie", strength=1),
        "strength",
        "Strength goes with a preference (A or B), not with a tie or both bad.",
    ),
    (
        JudgmentSubmission(choice="a", strength=1, ranking=(1, 2)),
        "ranking",
        "A pairwise comparison takes a choice, not a ranking.",
    ),
    (
        JudgmentSubmission(choice="a", strength=1, ratings={"C": {"tone": 3}}),
        "ratings",
        "There is no response 'C' here (shown: A, B).",
    ),
    (
        JudgmentSubmission(choice="a", strength=1, ratings={"A": {"humour": 3}}),
        "ratings",
        "A: 'humour' is not on this project's rubric.",
    ),
    (
        JudgmentSubmission(choice="a", strength=1, ratings={"B": {"tone": 6}}),
        "ratings",
        "B: tone runs from 1 to 5.",
    ),
]


@pytest.mark.parametrize(("submission", "field", "message"), PAIRWISE_REFUSALS)
def test_a_pairwise_judgment_breaking_the_project_rules_is_refused(
    annotator, project, submission, field, message
):
    comparisons_bulk_create(project, 1)
    lease = comparison_lease_next(annotator=annotator, project=project)
    before = rows()
    with pytest.raises(SubmissionInvalid) as raised:
        judgment_submit(
            annotator=annotator, assignment_id=lease.pk, submission_key=key(1), submission=submission
        )
    assert raised.value.errors == {field: [message]}
    assert rows() == before


def test_ties_and_strength_follow_the_project_settings(annotator):
    project = ProjectFactory(allows_tie=False, strength_labels=[])
    project.members.add(annotator)
    comparisons_bulk_create(project, 2)
    lease = comparison_lease_next(annotator=annotator, project=project)
    with pytest.raises(SubmissionInvalid) as raised:
        judgment_submit(
            annotator=annotator,
            assignment_id=lease.pk,
            submission_key=key(1),
            submission=JudgmentSubmission(choice="tie"),
        )
    assert raised.value.errors == {"choice": ["This project does not allow ties."]}
    with pytest.raises(SubmissionInvalid) as raised:
        judgment_submit(
            annotator=annotator, assignment_id=lease.pk, submission_key=key(1), submission=PREFER_A
        )
    assert raised.value.errors == {"strength": ["This project asks no strength."]}
    result = judgment_submit(
        annotator=annotator,
        assignment_id=lease.pk,
        submission_key=key(1),
        submission=JudgmentSubmission(choice="both_bad"),
    )
    assert (result.judgment.choice, result.judgment.ranking, result.judgment.strength) == (
        "both_bad",
        [1, 1],
        None,
    )


@pytest.fixture
def ranking_project(annotator):
    project = ProjectFactory(
        comparison_mode="ranking", responses_per_comparison=4, judgments_per_comparison=1
    )
    project.members.add(annotator)
    comparisons_bulk_create(project, 1, responses_each=4)
    return project


@pytest.mark.parametrize(
    ("ranking", "allows_tie", "message"),
    [
        ((1, 2, 3), True, "Rank all 4 shown responses (got 3 ranks)."),
        ((1, 2, 3, 5), True, "Ranks run from 1 (best) to 4."),
        ((1, 1, 2, 3), False, "This project does not allow ties: give each response its own rank."),
        (
            (1, 1, 3, 4),
            True,
            "Ranks must be consecutive from 1 (tied responses share a rank, the next rank follows on).",
        ),
        (
            (2, 3, 4, 2),
            True,
            "Ranks must be consecutive from 1 (tied responses share a rank, the next rank follows on).",
        ),
    ],
)
def test_a_ranking_must_rank_every_shown_response(annotator, ranking_project, ranking, allows_tie, message):
    ranking_project.allows_tie = allows_tie
    ranking_project.save()
    lease = comparison_lease_next(annotator=annotator, project=ranking_project)
    before = rows()
    with pytest.raises(SubmissionInvalid) as raised:
        judgment_submit(
            annotator=annotator,
            assignment_id=lease.pk,
            submission_key=key(1),
            submission=JudgmentSubmission(ranking=ranking),
        )
    assert raised.value.errors == {"ranking": [message]}
    assert rows() == before


@pytest.mark.parametrize("ranking", [(3, 1, 4, 2), (1, 1, 2, 2), (2, 1, 1, 1)])
def test_a_full_ranking_is_stored_as_given(annotator, ranking_project, ranking):
    lease = comparison_lease_next(annotator=annotator, project=ranking_project)
    result = judgment_submit(
        annotator=annotator,
        assignment_id=lease.pk,
        submission_key=key(1),
        submission=JudgmentSubmission(ranking=ranking),
    )
    assert (result.judgment.choice, result.judgment.ranking) == ("ranked", list(ranking))
    assert Comparison.objects.get().status == "completed"


def test_a_ranking_comparison_takes_no_choice(annotator, ranking_project):
    lease = comparison_lease_next(annotator=annotator, project=ranking_project)
    with pytest.raises(SubmissionInvalid) as raised:
        judgment_submit(
            annotator=annotator,
            assignment_id=lease.pk,
            submission_key=key(1),
            submission=JudgmentSubmission(choice="a", strength=1),
        )
    assert raised.value.errors == {
        "choice": ["A ranking comparison takes a ranking, not a choice."],
        "strength": ["A ranking comparison takes no strength."],
        "ranking": ["Rank all 4 responses."],
    }


def test_nobody_reaches_another_annotators_assignment(annotator, project, colleagues):
    comparisons_bulk_create(project, 1)
    theirs = comparison_lease_next(annotator=colleagues[0], project=project)
    before = rows()
    with pytest.raises(AssignmentNotFound):
        judgment_submit(
            annotator=annotator, assignment_id=theirs.pk, submission_key=key(1), submission=PREFER_A
        )
    with pytest.raises(AssignmentNotFound):
        assignment_skip(annotator=annotator, assignment_id=theirs.pk, reason="not mine")
    with pytest.raises(AssignmentNotFound):
        judgment_submit(
            annotator=annotator, assignment_id=theirs.pk + 1000, submission_key=key(1), submission=PREFER_A
        )
    assert rows() == before


def test_an_annotator_removed_from_the_project_can_no_longer_submit(annotator, project):
    comparisons_bulk_create(project, 1)
    lease = comparison_lease_next(annotator=annotator, project=project)
    project.members.remove(annotator)
    before = rows()
    with pytest.raises(AssignmentNotFound):
        judgment_submit(
            annotator=annotator, assignment_id=lease.pk, submission_key=key(1), submission=PREFER_A
        )
    assert rows() == before


def test_a_withdrawn_comparison_takes_no_judgment(annotator, project):
    comparisons_bulk_create(project, 1)
    lease = comparison_lease_next(annotator=annotator, project=project)
    Comparison.objects.update(status="retired")
    with pytest.raises(SubmissionConflict, match="withdrawn"):
        judgment_submit(
            annotator=annotator, assignment_id=lease.pk, submission_key=key(1), submission=PREFER_A
        )
    assert not Judgment.objects.exists()


def test_projects_are_independent_pools(annotator, project):
    other = ProjectFactory()
    other.members.add(annotator)
    (here,) = comparisons_bulk_create(project, 1)
    (there,) = comparisons_bulk_create(other, 1)
    assert comparison_lease_next(annotator=annotator, project=project).comparison_id == here.pk
    assert comparison_lease_next(annotator=annotator, project=other).comparison_id == there.pk
    assert comparison_lease_next(annotator=annotator, project=project).comparison_id == here.pk


def test_an_empty_pool_gives_nothing(annotator, project):
    ComparisonFactory(prompt__project=project, status="completed", judgment_count=3)
    assert comparison_lease_next(annotator=annotator, project=project) is None
    assert not Assignment.objects.exists()


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ([], {"non_field_errors": ["The body must be a JSON object."]}),
        (
            {"submission_key": "short", "choice": "a"},
            {
                "submission_key": [
                    "A submission key is 8 to 64 characters: letters, digits, '.', '_', ':' or '-'."
                ]
            },
        ),
        ({"submission_key": key(1), "choice": "c"}, {"choice": ["Must be one of: a, b, tie, both_bad."]}),
        (
            {"submission_key": key(1), "ranking": [1, "2"]},
            {"ranking": ["Must be a list of 2 to 8 integer ranks, one per shown response."]},
        ),
        (
            {"submission_key": key(1), "choice": "a", "strength": True},
            {"strength": ["Must be an integer or null."]},
        ),
        (
            {"submission_key": key(1), "choice": "a", "rationale": "a\x00b"},
            {"rationale": ["Must not contain NUL bytes."]},
        ),
        (
            {"submission_key": key(1), "choice": "a", "rationale": "x" * 5001},
            {"rationale": ["At most 5000 characters (got 5001)."]},
        ),
        (
            {"submission_key": key(1), "choice": "a", "flags": ["spam"]},
            {"flags": ["Unknown flags ['spam']; allowed: broken, off_topic, personal_data, unsafe."]},
        ),
        (
            {"submission_key": key(1), "choice": "a", "flags": ["unsafe", "unsafe"]},
            {"flags": ["A flag is given twice."]},
        ),
        (
            {"submission_key": key(1), "choice": "a", "ratings": {"A": {"tone": 2.5}}},
            {"ratings": ['Must map a response label to {"<axis key>": integer score}.']},
        ),
        (
            {"submission_key": key(1), "choice": "a", "time_spent_ms": -1},
            {"time_spent_ms": ["Must be an integer number of milliseconds from 0 to 86400000."]},
        ),
        (
            {"submission_key": key(1), "choice": "a", "annotator": 7},
            {"non_field_errors": ["Unknown fields: annotator."]},
        ),
    ],
)
def test_malformed_bodies_are_refused_field_by_field(body, errors):
    with pytest.raises(SubmissionInvalid) as raised:
        submission_parse(body)
    assert raised.value.errors == errors


def test_a_well_formed_body_parses():
    body = {
        "submission_key": key(1),
        "choice": "a",
        "strength": 2,
        "ratings": {"A": {"tone": 3}},
        "rationale": "ok",
        "flags": ["broken"],
        "time_spent_ms": 5,
    }
    assert submission_parse(json.loads(json.dumps(body))) == (
        key(1),
        JudgmentSubmission(
            choice="a",
            strength=2,
            ratings={"A": {"tone": 3}},
            rationale="ok",
            flags=("broken",),
            time_spent_ms=5,
        ),
    )


def test_the_claim_reads_the_partial_index_without_sorting_the_project(annotator):
    project = ProjectFactory(slug="big")
    comparisons_bulk_create(project, 5_000)
    Comparison.objects.filter(pk__in=Comparison.objects.order_by("pk").values("pk")[:2_000]).update(
        status="completed", judgment_count=3
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE feedback_comparison; ANALYZE feedback_assignment")
    query = claim_candidates(annotator_id=annotator.pk, project_id=project.pk).values_list("pk", flat=True)[
        :1
    ]
    plan = json.dumps(json.loads(query.explain(format="json")))
    assert "comparison_next_open_idx" in plan
    assert '"Node Type": "Sort"' not in plan


def test_the_periodic_task_expires_every_overdue_lease_in_batches(project, colleagues, annotator):
    from annotate import tasks

    comparisons_bulk_create(project, 2)
    past = timezone.now() - project.lease_duration * 2
    for person in [annotator, *colleagues]:
        comparison_lease_next(annotator=person, project=project, now=past)
    assert tasks.expire_leases.apply(kwargs={"batch": 3}).get() == 4
    assert set(Assignment.objects.values_list("state", flat=True)) == {"expired"}
    assert list(Comparison.objects.values_list("lease_count", flat=True)) == [0, 0]
