"""Annotator statistics (selector and admin page, on PostgreSQL and on the demo's SQLite) and what the
comparison admin shows of judgments and open leases."""

import json
import re
from datetime import timedelta

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from annotate.statistics import AnnotatorStatistics, annotator_statistics
from annotate.submission import PAIRWISE_RANKINGS
from feedback.admin.comparisons import AssignmentInline
from feedback.models import Assignment, Comparison, Judgment, Project
from tests.conftest import logged_in_client
from tests.factories import (
    AnnotatorFactory,
    AssignmentFactory,
    ComparisonFactory,
    JudgmentFactory,
    ProjectFactory,
    UserFactory,
)
from tests.processes import python_script

pytestmark = pytest.mark.django_db

STATISTICS_URL = reverse("admin:annotate_annotatorstatistics_changelist")


def judge(annotator, project: Project, choice: str, *, ms: int | None = None, ranking=None) -> Judgment:
    """A judgment of a fresh comparison of `project`: pairwise by `choice`, or k-wise by `ranking`."""
    ranking = ranking or PAIRWISE_RANKINGS[choice]
    return JudgmentFactory(
        comparison=ComparisonFactory(prompt__project=project, with_responses=len(ranking)),
        annotator=annotator,
        choice=choice,
        ranking=ranking,
        strength=1 if choice in ("a", "b") else None,
        time_spent_ms=ms,
    )


def scenario() -> list[AnnotatorStatistics]:
    """Two annotators, a pairwise and a ranking project; returns the statistics they must give.

    Also run on SQLite by `test_sqlite_gives_the_same_statistics_as_postgresql`."""
    pairs = ProjectFactory(name="pairs")
    ranks = ProjectFactory(name="ranks", comparison_mode="ranking", responses_per_comparison=3)
    alice = AnnotatorFactory(username="alice")
    bob = AnnotatorFactory(username="bob")
    for choice, ms in [("a", 1000), ("a", 2000), ("b", 9000), ("tie", None), ("both_bad", 3000), ("a", None)]:
        judge(alice, pairs, choice, ms=ms)
    for ranking, ms in [([1, 2, 3], 5000), ([2, 1, 3], 6000), ([1, 1, 2], 13000), ([1, 3, 2], None)]:
        judge(alice, ranks, "ranked", ranking=ranking, ms=ms)
    judge(bob, pairs, "tie")
    judge(bob, pairs, "both_bad")
    return [
        AnnotatorStatistics(
            annotator_id=alice.pk,
            annotator_username="alice",
            project_id=pairs.pk,
            project_name="pairs",
            judgments=6,
            timed_judgments=4,
            judgments_per_hour=960.0,  # 4 judgments in 15 s
            median_seconds=2.5,  # 1, 2 | 3, 9 s: the mean would be 3.75
            strict_preferences=4,
            left_share=0.75,
            tie_rate=1 / 6,
            both_bad_rate=1 / 6,
        ),
        AnnotatorStatistics(
            annotator_id=alice.pk,
            annotator_username="alice",
            project_id=ranks.pk,
            project_name="ranks",
            judgments=4,
            timed_judgments=3,
            judgments_per_hour=450.0,  # 3 judgments in 24 s
            median_seconds=6.0,  # 5 | 6 | 13 s: the mean would be 8
            strict_preferences=3,  # [1, 1, 2] ties for first
            left_share=2 / 3,
            tie_rate=0.0,
            both_bad_rate=0.0,
        ),
        AnnotatorStatistics(
            annotator_id=bob.pk,
            annotator_username="bob",
            project_id=pairs.pk,
            project_name="pairs",
            judgments=2,
            timed_judgments=0,
            judgments_per_hour=None,
            median_seconds=None,
            strict_preferences=0,
            left_share=None,
            tie_rate=0.5,
            both_bad_rate=0.5,
        ),
    ]


# --- The selector ---------------------------------------------------------------------------------------


