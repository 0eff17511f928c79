"""The annotator's pages and JSON endpoints through Django's test client, on PostgreSQL."""

import json
import re
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from annotate.assignment import comparison_lease_next
from annotate.progress import project_completion_count
from feedback.models import Assignment, Comparison, Judgment
from tests.annotate.conftest import comparisons_bulk_create
from tests.conftest import logged_in_client
from tests.factories import AnnotatorFactory, ComparisonFactory, JudgmentFactory, ProjectFactory

pytestmark = pytest.mark.django_db

KEY = "7f1e9a2c-key-0001"


def rows() -> tuple:
    return (
        list(Comparison.objects.order_by("pk").values_list("pk", "judgment_count", "lease_count", "status")),
        list(
            Assignment.objects.order_by("pk").values_list(
                "pk", "annotator", "state", "expires_at", "skip_reason"
            )
        ),
        list(Judgment.objects.order_by("pk").values_list("pk", "annotator", "choice", "submission_key")),
    )


def assignment_id_of(response) -> int:
    return int(re.search(r'data-assignment-id="(\d+)"', response.content.decode()).group(1))


def post_json(client: Client, url: str, body, **extra):
    return client.post(
        url, json.dumps(body) if not isinstance(body, str) else body, content_type="application/json", **extra
    )


def judgment_url(project, assignment_id: int) -> str:
    return reverse("annotate:judgment", args=[project.slug, assignment_id])


@pytest.fixture
def leased(annotator, annotator_client, project):
    """The annotator's first lease, taken through the page."""
    comparisons_bulk_create(project, 3)
    page = annotator_client.get(reverse("annotate:workspace", args=[project.slug]))
    return Assignment.objects.get(pk=assignment_id_of(page))


# --- project list ----------------------------------------------------------------------------------------


def test_the_project_list_needs_a_login(client):
    response = client.get(reverse("annotate:projects"))
    assert (response.status_code, response["Location"]) == (302, f"{reverse('login')}?next=/")


def test_an_annotator_sees_their_active_projects_with_their_progress(annotator, annotator_client):
    mine = ProjectFactory(name="Mine", slug="mine")
    mine.members.add(annotator)
    for status in ("completed", "open"):
        JudgmentFactory(
            comparison=ComparisonFactory(prompt__project=mine, status=status), annotator=annotator
        )
    Judgment.objects.filter(annotator=annotator).update(created_at=timezone.now() - timedelta(days=3))
    JudgmentFactory(comparison=ComparisonFactory(prompt__project=mine), annotator=annotator)
    ProjectFactory(name="Not mine")
    ProjectFactory(name="Archived", is_active=False).members.add(annotator)
    project_completion_count(project_id=mine.pk)  # what the worker does when asked, or beat every 30 s

    response = annotator_client.get(reverse("annotate:projects"))
    summaries = response.context["summaries"]
    assert [(s["project"].name, s["mine"], s["today"]) for s in summaries] == [("Mine", 3, 1)]
    assert (summaries[0]["progress"].completed, summaries[0]["progress"].total) == (1, 3)
    assert reverse("annotate:workspace", args=["mine"]) in response.content.decode()
    assert "Content-Security-Policy" in response.headers


def test_staff_see_every_active_project(admin_client):
    ProjectFactory(name="B")
    ProjectFactory(name="A")
    response = admin_client.get(reverse("annotate:projects"))
    assert [summary["project"].name for summary in response.context["summaries"]] == ["A", "B"]


# --- the workspace page ----------------------------------------------------------------------------------


def test_the_workspace_leases_a_comparison_and_a_reload_shows_the_same_one(
    annotator, annotator_client, project
):
    comparisons_bulk_create(project, 3)
    url = reverse("annotate:workspace", args=[project.slug])
    first = annotator_client.get(url)
    again = annotator_client.get(url)
    assert first.status_code == again.status_code == 200
    assert assignment_id_of(first) == assignment_id_of(again)
    assert Assignment.objects.get().annotator == annotator
    assert first.headers["Content-Security-Policy"].startswith("default-src 'self'; script-src 'self'")
    assert first.headers["Cache-Control"].startswith("max-age=0")


def test_the_workspace_shows_responses_in_display_order_without_checkpoint_names(
    annotator, annotator_client, project
):
    (comparison,) = comparisons_bulk_create(project, 1)
    first, second = comparison.entries.order_by("position")
    # Display order is what the stored positions say, not the order of the responses' ids.
    first.position, second.position = 7, 0
    first.save()
    second.save()
    first.position = 1
    first.save()
    page = annotator_client.get(reverse("annotate:workspace", args=[project.slug])).content.decode()
    a_at, b_at = page.index("Response A"), page.index("Response B")
    assert page.index(second.response.text, a_at) < b_at < page.index(first.response.text, b_at)
    assert "bulk-engine" not in page  # the checkpoint's name
    assert f"/models/{project.slug}" not in page


