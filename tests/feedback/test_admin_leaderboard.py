"""A project's leaderboard page in the admin: pending until a worker computed it, then the charts (inline
SVG drawn on the server) with their numbers, the filters as a form with field errors, a head-to-head
report whose model text is escaped, a CSV, "Compute again", and the checkpoint's scores on its page."""

from __future__ import annotations

import csv
import io

import pytest
from django.urls import reverse

from feedback.models import LeaderboardReport, PolicyCheckpoint, Response
from feedback.services.leaderboard import LeaderboardFilters, leaderboard_refresh
from tests.conftest import logged_in_client
from tests.factories import planted_project

pytestmark = pytest.mark.django_db

HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)>"


@pytest.fixture
def world():
    project, base, instruct, lora = planted_project(judgments_per_pair=24)
    Response.objects.filter(checkpoint=instruct).update(text=HOSTILE)
    PolicyCheckpoint.objects.filter(pk=lora.pk).update(name='=HYPERLINK("http://evil")')
    lora.refresh_from_db()
    return project, base, instruct, lora


def page_url(project, **query) -> str:
    url = reverse("admin:feedback_project_leaderboard", args=[project.pk])
    if query:
        from urllib.parse import urlencode

        # What the form submits untouched: the default filters.
        defaults = {
            "exclude_flagged": "on",
            "exclude_suspended": "on",
            "adjudicated_wins": "on",
            "both_bad": "apart",
        }
        url += "?" + urlencode({"filtered": "on", **defaults, **query}, doseq=True)
    return url


def computed(project, filters=None):
    filters = filters or LeaderboardFilters()
    row = LeaderboardReport.objects.get(project=project, key=filters.key)
    return leaderboard_refresh(project_id=project.pk, key=row.key)


def test_the_page_is_pending_then_shows_charts_and_numbers(admin_user, world):
    project, _base, _instruct, _lora = world
    client = logged_in_client(admin_user)
    page = client.get(page_url(project)).content.decode()
    assert "A worker is computing this leaderboard" in page
    computed(project)
    page = client.get(page_url(project)).content.decode()
    assert page.count('<svg role="img"') == 3  # forest plot, win-rate heatmap, category bars
    assert 'id="leaderboard-table"' in page
    assert 'id="win-rate-table"' in page
    assert "No judgment has come in since." in page
    assert "<script>" not in page.split("</head>")[1]
    # The table: the reference at 1000 [1000, 1000], every checkpoint with both fits.
    assert "1000 [1000, 1000]" in page
    for name in ("base", "instruct"):
        assert f">{name}</a>" in page


def test_a_head_to_head_report_escapes_model_text(admin_user, world):
    project, _base, _instruct, _lora = world
    client = logged_in_client(admin_user)
    client.get(page_url(project))
    computed(project)
    page = client.get(page_url(project, first="instruct", second="base")).content.decode()
    assert 'id="head-to-head-summary"' in page
    assert "wins among decisive battles" in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert HOSTILE not in page
    assert 'id="head-to-head-shares"' in page
    assert 'id="head-to-head-categories"' in page
    assert 'id="head-to-head-axes"' in page


def test_bad_filters_are_form_errors_and_other_filters_are_another_leaderboard(admin_user, world):
    project, *_ = world
    client = logged_in_client(admin_user)
    page = client.get(page_url(project, since="not a date", min_gold_accuracy="3")).content.decode()
    assert page.count('class="errorlist') >= 2
    assert not LeaderboardReport.objects.exists()
    client.get(page_url(project, categories=["list"], exclude_suspended=""))
    row = LeaderboardReport.objects.get()
    assert row.filters["categories"] == ["list"]
    assert row.filters["exclude_suspended"] is False  # an unticked box in a submitted form is false


def test_the_csv_holds_the_table_and_no_formula(admin_user, world):
    project, _base, _instruct, _lora = world
    client = logged_in_client(admin_user)
    assert client.get(page_url(project) + "?format=csv").status_code == 404  # not computed yet
    computed(project)
    response = client.get(page_url(project) + "?format=csv")
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [row["checkpoint"] for row in rows][-1] == "base"
    assert {row["checkpoint"] for row in rows} >= {'\'=HYPERLINK("http://evil")'}
    reference = next(row for row in rows if row["checkpoint"] == "base")
    assert (reference["raw_elo"], reference["raw_low"], reference["raw_high"]) == ("1000.00",) * 3


def test_compute_again_sends_the_computation(admin_user, world, django_capture_on_commit_callbacks):
    project, *_ = world
    client = logged_in_client(admin_user)
    client.get(page_url(project))
    computed(project)
    with django_capture_on_commit_callbacks() as sent:
        response = client.post(page_url(project))
    assert response.status_code == 302
    assert len(sent) == 1
    assert LeaderboardReport.objects.get().status == "pending"


def test_the_checkpoint_page_shows_its_score_its_parents_and_the_difference(admin_user, world):
    project, base, instruct, _lora = world
    client = logged_in_client(admin_user)
    client.get(page_url(project))
    row = computed(project)
    page = client.get(reverse("admin:feedback_policycheckpoint_change", args=[instruct.pk])).content.decode()
    entries = {entry["name"]: entry for entry in row.report["checkpoints"]}
    own, parent = entries["instruct"]["raw"], entries["base"]["raw"]
    assert 'id="checkpoint-leaderboard"' in page
    assert f"{own['elo']:.0f} [{own['low']:.0f}, {own['high']:.0f}]" in page
    assert f"{own['elo'] - parent['elo']:+.0f}" in page
    assert "separated at 95%" in page
    orphan = client.get(reverse("admin:feedback_policycheckpoint_change", args=[base.pk])).content.decode()
    assert "no parent" in orphan


def test_a_checkpoint_that_won_everything_still_draws(admin_user):
    """Perfect separation (small categories make it common): finite scores, intervals drawn, no error."""
    from tests.factories import AnnotatorFactory, PolicyCheckpointFactory, ProjectFactory, judge, shown

    project = ProjectFactory()
    base, instruct = PolicyCheckpointFactory(kind="base"), PolicyCheckpointFactory(name="undefeated")
    for index in range(8):
        order = [base, instruct] if index % 2 else [instruct, base]
        category = "list" if index < 4 else "write"
        judge(
            shown(project, order, category=category), AnnotatorFactory(), "a" if order[0] == instruct else "b"
        )
    client = logged_in_client(admin_user)
    client.get(page_url(project))
    computed(project)
    response = client.get(page_url(project))
    assert response.status_code == 200
    page = response.content.decode()
    assert page.count('<svg role="img"') == 3
    assert "undefeated won every one of its 8 decisive battles" in page
