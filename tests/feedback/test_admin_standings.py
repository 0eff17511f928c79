"""Standings in the admin: listed and filtered, suspended and reinstated through the services with a
required reason (a refusal is a form error and changes nothing), their history read-only, newest first."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from feedback.models import AnnotatorStanding, StandingChange
from feedback.services.standing import annotator_suspend
from tests.conftest import logged_in_client
from tests.factories import AnnotatorFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


def url(view: str, *args) -> str:
    return reverse(f"admin:feedback_annotatorstanding_{view}", args=args)


@pytest.fixture
def standing():
    project = ProjectFactory(name="Summaries")
    annotator = AnnotatorFactory(username="dana")
    project.members.add(annotator)
    return AnnotatorStanding.objects.create(
        project=project, annotator=annotator, leases=12, gold_slots=2, gold_leases=1
    )


def snapshot(standing: AnnotatorStanding) -> tuple:
    standing.refresh_from_db()
    changes = list(StandingChange.objects.values_list("previous_status", "status", "reason"))
    return standing.status, standing.reason, standing.counts_since, changes


def history(page: str) -> list[list[str]]:
    body = re.search(r'<table id="standing-history">.*?<tbody>(.*?)</tbody>', page, re.S)
    assert body
    return [
        re.findall(r"<td[^>]*>(.*?)</td>", row, re.S) for row in re.findall(r"<tr>(.*?)</tr>", body.group(1))
    ]


def test_the_list_shows_standings_with_their_counts_and_filters_by_status(admin_client, standing):
    other = AnnotatorStanding.objects.create(
        project=standing.project, annotator=AnnotatorFactory(username="eli")
    )
    annotator_suspend(
        project_id=other.project_id, annotator_id=other.annotator_id, actor=UserFactory(), reason="Guesses."
    )
    page = admin_client.get(url("changelist")).content.decode()
    row = page[page.index(">dana<") :]
    row = row[: row.index("</tr>")]
    assert '<td class="field-project nowrap">Summaries</td>' in row
    assert '<td class="field-status">Active</td>' in row
    assert '<td class="field-leases">12</td>' in row
    assert '<td class="field-gold_served">1 of 12</td>' in row
    suspended = admin_client.get(url("changelist"), {"status__exact": "suspended"})
    assert [str(row.annotator) for row in suspended.context["cl"].result_list] == ["eli"]
    by_project = admin_client.get(url("changelist"), {"project__id__exact": standing.project_id})
    assert sorted(str(row.annotator) for row in by_project.context["cl"].result_list) == ["dana", "eli"]


def test_suspending_with_a_reason_records_who_and_why(admin_client, admin_user, standing):
    response = admin_client.post(
        url("suspend", standing.pk), {"reason": "  Answers in 2 seconds.  "}, follow=True
    )
    assert response.redirect_chain == [(url("change", standing.pk), 302)]
    assert [str(message) for message in response.context["messages"]] == ["dana suspended in Summaries."]
    status, reason, _, changes = snapshot(standing)
    assert (status, reason) == ("suspended", "Answers in 2 seconds.")
    assert changes == [("active", "suspended", "Answers in 2 seconds.")]
    assert StandingChange.objects.get().changed_by == admin_user
    page = response.content.decode()
    assert f'<a href="{url("reinstate", standing.pk)}">Reinstate</a>' in page
    assert f'href="{url("suspend", standing.pk)}"' not in page


@pytest.mark.parametrize("reason", ["", "   "])
def test_a_change_without_a_reason_is_refused_and_changes_nothing(admin_client, standing, reason):
    before = snapshot(standing)
    response = admin_client.post(url("suspend", standing.pk), {"reason": reason})
    assert response.status_code == 200
    assert response.context["form"].errors == {"reason": ["This field is required."]}
    assert snapshot(standing) == before
    annotator_suspend(
        project_id=standing.project_id, annotator_id=standing.annotator_id, actor=None, reason="x"
    )
    before = snapshot(standing)
    response = admin_client.post(url("reinstate", standing.pk), {"reason": reason})
    assert response.context["form"].errors == {"reason": ["This field is required."]}
    assert snapshot(standing) == before


def test_a_change_the_service_refuses_is_a_form_error_naming_the_problem(admin_client, standing):
    before = snapshot(standing)
    response = admin_client.post(url("reinstate", standing.pk), {"reason": "Back."})
    assert response.status_code == 200
    assert response.context["form"].non_field_errors() == [
        "This annotator is not suspended from the project."
    ]
    assert "This annotator is not suspended from the project." in response.content.decode()
    assert snapshot(standing) == before

    annotator_suspend(
        project_id=standing.project_id, annotator_id=standing.annotator_id, actor=None, reason="x"
    )
    before = snapshot(standing)
    response = admin_client.post(url("suspend", standing.pk), {"reason": "Again."})
    assert response.context["form"].non_field_errors() == [
        "This annotator is already suspended from the project."
    ]
    assert snapshot(standing) == before


def test_reinstating_starts_the_gold_count_afresh_and_the_history_reads_newest_first(admin_client, standing):
    annotator_suspend(
        project_id=standing.project_id,
        annotator_id=standing.annotator_id,
        actor=None,
        reason="<b>Low</b> gold.",
    )
    response = admin_client.post(url("reinstate", standing.pk), {"reason": "Retrained."})
    assert response.status_code == 302
    status, reason, counts_since, _ = snapshot(standing)
    assert (status, reason) == ("active", "Retrained.")
    assert counts_since == standing.changed_at
    page = admin_client.get(url("change", standing.pk)).content.decode()
    rows = history(page)
    assert [row[1:] for row in rows] == [
        ["Suspended", "Active", "admin-user", "0/0", "Retrained."],
        ["Active", "Suspended", "the gold check", "0/0", "&lt;b&gt;Low&lt;/b&gt; gold."],
    ]
    assert rows[0][0] >= rows[1][0]


def test_standings_and_their_history_are_never_edited_or_deleted_in_the_admin(admin_client, standing):
    annotator_suspend(
        project_id=standing.project_id, annotator_id=standing.annotator_id, actor=None, reason="x"
    )
    change = StandingChange.objects.get()
    before = snapshot(standing)
    page = admin_client.get(url("change", standing.pk)).content.decode()
    assert 'name="_save"' not in page
    assert (
        admin_client.post(url("change", standing.pk), {"status": "active", "reason": "y"}).status_code == 403
    )
    assert admin_client.post(url("delete", standing.pk), {"post": "yes"}).status_code == 403
    assert admin_client.get(url("add")).status_code == 403
    change_url = reverse("admin:feedback_standingchange_change", args=[change.pk])
    assert 'name="_save"' not in admin_client.get(change_url).content.decode()
    assert admin_client.post(change_url, {"reason": "rewritten"}).status_code == 403
    delete_url = reverse("admin:feedback_standingchange_delete", args=[change.pk])
    assert admin_client.post(delete_url, {"post": "yes"}).status_code == 403
    assert snapshot(standing) == before


def test_changing_a_standing_needs_the_permission_to_change_standings(standing):
    staff = UserFactory(username="viewer", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_annotatorstanding"))
    client = logged_in_client(staff)
    page = client.get(url("change", standing.pk)).content.decode()
    assert url("suspend", standing.pk) not in page
    assert client.get(url("suspend", standing.pk)).status_code == 403
    assert client.post(url("suspend", standing.pk), {"reason": "No."}).status_code == 403
    assert (
        Client()
        .post(url("suspend", standing.pk), {"reason": "No."})["Location"]
        .startswith(reverse("admin:login"))
    )
    assert snapshot(standing)[0] == "active"
    assert not StandingChange.objects.exists()


def test_the_suspend_page_says_what_it_will_do(admin_client, standing):
    page = " ".join(admin_client.get(url("suspend", standing.pk)).content.decode().split())
    assert "<strong>dana</strong> in <strong>Summaries</strong> is now active" in page
    assert "their open leases are returned" in page
    assert '<input type="submit" class="default" value="Suspend">' in page
    assert admin_client.get(url("suspend", 10**9)).status_code == 404