def test_untrusted_text_reaches_the_page_escaped(annotator, annotator_client, project):
    (comparison,) = comparisons_bulk_create(project, 1)
    entry = comparison.entries.get(position=0)
    entry.response.text = "<script>alert(1)</script> <img src=x onerror=alert(2)> [go](javascript:alert(3)) ![p](http://canary.invalid/p.png)"
    entry.response.save()
    comparison.prompt.conversation = [{"role": "user", "content": "<svg onload=alert(4)>"}]
    comparison.prompt.save()
    project.guidelines = "<iframe srcdoc='<script>alert(5)</script>'></iframe> **Be fair**"
    project.save()
    page = annotator_client.get(reverse("annotate:workspace", args=[project.slug])).content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page
    assert "&lt;svg onload=alert(4)&gt;" in page
    assert "<strong>Be fair</strong>" in page
    for live in ("<script>alert", "<img", "<svg", "<iframe", 'href="javascript:', "canary.invalid"):
        assert live not in page


def test_a_non_member_gets_404_and_nothing_is_leased(annotator_client):
    other = ProjectFactory(slug="other")
    comparisons_bulk_create(other, 2)
    before = rows()
    for name in ("workspace", "guidelines"):
        assert annotator_client.get(reverse(f"annotate:{name}", args=["other"])).status_code == 404
    assert annotator_client.get(reverse("annotate:workspace", args=["missing"])).status_code == 404
    assert rows() == before


def test_an_empty_pool_shows_the_done_page(annotator_client, project):
    response = annotator_client.get(reverse("annotate:workspace", args=[project.slug]))
    assert response.status_code == 200
    assert "Nothing left for you here right now" in response.content.decode()
    assert "data-assignment-id" not in response.content.decode()


def test_the_guidelines_page_renders_sanitized_markdown(annotator_client, project):
    project.guidelines = "# Rules\n\nPrefer *honest* answers. <b onclick=x>raw</b>"
    project.save()
    page = annotator_client.get(reverse("annotate:guidelines", args=[project.slug])).content.decode()
    assert "<h1>Rules</h1>" in page
    assert "<em>honest</em>" in page
    assert "&lt;b onclick=x&gt;raw&lt;/b&gt;" in page


def test_the_workspace_shows_the_projects_completion_once_it_is_counted(annotator_client, project):
    comparisons_bulk_create(project, 4)
    workspace = reverse("annotate:workspace", args=[project.slug])
    first = annotator_client.get(workspace).content.decode()
    assert '<span id="project-percent">being counted</span>' in first
    Comparison.objects.filter(pk=Comparison.objects.order_by("pk")[1].pk).update(status="completed")
    project_completion_count(project_id=project.pk)
    counted = annotator_client.get(workspace).content.decode()
    assert '<span id="project-percent">25% complete</span>' in counted
    assert 'max="4" value="1"' in counted


# --- submitting ------------------------------------------------------------------------------------------


def test_a_judgment_is_saved_once_and_a_retry_is_answered_as_a_replay(annotator_client, project, leased):
    body = {"submission_key": KEY, "choice": "a", "strength": 2, "time_spent_ms": 4200}
    saved = post_json(annotator_client, judgment_url(project, leased.pk), body)
    assert saved.status_code == 201
    answer = saved.json()
    assert answer["replayed"] is False
    assert answer["progress"]["today"] == 1
    assert answer["next_url"] == reverse("annotate:workspace", args=[project.slug])
    before = rows()
    replay = post_json(annotator_client, judgment_url(project, leased.pk), body)
    assert (replay.status_code, replay.json()["judgment_id"], replay.json()["replayed"]) == (
        200,
        answer["judgment_id"],
        True,
    )
    assert rows() == before
    conflict = post_json(annotator_client, judgment_url(project, leased.pk), {**body, "choice": "b"})
    assert conflict.status_code == 422
    assert conflict.json() == {
        "detail": "This submission key was already used for a different judgment; send a new key for a new judgment."
    }
    assert rows() == before
    # The next page leases the next comparison.
    page = annotator_client.get(reverse("annotate:workspace", args=[project.slug]))
    assert assignment_id_of(page) != leased.pk


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        (
            {"submission_key": KEY, "choice": "a", "strength": 1, "rationale": "bad\x00byte"},
            {"rationale": ["Must not contain NUL bytes."]},
        ),
        (
            {"submission_key": KEY, "choice": "a", "strength": 1, "rationale": "x" * 5001},
            {"rationale": ["At most 5000 characters (got 5001)."]},
        ),
        ({"submission_key": KEY, "choice": "a"}, {"strength": ["Say how much better: 1 to 3."]}),
        (
            {"submission_key": KEY, "choice": "a", "strength": 1, "flags": ["nice"]},
            {"flags": ["Unknown flags ['nice']; allowed: broken, off_topic, personal_data, unsafe."]},
        ),
        ("{not json", None),
        ("[1, 2]", {"non_field_errors": ["The body must be a JSON object."]}),
    ],
)
def test_bad_input_is_a_400_with_field_messages_and_nothing_is_written(
    annotator_client, project, leased, body, errors
):
    before = rows()
    response = post_json(annotator_client, judgment_url(project, leased.pk), body)
    assert response.status_code == 400
    assert response.json()["detail"] == "The judgment was not saved: fix the fields named."
    if errors is None:
        assert response.json()["errors"]["non_field_errors"][0].startswith("The body is not valid JSON:")
    else:
        assert response.json()["errors"] == errors
    assert rows() == before