def test_statistics_per_annotator_and_project_in_one_query(django_assert_num_queries):
    expected = scenario()
    with django_assert_num_queries(1):
        rows = annotator_statistics()
    assert rows == expected


def test_no_judgments_no_rows():
    ProjectFactory()
    AnnotatorFactory()
    assert annotator_statistics() == []


@pytest.mark.parametrize(
    ("times_ms", "median_seconds", "judgments_per_hour"),
    [
        ([], None, None),
        ([4000], 4.0, 900.0),
        ([3000, 1000], 2.0, 1800.0),
        ([1000, 9000, 2000], 2.0, 900.0),
        ([1500, 500, 3000, 1000], 1.25, 2400.0),
        ([0], 0.0, None),  # no time on the page at all: no rate
    ],
)
def test_median_and_rate_ignore_judgments_without_a_time(times_ms, median_seconds, judgments_per_hour):
    project = ProjectFactory()
    annotator = AnnotatorFactory()
    judge(annotator, project, "a", ms=None)
    for ms in times_ms:
        judge(annotator, project, "b", ms=ms)
    [row] = annotator_statistics()
    assert (row.judgments, row.timed_judgments) == (len(times_ms) + 1, len(times_ms))
    assert (row.median_seconds, row.judgments_per_hour) == (median_seconds, judgments_per_hour)


@pytest.mark.parametrize(
    ("ranking", "strict_preferences", "left_share"),
    [
        ([1, 2, 3, 4], 1, 1.0),
        ([1, 2, 2, 3], 1, 1.0),
        ([4, 3, 2, 1], 1, 0.0),
        ([1, 1, 2, 3], 0, None),
        ([2, 1, 1, 3], 0, None),
        ([1, 1, 1, 1], 0, None),
    ],
)
def test_a_ranking_prefers_the_left_response_only_when_it_alone_is_first(
    ranking, strict_preferences, left_share
):
    project = ProjectFactory(comparison_mode="ranking", responses_per_comparison=4)
    judge(AnnotatorFactory(), project, "ranked", ranking=ranking)
    [row] = annotator_statistics()
    assert (row.strict_preferences, row.left_share) == (strict_preferences, left_share)


def test_eight_way_ranking_reads_every_position():
    project = ProjectFactory(comparison_mode="ranking", responses_per_comparison=8)
    annotator = AnnotatorFactory()
    judge(annotator, project, "ranked", ranking=[1, 2, 3, 4, 5, 6, 7, 1])  # tie for first at the last place
    judge(annotator, project, "ranked", ranking=[1, 2, 3, 4, 5, 6, 7, 8])
    [row] = annotator_statistics()
    assert (row.judgments, row.strict_preferences, row.left_share) == (2, 1, 1.0)


def test_one_annotator_in_two_projects_is_two_rows_and_projects_filter():
    first, second = ProjectFactory(name="first"), ProjectFactory(name="second")
    annotator = AnnotatorFactory(username="carol")
    judge(annotator, first, "a", ms=2000)
    judge(annotator, second, "b", ms=4000)
    judge(annotator, second, "tie", ms=6000)
    assert [(row.project_name, row.judgments, row.left_share) for row in annotator_statistics()] == [
        ("first", 1, 1.0),
        ("second", 2, 0.0),
    ]
    [only] = annotator_statistics(projects=[second])
    assert (only.project_id, only.judgments, only.median_seconds, only.tie_rate) == (second.pk, 2, 5.0, 0.5)
    assert annotator_statistics(projects=Project.objects.filter(name="second")) == [only]
    assert annotator_statistics(projects=Project.objects.none()) == []


