"""Drafts saved as the annotator types: stored per assignment, a late save of an older revision changes
nothing, saving extends the lease so that a writing annotator keeps their place (an expiry sweep and
another annotator's claim leave it alone), a lapsed or finished lease refuses the save, and the endpoint
answers in JSON with field messages."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from annotate.assignment import SubmissionConflict, comparison_lease_next, judgment_submit, leases_expire
from annotate.drafts import draft_get, draft_save
from annotate.selectors import AssignmentNotFound
from annotate.submission import JudgmentSubmission
from feedback.models import AnswerDraft, Assignment
from tests.annotate.conftest import comparisons_bulk_create
from tests.conftest import logged_in_client

pytestmark = pytest.mark.django_db


def test_a_draft_is_kept_per_assignment_and_a_late_older_save_changes_nothing(annotator, project):
    comparisons_bulk_create(project, 1)
    assignment = comparison_lease_next(annotator=annotator, project=project)
    assert draft_get(annotator=annotator, assignment_id=assignment.pk) is None
    draft_save(annotator=annotator, assignment_id=assignment.pk, text="The answer is", revision=1)
    draft_save(annotator=annotator, assignment_id=assignment.pk, text="The answer is 42.", revision=3)
    draft_save(
        annotator=annotator, assignment_id=assignment.pk, text="The answer", revision=2
    )  # arrived late
    draft = draft_get(annotator=annotator, assignment_id=assignment.pk)
    assert (draft.text, draft.revision) == ("The answer is 42.", 3)
    assert AnswerDraft.objects.count() == 1


def test_writing_extends_the_lease_so_nobody_else_takes_the_place(annotator, project, colleagues):
    project.judgments_per_comparison = 1
    project.save(update_fields=["judgments_per_comparison"])
    comparisons_bulk_create(project, 1)
    start = timezone.now()
    assignment = comparison_lease_next(annotator=annotator, project=project, now=start)
    lease = project.lease_duration
    # Still typing just before the lease would have run out: it runs for a whole lease from now.
    later = start + lease - timedelta(seconds=5)
    draft_save(annotator=annotator, assignment_id=assignment.pk, text="draft", revision=1, now=later)
    assignment.refresh_from_db()
    assert assignment.expires_at == later + lease
    # Past the original end: the sweep leaves it, and another annotator finds no place.
    past_original = start + lease + timedelta(minutes=1)
    assert leases_expire(now=past_original) == 0
    assert comparison_lease_next(annotator=colleagues[0], project=project, now=past_original) is None
    # Once the writer stops, the extended lease ends as any other.
    assert leases_expire(now=later + lease + timedelta(seconds=1)) == 1


def test_a_lapsed_or_finished_lease_or_someone_elses_refuses_the_draft(annotator, project, colleagues):
    comparisons_bulk_create(project, 2)
    first = comparison_lease_next(annotator=annotator, project=project)
    with pytest.raises(SubmissionConflict):
        draft_save(
            annotator=annotator,
            assignment_id=first.pk,
            text="late",
            revision=1,
            now=first.expires_at + timedelta(seconds=1),
        )
    with pytest.raises(AssignmentNotFound):
        draft_save(annotator=colleagues[0], assignment_id=first.pk, text="mine?", revision=1)
    judgment_submit(
        annotator=annotator,
        assignment_id=first.pk,
        submission_key="draft-test-1",
        submission=JudgmentSubmission(choice="a", strength=1),
    )
    with pytest.raises(SubmissionConflict):
        draft_save(annotator=annotator, assignment_id=first.pk, text="after", revision=2)
    assert not AnswerDraft.objects.exists()


def test_the_draft_endpoint_saves_reads_and_refuses_bad_input(annotator, project, settings):
    settings.RANKWISE_ANSWER_MAX_CHARS = 20
    comparisons_bulk_create(project, 1)
    assignment = comparison_lease_next(annotator=annotator, project=project)
    client = logged_in_client(annotator)
    url = f"/projects/{project.slug}/assignments/{assignment.pk}/draft"
    assert client.get(url).json() == {
        "text": "",
        "revision": 0,
        "base": "",
        "saved_at": None,
        "expires_at": None,
        "preview_html": "",
        "diff": None,
    }

    def post(body):
        return client.post(url, json.dumps(body), content_type="application/json")

    saved = post({"text": "  Half written\\n", "revision": 1})
    assert saved.status_code == 200
    assert saved.json()["text"] == "  Half written\\n"  # stored as written
    assert saved.json()["preview_html"] == "<p>Half written\\n</p>\n"  # rendered by the sanitizer
    assert saved.json()["diff"] is None  # a demonstration starts from nothing
    assert client.get(url).json()["revision"] == 1
    assert post({"text": "", "revision": 2}).status_code == 200  # cleared: fine for a draft
    refused = post({"text": "x\\x00", "revision": "3", "colour": 1})
    assert refused.status_code == 400
    refused = post({"text": "x" * 21, "revision": -1})
    assert refused.status_code == 400
    assert set(refused.json()["errors"]) == {"text", "revision"}
    assert "at most 20 characters" in refused.json()["errors"]["text"][0]
    assert "draft was not saved" in refused.json()["detail"]
    assert Client().get(url).status_code == 401
    now = timezone.now()
    Assignment.objects.filter(pk=assignment.pk).update(
        leased_at=now - timedelta(minutes=30), expires_at=now - timedelta(seconds=1)
    )
    assert post({"text": "late", "revision": 5}).status_code == 409