def test_a_body_that_is_not_json_is_refused(annotator_client, project, leased):
    response = annotator_client.post(judgment_url(project, leased.pk), {"choice": "a"})
    assert response.status_code == 400
    assert response.json()["errors"] == {"non_field_errors": ["Send the body as application/json."]}


def test_an_expired_lease_whose_place_was_taken_is_a_409(annotator, annotator_client, project, leased):
    now = timezone.now()
    Assignment.objects.filter(pk=leased.pk).update(
        leased_at=now - project.lease_duration * 2, expires_at=now - project.lease_duration
    )
    colleagues = [AnnotatorFactory(username=f"late-{n}") for n in range(2)]
    project.members.add(*colleagues)
    for person in colleagues:
        assert comparison_lease_next(annotator=person, project=project).comparison_id == leased.comparison_id
    before = rows()
    response = post_json(
        annotator_client,
        judgment_url(project, leased.pk),
        {"submission_key": KEY, "choice": "b", "strength": 1},
    )
    assert response.status_code == 409
    assert "expired and its place went to another annotator" in response.json()["detail"]
    assert rows() == before


def test_nobody_reaches_another_annotators_assignment_or_a_project_they_left(
    annotator_client, project, leased
):
    intruder = AnnotatorFactory(username="intruder")
    project.members.add(intruder)
    intruder_client = logged_in_client(intruder)
    before = rows()
    body = {"submission_key": KEY, "choice": "a", "strength": 1}
    assert post_json(intruder_client, judgment_url(project, leased.pk), body).status_code == 404
    assert (
        post_json(
            intruder_client, reverse("annotate:skip", args=[project.slug, leased.pk]), {"reason": "x"}
        ).status_code
        == 404
    )
    # The owner, through another project's URL, or after leaving the project.
    elsewhere = ProjectFactory(slug="elsewhere")
    elsewhere.members.add(leased.annotator)
    assert post_json(annotator_client, judgment_url(elsewhere, leased.pk), body).status_code == 404
    project.members.remove(leased.annotator)
    response = post_json(annotator_client, judgment_url(project, leased.pk), body)
    assert (response.status_code, response.json()) == (404, {"detail": "No such project for you."})
    assert rows() == before


def test_anonymous_calls_get_401_in_json(client, project, leased):
    before = rows()
    response = post_json(
        client, judgment_url(project, leased.pk), {"submission_key": KEY, "choice": "a", "strength": 1}
    )
    assert response.status_code == 401
    assert response.json() == {"detail": "Your session ended. Log in again; nothing was saved."}
    assert rows() == before


def test_the_endpoints_enforce_csrf(annotator, project, leased):
    client = Client(enforce_csrf_checks=True)
    client.force_login(annotator)
    before = rows()
    response = post_json(
        client, judgment_url(project, leased.pk), {"submission_key": KEY, "choice": "a", "strength": 1}
    )
    assert response.status_code == 403
    assert rows() == before
    token = client.get(reverse("annotate:workspace", args=[project.slug])).cookies["csrftoken"].value
    ok = post_json(
        client,
        judgment_url(project, leased.pk),
        {"submission_key": KEY, "choice": "a", "strength": 1},
        HTTP_X_CSRFTOKEN=token,
    )
    assert ok.status_code == 201


def test_skipping_frees_the_comparison_and_it_never_returns(annotator_client, project, leased):
    skip_url = reverse("annotate:skip", args=[project.slug, leased.pk])
    assert post_json(annotator_client, skip_url, {"reason": ""}).json()["errors"] == {
        "reason": ["Say why you skip (a short reason)."]
    }
    assert post_json(annotator_client, skip_url, {"reason": "x", "extra": 1}).status_code == 400
    response = post_json(annotator_client, skip_url, {"reason": "The prompt is broken or unclear"})
    assert response.status_code == 200
    leased.refresh_from_db()
    assert (leased.state, leased.skip_reason) == ("skipped", "The prompt is broken or unclear")
    assert Comparison.objects.get(pk=leased.comparison_id).lease_count == 0
    late = post_json(
        annotator_client,
        judgment_url(project, leased.pk),
        {"submission_key": KEY, "choice": "a", "strength": 1},
    )
    assert late.status_code == 409
    page = annotator_client.get(reverse("annotate:workspace", args=[project.slug]))
    assert Assignment.objects.get(pk=assignment_id_of(page)).comparison_id != leased.comparison_id