def test_since_counts_judgments_from_that_moment_on():
    project = ProjectFactory()
    annotator = AnnotatorFactory()
    start = timezone.now().replace(microsecond=0)
    for hours_before, choice in [(2, "a"), (1, "b"), (0, "tie")]:
        judgment = judge(annotator, project, choice)
        Judgment.objects.filter(pk=judgment.pk).update(created_at=start - timedelta(hours=hours_before))
    [row] = annotator_statistics(since=start - timedelta(hours=1))
    assert (row.judgments, row.left_share, row.tie_rate) == (2, 0.0, 0.5)
    assert annotator_statistics(since=start + timedelta(seconds=1)) == []


SQLITE_SCRIPT = r"""
import json
from dataclasses import asdict

import django

django.setup()
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import setup_test_environment

from annotate.statistics import annotator_statistics
from tests.annotate.test_admin_statistics import scenario

setup_test_environment()  # the test client records the context the page was rendered with
call_command("migrate", verbosity=0)
expected = scenario()
client = Client()
client.force_login(get_user_model().objects.create_superuser("root", password="x"))
page = client.get("/admin/annotate/annotatorstatistics/")
print(json.dumps({
    "vendor": connection.vendor,
    "actual": [asdict(row) for row in annotator_statistics()],
    "expected": [asdict(row) for row in expected],
    "status": page.status_code,
    "rows": page.context["rows"],
}))
"""


