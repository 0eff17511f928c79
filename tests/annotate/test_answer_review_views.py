"""The reviewer's pages for people's answers: the queue lists the answers waiting, the page shows the
answer (and the original and the diff for an edit) through the sanitizer, and a decision is a JSON POST:
accept, reject with a reason, or edit, once per key, by the project's reviewers only."""

from __future__ import annotations

import json

import pytest

from feedback.models import AnswerReview, Response
from feedback.services.answers import human_answer_create
from tests.annotate.conftest import comparisons_bulk_create
from tests.conftest import logged_in_client
from tests.factories import AdminFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def waiting(project, annotator):
    comparison = comparisons_bulk_create(project, 1)[0]
    original = comparison.entries.get(position=0).response
    edit = human_answer_create(
        prompt=comparison.prompt,
        author=annotator,
        text="Better: <script>alert('x')</script> **bold**",
        edited_from=original,
        review_required=True,
    )
    return edit, original


def _post(client, url, body):
    return client.post(url, json.dumps(body), content_type="application/json")


def test_the_queue_and_the_page_show_the_answer_safely(waiting, project, annotator):
    edit, _original = waiting
    reviewer = logged_in_client(AdminFactory())
    queue = reviewer.get(f"/projects/{project.slug}/review").content.decode()
    assert f"/review/answers/{edit.pk}" in queue
    assert "edit of a model answer" in queue
    assert reviewer.get(f"/projects/{project.slug}/review/answers/next")["Location"].endswith(
        f"/review/answers/{edit.pk}"
    )
    page = reviewer.get(f"/projects/{project.slug}/review/answers/{edit.pk}")
    html = page.content.decode()
    assert page.status_code == 200
    assert "Content-Security-Policy" in page.headers
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert" in html  # in the sanitized answer and the escaped diff
    assert "<strong>bold</strong>" in html
    assert '<div class="diff plain-text" id="answer-diff">' in html
    assert "<ins>" in html
    assert "<del>" in html
    # The preview of a reviewer's edit: sanitized HTML and the diff from the answer, nothing stored.
    preview = _post(
        reviewer,
        f"/projects/{project.slug}/review/answers/{edit.pk}/preview",
        {"text": "<img src=x onerror=alert(1)> *fixed*", "revision": 1},
    ).json()
    assert "<img" not in preview["preview_html"]
    assert "<em>fixed</em>" in preview["preview_html"]
    # The diff rebuilds both texts: without its deletions the edit, without its insertions the answer.
    assert (
        "".join(text for op, text in preview["diff"] if op != "delete")
        == "<img src=x onerror=alert(1)> *fixed*"
    )
    assert "".join(text for op, text in preview["diff"] if op != "insert") == edit.text
    # Not a reviewer: refused; the page of an annotator's own project they cannot review.
    assert (
        logged_in_client(annotator).get(f"/projects/{project.slug}/review/answers/{edit.pk}").status_code
        == 403
    )


def test_decisions_are_recorded_once_and_only_by_reviewers(waiting, project, annotator):
    edit, _ = waiting
    url = f"/projects/{project.slug}/review/answers/{edit.pk}/decision"
    assert (
        _post(logged_in_client(annotator), url, {"submission_key": "k" * 10, "action": "accept"}).status_code
        == 403
    )
    reviewer = logged_in_client(AdminFactory())
    refused = _post(reviewer, url, {"submission_key": "decide-0001", "action": "reject"})
    assert refused.status_code == 400
    assert set(refused.json()["errors"]) == {"reason"}
    edited = _post(
        reviewer, url, {"submission_key": "decide-0002", "action": "edit", "text": "Clean answer."}
    )
    assert edited.status_code == 201
    assert edited.json()["next_url"].endswith(f"/review/answers/next?after={edit.pk}")
    again = _post(reviewer, url, {"submission_key": "decide-0002", "action": "edit", "text": "Clean answer."})
    assert again.status_code == 200
    assert again.json()["replayed"] is True
    late = _post(reviewer, url, {"submission_key": "decide-0003", "action": "accept"})
    assert late.status_code == 409
    edit.refresh_from_db()
    assert edit.review == "revised"
    revision = Response.objects.get(revision_of__answer=edit)
    assert (revision.text, revision.review, revision.edited_from_id) == ("Clean answer.", "accepted", edit.pk)
    assert AnswerReview.objects.count() == 1


def test_writers_see_where_their_answers_stand_with_the_reasons_and_the_edits(waiting, project, annotator):
    edit, original = waiting
    second = human_answer_create(
        prompt=edit.prompt, author=annotator, text="Another try.", edited_from=original, review_required=True
    )
    reviewer = logged_in_client(AdminFactory())
    base = f"/projects/{project.slug}/review/answers"
    reason = "Off topic <img src=x onerror=alert(1)>"
    rejected = _post(
        reviewer,
        f"{base}/{second.pk}/decision",
        {"submission_key": "why-00001", "action": "reject", "reason": reason},
    )
    assert rejected.status_code == 201
    revised = _post(
        reviewer,
        f"{base}/{edit.pk}/decision",
        {"submission_key": "fix-000001", "action": "edit", "text": "Better: **bold**"},
    )
    assert revised.status_code == 201

    writer = logged_in_client(annotator)
    page = writer.get(f"/projects/{project.slug}/answers")
    assert page.status_code == 200
    html = page.content.decode()
    assert "1 rejected · 1 replaced by a reviewer&#x27;s edit" in html
    assert (
        """Reviewer's reason: <span class="plain-text">Off topic &lt;img src=x onerror=alert(1)&gt;</span>"""
        in html
    )
    # The reviewer's edit as a diff of the writer's text: removed words struck, nothing live.
    assert "<del>&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; </del>" in html
    assert "<script>alert" not in html
    assert "<img src=x" not in html
    # Another annotator sees only their own (none); a stranger to the project finds nothing.
    assert (
        "You have written no answer"
        in logged_in_client(AdminFactory()).get(f"/projects/{project.slug}/answers").content.decode()
    )
    workspace = writer.get(f"/projects/{project.slug}/annotate").content.decode()
    assert 'id="my-answers-link"' not in workspace  # this project takes no answers: no link