def test_only_post_is_allowed_on_the_endpoints(annotator_client, project, leased):
    assert annotator_client.get(judgment_url(project, leased.pk)).status_code == 405


def test_a_ranking_project_shows_rank_controls_for_every_response(annotator, annotator_client):
    project = ProjectFactory(comparison_mode="ranking", responses_per_comparison=4, slug="ranked")
    project.members.add(annotator)
    comparisons_bulk_create(project, 1, responses_each=4)
    page = annotator_client.get(reverse("annotate:workspace", args=["ranked"])).content.decode()
    assert [
        label for label in "ABCD" if f'<label for="rank-{label}">Rank of {label}</label>' in page
    ] == list("ABCD")
    assert 'name="choice"' not in page
    leased = Assignment.objects.get()
    response = post_json(
        annotator_client, judgment_url(project, leased.pk), {"submission_key": KEY, "ranking": [2, 1, 3, 3]}
    )
    assert response.status_code == 201
    assert Judgment.objects.get().ranking == [2, 1, 3, 3]


def test_the_comparison_page_reads_its_responses_in_one_query_whatever_k(
    annotator, django_assert_num_queries
):
    from annotate.selectors import assignment_get_for_annotator, comparison_page

    project = ProjectFactory(comparison_mode="ranking", responses_per_comparison=6, slug="six")
    project.members.add(annotator)
    comparisons_bulk_create(project, 1, responses_each=6)
    lease = comparison_lease_next(annotator=annotator, project=project)
    assignment = assignment_get_for_annotator(annotator=annotator, assignment_id=lease.pk)
    with django_assert_num_queries(2):  # the prompt, then the six entries with their responses
        page = comparison_page(assignment=assignment, project=project)
    assert [shown.label for shown in page.responses] == list("ABCDEF")


def test_a_judgment_takes_fourteen_statements_to_load_and_eleven_to_submit(
    annotator, annotator_client, project, django_assert_num_queries
):
    """The work loop's statement budget; a new query on the path, or one per response, fails here.

    Next: session, user, project with its stored completion; the claim's transaction: lock the annotator's
    standing, sweep overdue leases, own lease, claim (with the prompt), take the place, count the lease on
    the standing, write the assignment, commit; judgments today; the responses. Submit: session, user,
    project; the transaction: lock the assignment (and read the standing), its responses, the counters,
    the judgment, the assignment, commit; judgments today. Measured on the second judgment: the first
    claim in a project also creates the standing row."""
    project.gold_rate = 0
    project.save(update_fields=["gold_rate"])
    comparisons_bulk_create(project, 3)
    workspace = reverse("annotate:workspace", args=[project.slug])
    first = annotator_client.get(workspace)
    body = {"submission_key": KEY, "choice": "a", "strength": 1}
    assert (
        post_json(annotator_client, judgment_url(project, assignment_id_of(first)), body).status_code == 201
    )
    with django_assert_num_queries(14):
        page = annotator_client.get(workspace)
    assert page.status_code == 200
    body = {"submission_key": KEY + "-2", "choice": "a", "strength": 1}
    with django_assert_num_queries(11):
        response = post_json(annotator_client, judgment_url(project, assignment_id_of(page)), body)
    assert response.status_code == 201
    assert response.json()["progress"]["today"] == 2


def test_a_server_error_answers_the_script_in_json_and_the_browser_with_the_page(
    annotator_client, project, leased, monkeypatch
):
    from annotate import views

    def broken(**kwargs):
        raise RuntimeError("secret detail")

    monkeypatch.setattr(views, "judgment_submit", broken)
    monkeypatch.setattr(views, "comparison_lease_next", broken)
    annotator_client.raise_request_exception = False
    before = rows()
    response = post_json(
        annotator_client,
        judgment_url(project, leased.pk),
        {"submission_key": KEY, "choice": "a", "strength": 1},
        HTTP_ACCEPT="application/json",  # as the workspace's script sends it
    )
    assert response.status_code == 500
    assert response.json() == {
        "detail": "The server failed to answer this request. The error was logged; try again later."
    }
    page = annotator_client.get(
        reverse("annotate:workspace", args=[project.slug]),
        HTTP_ACCEPT="text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    )
    assert page.status_code == 500
    assert page["Content-Type"].startswith("text/html")
    assert b"Server Error (500)" in page.content
    assert b"secret detail" not in page.content
    assert rows() == before
