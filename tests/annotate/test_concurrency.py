"""50 annotators at once against one pool, with real PostgreSQL transactions in 50 threads."""

import random
import threading
import uuid
from collections import Counter

import pytest
from django.db import connection, connections, transaction

from annotate.assignment import comparison_lease_next, judgment_submit
from annotate.submission import JudgmentSubmission
from feedback.models import Assignment, Comparison, Judgment
from tests.annotate.conftest import comparisons_bulk_create
from tests.factories import AnnotatorFactory, ProjectFactory

ANNOTATORS = 50
COMPARISONS = 2_000
OVERLAP = 3


@pytest.mark.django_db(transaction=True)
def test_fifty_annotators_never_over_assign_and_finish_the_pool():
    project = ProjectFactory(judgments_per_comparison=OVERLAP, slug="race")
    annotators = [AnnotatorFactory(username=f"racer-{index:02d}") for index in range(ANNOTATORS)]
    project.members.add(*annotators)
    comparisons_bulk_create(project, COMPARISONS)

    accepted: list[tuple[int, int, str]] = []  # (annotator, judgment, key) of every first submission
    replays: list[tuple[int, int]] = []  # (judgment returned by a replay, judgment first stored)
    failures: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(ANNOTATORS)

    def work(annotator, seed: int) -> None:
        rng = random.Random(seed)
        try:
            start.wait()
            while (lease := comparison_lease_next(annotator=annotator, project=project)) is not None:
                submission_key = uuid.uuid4().hex
                choice = rng.choice(["a", "b", "tie", "both_bad"])
                submission = JudgmentSubmission(
                    choice=choice, strength=rng.randint(1, 3) if choice in "ab" else None
                )
                result = judgment_submit(
                    annotator=annotator,
                    assignment_id=lease.pk,
                    submission_key=submission_key,
                    submission=submission,
                )
                assert not result.replayed
                with lock:
                    accepted.append((annotator.pk, result.judgment.pk, submission_key))
                if rng.random() < 0.1:  # a client that did not hear the answer sends it again
                    again = judgment_submit(
                        annotator=annotator,
                        assignment_id=lease.pk,
                        submission_key=submission_key,
                        submission=submission,
                    )
                    assert again.replayed
                    with lock:
                        replays.append((again.judgment.pk, result.judgment.pk))
        except BaseException as error:
            with lock:
                failures.append(error)
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=work, args=(annotator, index)) for index, annotator in enumerate(annotators)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert not any(thread.is_alive() for thread in threads)
    assert failures == []

    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT count(*) FROM (
                SELECT c.id FROM feedback_comparison c LEFT JOIN feedback_judgment j ON j.comparison_id = c.id
                WHERE c.project_id = %s GROUP BY c.id HAVING count(j.id) > c.required_judgments
            ) over_judged
            """,
            [project.pk],
        )
        assert cursor.fetchone() == (0,)
        cursor.execute(
            "SELECT count(*) FROM (SELECT 1 FROM feedback_judgment GROUP BY comparison_id, annotator_id HAVING count(*) > 1) twice"
        )
        assert cursor.fetchone() == (0,)

    judgments_per_comparison = Counter(Judgment.objects.values_list("comparison_id", flat=True))
    assert len(judgments_per_comparison) == COMPARISONS
    assert set(judgments_per_comparison.values()) == {OVERLAP}
    assert set(Comparison.objects.values_list("status", "judgment_count", "lease_count")) == {
        ("completed", OVERLAP, 0)
    }
    # Every accepted submission is stored exactly once, under its own key; replays returned the first row.
    stored = set(Judgment.objects.values_list("annotator_id", "pk", "submission_key"))
    assert len(accepted) == COMPARISONS * OVERLAP == len(stored)
    assert set(accepted) == stored
    assert all(returned == first for returned, first in replays)
    assert replays  # the replay path really ran
    assert set(Assignment.objects.values_list("state", flat=True)) == {"submitted"}


GOLD_ITEMS = 40
GOLD_RATE = 0.1


@pytest.mark.django_db(transaction=True)
def test_gold_under_fifty_annotators_is_never_served_twice_nor_over_the_rate():
    import io
    import json

    from feedback.services.gold import gold_import

    project = ProjectFactory(judgments_per_comparison=OVERLAP, slug="gold-race", gold_rate=GOLD_RATE)
    annotators = [AnnotatorFactory(username=f"gold-racer-{index:02d}") for index in range(ANNOTATORS)]
    project.members.add(*annotators)
    comparisons_bulk_create(project, 600)
    lines = [
        {
            "id": f"g{number}",
            "prompt": f"Gold {number}?",
            "responses": [f"right {number}", f"wrong {number}"],
            "expected": "A",
        }
        for number in range(GOLD_ITEMS)
    ]
    gold_import(project=project, source=io.BytesIO("\n".join(map(json.dumps, lines)).encode()))
    gold_ids = set(Comparison.objects.filter(project=project, is_gold=True).values_list("pk", flat=True))
    failures: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(ANNOTATORS)

    def work(annotator) -> None:
        try:
            start.wait()
            while (lease := comparison_lease_next(annotator=annotator, project=project)) is not None:
                judgment_submit(
                    annotator=annotator,
                    assignment_id=lease.pk,
                    submission_key=uuid.uuid4().hex,
                    submission=JudgmentSubmission(choice="a", strength=1),
                )
        except BaseException as error:
            with lock:
                failures.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(annotator,)) for annotator in annotators]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert not any(thread.is_alive() for thread in threads)
    assert failures == []

    served: dict[int, list[int]] = {}
    for annotator_id, comparison_id in Assignment.objects.filter(comparison__project=project).values_list(
        "annotator_id", "comparison_id"
    ):
        served.setdefault(annotator_id, []).append(comparison_id)
    gold_total = 0
    for annotator in annotators:
        mine = served[annotator.pk]
        gold = [pk for pk in mine if pk in gold_ids]
        assert len(gold) == len(set(gold)), annotator.username  # never twice
        assert len(gold) <= GOLD_RATE * len(mine) + 1, annotator.username  # never over the rate
        gold_total += len(gold)
    # The ordinary pool is finished exactly as without gold, and gold stayed open with honest counters.
    ordinary = Comparison.objects.filter(project=project, is_gold=False)
    assert set(ordinary.values_list("status", "judgment_count", "lease_count")) == {("completed", OVERLAP, 0)}
    gold_rows = Comparison.objects.filter(pk__in=gold_ids)
    assert set(gold_rows.values_list("status", "lease_count")) == {("open", 0)}
    assert sum(gold_rows.values_list("judgment_count", flat=True)) == gold_total
    assert gold_total >= GOLD_RATE * 600 * OVERLAP * 0.8  # gold really flowed


@pytest.mark.django_db(transaction=True)
def test_a_claim_waits_for_the_last_open_comparison_when_another_transaction_holds_it():
    """A row locked by a submission in flight is not a row without room: the claim that finds every
    candidate locked waits for the holder, then takes the place, instead of telling the annotator that
    nothing is left (which, at the end of a pool, sent every annotator home with a comparison unfinished)."""
    project = ProjectFactory(judgments_per_comparison=OVERLAP, slug="last-one")
    holder, claimer = AnnotatorFactory(username="holder"), AnnotatorFactory(username="claimer")
    project.members.add(holder, claimer)
    comparisons_bulk_create(project, 1)
    last = Comparison.objects.get(project=project)
    locked, release = threading.Event(), threading.Event()
    leases: list[Assignment | None] = []
    failures: list[BaseException] = []

    def hold() -> None:  # what judgment_submit does to the row: lock it until its transaction commits
        try:
            with transaction.atomic():
                Comparison.objects.select_for_update().get(pk=last.pk)
                locked.set()
                release.wait(timeout=30)
        except BaseException as error:
            failures.append(error)
        finally:
            connections.close_all()

    def claim() -> None:
        try:
            leases.append(comparison_lease_next(annotator=claimer, project=project))
        except BaseException as error:
            failures.append(error)
        finally:
            connections.close_all()

    holding = threading.Thread(target=hold)
    holding.start()
    assert locked.wait(timeout=30)
    claiming = threading.Thread(target=claim)
    claiming.start()
    claiming.join(timeout=1)
    assert claiming.is_alive()  # waiting on the lock, not answering "nothing left"
    release.set()
    holding.join(timeout=30)
    claiming.join(timeout=30)
    assert failures == []
    assert len(leases) == 1
    lease = leases[0]
    assert isinstance(lease, Assignment)
    assert lease.comparison_id == last.pk


@pytest.mark.django_db(transaction=True)
def test_two_tabs_submitting_the_same_draft_at_once_store_one_answer():
    """Two tabs of one writer send the same answer with their own keys at the same instant (a barrier
    releases both transactions together), ten times over: each time one answer is stored, and both tabs
    are answered with it."""
    from annotate.writing import answer_submit
    from feedback.models import Project, Prompt, Response
    from feedback.services.answers import writing_tasks_open

    project = ProjectFactory(
        slug="two-tabs", comparison_mode=Project.ComparisonMode.DEMONSTRATION, judgments_per_comparison=1
    )
    writer = AnnotatorFactory(username="two-tabs-writer")
    project.members.add(writer)
    for index in range(10):
        Prompt.objects.create(
            project=project,
            external_id=f"tab-{index}",
            conversation=[{"role": "user", "content": f"Question {index}?"}],
            content_hash=f"{index:064d}",
        )
    assert writing_tasks_open(project=project) == 10
    for round_number in range(10):
        lease = comparison_lease_next(annotator=writer, project=project)
        text = f"The same draft, round {round_number}."
        barrier = threading.Barrier(2)
        results, failures = [], []

        def tab(
            key: str,
            lease_id: int = lease.pk,
            text: str = text,
            barrier: threading.Barrier = barrier,
            results: list = results,
            failures: list = failures,
        ) -> None:
            try:
                barrier.wait(timeout=10)
                results.append(
                    answer_submit(annotator=writer, assignment_id=lease_id, submission_key=key, text=text)
                )
            except BaseException as error:
                failures.append(error)
            finally:
                connections.close_all()

        tabs = [threading.Thread(target=tab, args=(f"tab-{round_number}-{side}",)) for side in ("one", "two")]
        for thread in tabs:
            thread.start()
        for thread in tabs:
            thread.join(timeout=30)
        assert failures == []
        assert sorted(result.replayed for result in results) == [False, True]
        assert len({result.answer.pk for result in results}) == 1
    assert Response.objects.filter(source="human").count() == 10
    assert Comparison.objects.filter(project=project, status="completed").count() == 10