def test_sqlite_gives_the_same_statistics_as_postgresql(tmp_path):
    """The demo's configuration: a SQLite file, where the median is the aggregate `annotate` registers."""
    result = python_script(
        SQLITE_SCRIPT,
        DJANGO_SETTINGS_MODULE="feedback.settings",
        DATABASE_URL=f"sqlite:///{tmp_path / 'statistics.sqlite3'}",
        RANKWISE_VAR_DIR=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["vendor"] == "sqlite"
    assert report["actual"] == report["expected"]
    assert [row["median_seconds"] for row in report["actual"]] == [2.5, 6.0, None]
    assert report["status"] == 200
    assert report["rows"] == [list(row) for row in EXPECTED_PAGE_ROWS]


# --- The admin page -------------------------------------------------------------------------------------

EXPECTED_PAGE_ROWS = [
    ("alice", "pairs", "6", "960.0", "2.5", "75.0% of 4", "16.7%", "16.7%"),
    ("alice", "ranks", "4", "450.0", "6.0", "66.7% of 3", "0.0%", "0.0%"),
    ("bob", "pairs", "2", "—", "—", "—", "50.0%", "50.0%"),
]


def test_the_statistics_page_shows_every_annotator_and_project(admin_client):
    scenario()
    response = admin_client.get(STATISTICS_URL)
    assert response.status_code == 200
    assert response.context["rows"] == EXPECTED_PAGE_ROWS
    page = response.content.decode()
    assert (
        "<tr><td>alice</td><td>pairs</td><td>6</td><td>960.0</td><td>2.5</td><td>75.0% of 4</td>"
        "<td>16.7%</td><td>16.7%</td></tr>"
    ) in page
    assert "The median time on the page per judgment" in page
    assert response.context["filter_error"] == ""


def test_the_project_filter_narrows_the_page(admin_client):
    scenario()
    ranks = Project.objects.get(name="ranks")
    response = admin_client.get(STATISTICS_URL, {"project": ranks.pk})
    assert response.status_code == 200
    assert response.context["rows"] == [EXPECTED_PAGE_ROWS[1]]
    assert response.context["title"] == "Annotator statistics for ranks"
    assert f'<option value="{ranks.pk}" selected>ranks</option>' in response.content.decode()


@pytest.mark.parametrize("value", ["abc", "999999", "1 OR 1=1", "<b>x</b>"])
def test_an_unknown_project_shows_every_project_and_says_so(admin_client, value):
    scenario()
    response = admin_client.get(STATISTICS_URL, {"project": value})
    assert response.status_code == 200
    assert response.context["rows"] == EXPECTED_PAGE_ROWS
    assert response.context["filter_error"] == f"There is no project {value!r}: showing every project."
    assert "<b>x</b>" not in response.content.decode()


def test_user_data_is_escaped_on_the_statistics_page(admin_client):
    judge(AnnotatorFactory(username="<script>x</script>"), ProjectFactory(name="<b>bold</b> & co"), "a")
    page = admin_client.get(STATISTICS_URL).content.decode()
    assert "<td>&lt;script&gt;x&lt;/script&gt;</td><td>&lt;b&gt;bold&lt;/b&gt; &amp; co</td>" in page
    assert "<script>x</script>" not in page
    assert "<b>bold</b>" not in page


def test_the_statistics_page_is_read_only(admin_client):
    judgment = judge(AnnotatorFactory(), ProjectFactory(), "a")
    assert admin_client.get(reverse("admin:annotate_annotatorstatistics_add")).status_code == 403
    assert admin_client.post(reverse("admin:annotate_annotatorstatistics_add"), {}).status_code == 403
    for view in ("change", "delete", "history"):
        url = reverse(f"admin:annotate_annotatorstatistics_{view}", args=[judgment.pk])
        assert admin_client.get(url).status_code == 403, view
    assert Judgment.objects.filter(pk=judgment.pk).exists()
    index = admin_client.get(reverse("admin:index")).content.decode()
    assert f'href="{STATISTICS_URL}"' in index
    assert 'href="/admin/annotate/annotatorstatistics/add/"' not in index


@pytest.mark.parametrize("who", ["anonymous", "annotator"])
def test_non_staff_are_sent_to_the_admin_login(request, who):
    client = Client() if who == "anonymous" else request.getfixturevalue("annotator_client")
    response = client.get(STATISTICS_URL)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


@pytest.mark.parametrize(
    ("permission", "status"),
    [(None, 403), ("view_judgment", 200), ("view_annotatorstatistics", 200), ("view_assignment", 403)],
)
def test_staff_need_a_permission_to_read_judgments(permission, status):
    staff = UserFactory(username="staff-member", is_staff=True)
    if permission:
        staff.user_permissions.add(Permission.objects.get(codename=permission))
    assert logged_in_client(staff).get(STATISTICS_URL).status_code == status


# --- Judgments and open leases on the comparison admin ---------------------------------------------------


def inline_group(page: str, prefix: str) -> str:
    """The HTML of one inline on a change page, without the whitespace between tags."""
    group = page[page.index(f'id="{prefix}-group"') :]
    group = group[: group.index("</fieldset>")]
    return re.sub(r">\s+", ">", re.sub(r"\s+<", "<", group))


def test_a_comparison_shows_its_judgments_and_only_its_open_leases(admin_client):
    comparison = ComparisonFactory(judgment_count=1, lease_count=2)
    JudgmentFactory(
        comparison=comparison,
        annotator=AnnotatorFactory(username="judge-1"),
        choice="b",
        ranking=[2, 1],
        time_spent_ms=2500,
        rationale="<b>B</b> answers the question",
        flags=["off_topic"],
    )
    now = timezone.now()
    overdue = AssignmentFactory(
        comparison=comparison,
        annotator=AnnotatorFactory(username="overdue-holder"),
        leased_at=now - timedelta(hours=1),
        expires_at=now - timedelta(minutes=1),
    )
    holding = AssignmentFactory(comparison=comparison, annotator=AnnotatorFactory(username="holder"))
    AssignmentFactory(
        comparison=comparison,
        annotator=AnnotatorFactory(username="finisher"),
        state=Assignment.State.SUBMITTED,
        finished_at=now,
    )
    AssignmentFactory(comparison=ComparisonFactory(), annotator=AnnotatorFactory(username="elsewhere"))

    response = admin_client.get(reverse("admin:feedback_comparison_change", args=[comparison.pk]))
    assert response.status_code == 200
    shown = {
        type(inline.opts).__name__: [form.original for form in inline]
        for inline in response.context["inline_admin_formsets"]
    }
    assert [judgment.annotator.username for judgment in shown["JudgmentInline"]] == ["judge-1"]
    assert shown["AssignmentInline"] == [overdue, holding]
    inline = AssignmentInline(Comparison, admin.site)
    assert [inline.overdue(lease) for lease in shown["AssignmentInline"]] == [True, False]

    page = response.content.decode()
    judgments = inline_group(page, "judgments")
    assert "judge-1" in judgments
    assert '<td class="field-time_spent"><p>2.5</p></td>' in judgments
    assert "&lt;b&gt;B&lt;/b&gt; answers the question" in judgments
    assert "<b>B</b>" not in page
    assert '<td class="field-ranking"><p>[2, 1]</p></td>' in judgments
    assert '<td class="field-flags"><p>[&quot;off_topic&quot;]</p></td>' in judgments
    leases = inline_group(page, "assignments")
    assert "Open leases" in leases
    assert "overdue-holder" in leases
    assert "holder" in leases
    assert "finisher" not in leases
    assert "elsewhere" not in page
    assert 'alt="True"' in leases
    assert 'alt="False"' in leases


def test_the_comparison_list_shows_open_leases_next_to_judgments(admin_client):
    ComparisonFactory(judgment_count=1, lease_count=2, required_judgments=4)
    page = admin_client.get(reverse("admin:feedback_comparison_changelist")).content.decode()
    assert '<td class="field-judgments">1/4</td><td class="field-open_leases">2</td>' in page
    assert "Open leases" in page


def test_the_comparison_counters_are_not_editable(admin_client):
    comparison = ComparisonFactory()
    response = admin_client.get(reverse("admin:feedback_comparison_change", args=[comparison.pk]))
    assert sorted(response.context["adminform"].form.fields) == ["required_judgments", "status"]
    assert admin_client.get(reverse("admin:feedback_comparison_add")).status_code == 403
    assert (
        admin_client.get(
            reverse("admin:feedback_assignment_change", args=[AssignmentFactory().pk])
        ).status_code
        == 200
    )
    assert Comparison.objects.get(pk=comparison.pk).lease_count == 0


def test_retiring_a_comparison_never_writes_back_counters_that_moved_meanwhile(admin_client):
    comparison = ComparisonFactory(required_judgments=3)
    url = reverse("admin:feedback_comparison_change", args=[comparison.pk])
    admin_client.get(url)
    # Meanwhile an annotator takes a lease and another submits.
    Comparison.objects.filter(pk=comparison.pk).update(judgment_count=1, lease_count=1)
    response = admin_client.post(url, {"status": "retired", "required_judgments": 3, **empty_inline_forms()})
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Comparison.objects.values_list("status", "judgment_count", "lease_count").get(
        pk=comparison.pk
    ) == (
        "retired",
        1,
        1,
    )


def test_the_overlap_cannot_drop_below_what_is_already_taken(admin_client):
    comparison = ComparisonFactory(required_judgments=3, judgment_count=1, lease_count=1)
    url = reverse("admin:feedback_comparison_change", args=[comparison.pk])
    response = admin_client.post(url, {"status": "open", "required_judgments": 1, **empty_inline_forms()})
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["required_judgments"] == [
        "This comparison already has 1 judgments and 1 open leases; it cannot require fewer than 2."
    ]
    assert Comparison.objects.get(pk=comparison.pk).required_judgments == 3


def empty_inline_forms() -> dict[str, int]:
    """Management forms of the comparison page's read-only inlines, as the browser posts them."""
    return {
        f"{prefix}-{field}": value
        for prefix in ("entries", "judgments", "assignments")
        for field, value in (
            ("TOTAL_FORMS", 0),
            ("INITIAL_FORMS", 0),
            ("MIN_NUM_FORMS", 0),
            ("MAX_NUM_FORMS", 0),
        )
    }
