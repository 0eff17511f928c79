"""A project's quality page in the admin: the newest stored figures with their charts (inline SVG drawn
on the server, deterministic, nothing that runs or loads) and their numbers in tables, "Compute now",
and who may see it."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from feedback.admin.charts import AccuracyPoint, ShareBar, accuracy_volume_svg, first_share_svg
from feedback.admin.quality import CHART_MAX_ANNOTATORS
from feedback.models import (
    AnnotatorQuality,
    AnnotatorStanding,
    Comparison,
    Project,
    ProjectMembership,
    ProjectQuality,
)
from feedback.services.quality import project_quality_refresh
from feedback.services.standing import annotator_suspend
from tests.annotate.test_gold import gold_items, right_answer, wrong_answer
from tests.conftest import logged_in_client
from tests.factories import AnnotatorFactory, ComparisonFactory, JudgmentFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db

RANKINGS = {"a": [1, 2], "b": [2, 1], "tie": [1, 1], "both_bad": [1, 1]}
HOSTILE = "<script>alert(1)</script>"


def quality_url(project: Project) -> str:
    return reverse("admin:feedback_project_quality", args=[project.pk])


def table(page: str, table_id: str) -> list[list[str]]:
    """The body rows of the table with this id, each cell's text as a reader sees it."""
    body = re.search(rf'<table id="{table_id}">.*?<tbody>(.*?)</tbody>', page, re.S)
    assert body, table_id

    def text(cell: str) -> str:
        return " ".join(html.unescape(re.sub(r"<[^>]+>", "", cell.replace("</li>", " "))).split())

    return [
        [text(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body.group(1), re.S)
    ]


def charts(page: str) -> list[str]:
    return re.findall(r"<svg role=\"img\" .*?</svg>", page, re.S)


@pytest.fixture
def judged_project(admin_user):
    """A pairwise project: 22 comparisons judged by three annotators (one named like a script, one
    suspended by hand), a gold item two of them answered, and its figures computed once."""
    project = ProjectFactory(name="Judged", slug="judged")
    people = [AnnotatorFactory(username=name) for name in ("ann", "bea", HOSTILE)]
    project.members.add(*people)
    ProjectMembership.objects.filter(project=project, user=people[1]).update(role="reviewer")
    answers = {
        "ann": "aabbaabbab" * 3,
        "bea": "aabbabbbab" * 3,
        HOSTILE: "aaaaaaaaab" * 3,
    }
    for index in range(22):
        comparison = ComparisonFactory(prompt__project=project)
        for person in people:
            choice = answers[person.username][index]
            JudgmentFactory(
                comparison=comparison,
                annotator=person,
                choice=choice,
                ranking=RANKINGS[choice],
                strength=1,
                time_spent_ms=30_000 + 1000 * index,
            )
    (gold,) = gold_items(project, 1)
    right, wrong = right_answer(gold).choice, wrong_answer(gold).choice
    JudgmentFactory(comparison=gold, annotator=people[0], choice=right, ranking=RANKINGS[right], strength=1)
    JudgmentFactory(comparison=gold, annotator=people[2], choice=wrong, ranking=RANKINGS[wrong], strength=1)
    annotator_suspend(project_id=project.pk, annotator_id=people[2].pk, actor=admin_user, reason="Clicks A.")
    project_quality_refresh(project_id=project.pk)
    return project


def test_without_figures_the_page_says_so_and_offers_compute_now(admin_client):
    project = ProjectFactory()
    response = admin_client.get(quality_url(project))
    assert response.status_code == 200
    page = response.content.decode()
    assert "No quality figures have been computed for this project yet." in page
    assert '<input type="submit" class="default" value="Compute now">' in page
    assert 'name="csrfmiddlewaretoken"' in page
    assert charts(page) == []
    assert 'id="annotator-figures"' not in page


def test_compute_now_stores_the_figures_and_comes_back_to_the_page(admin_client):
    project = ProjectFactory(name="Fresh")
    comparison = ComparisonFactory(prompt__project=project)
    JudgmentFactory(comparison=comparison, annotator=AnnotatorFactory(username="solo"))
    response = admin_client.post(quality_url(project), follow=True)
    assert response.redirect_chain == [(quality_url(project), 302)]
    quality = ProjectQuality.objects.get(project=project)
    assert [str(message) for message in response.context["messages"]] == [
        f"Quality figures of Fresh computed from 1 judgment(s) in {quality.seconds:.2f} s."
    ]
    page = response.content.decode()
    assert "No judgment has come in since." in page
    assert table(page, "annotator-figures")[0][:4] == ["solo", "— · Active", "1", "0/0 · —"]


def test_compute_now_needs_the_csrf_token(admin_user):
    project = ProjectFactory()
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    assert client.post(quality_url(project)).status_code == 403
    assert not ProjectQuality.objects.exists()


def test_the_page_says_when_the_figures_were_computed_and_what_is_newer(admin_client, judged_project):
    quality = ProjectQuality.objects.get(project=judged_project)
    page = admin_client.get(quality_url(judged_project)).content.decode()
    assert f"from the judgments up to #{quality.high_water_mark}." in page
    assert "No judgment has come in since." in page
    comparison = Comparison.objects.filter(project=judged_project, is_gold=False).first()
    JudgmentFactory(comparison=comparison, annotator=AnnotatorFactory(username="late"), choice="a")
    page = admin_client.get(quality_url(judged_project)).content.decode()
    assert "<strong>1 newer judgment is not included yet.</strong>" in page


def test_the_tables_hold_the_stored_figures(admin_client, judged_project):
    page = admin_client.get(quality_url(judged_project)).content.decode()
    report = ProjectQuality.objects.get(project=judged_project).report
    rows = {row.annotator.username: row for row in AnnotatorQuality.objects.filter(project=judged_project)}

    def alpha(value):
        return "—" if value is None else f"{value:.3f}"

    measures = report["alpha"]
    assert table(page, "alpha-by-measure") == [
        [name, alpha(measures[key]["value"]), str(measures[key]["units"]), str(measures[key]["values"])]
        for key, name in [
            ("choice", "Choice (nominal)"),
            ("strength", "Signed strength (ordinal)"),
            *[
                (f"axis:{key}", f"Rating: {label} (interval)")
                for key, label in [
                    ("instruction_following", "Instruction following"),
                    ("helpfulness", "Helpfulness and relevance"),
                    ("format", "Format and structure"),
                    ("tone", "Tone and style"),
                    ("safety", "Safety"),
                ]
            ],
        ]
    ]
    assert measures["choice"]["units"] == 22
    assert measures["axis:tone"]["value"] is None  # no ratings given: shown as —
    explain = report["alpha_by_category"]["explain"]
    assert table(page, "alpha-by-category") == [
        ["Explain", alpha(explain["value"]), "22", str(explain["values"])]
    ]
    timeline = table(page, "alpha-over-time")
    assert [(line[1], line[2]) for line in timeline] == [
        (str(point["judgments"]), alpha(point["value"])) for point in report["alpha_over_time"]
    ]
    assert timeline[-1][1] == "66"

    lines = table(page, "annotator-figures")
    figures = {line[0]: line for line in lines if len(line) == 8}
    assert list(figures) == [HOSTILE, "ann", "bea"]  # busiest first, then by name ("<" before "a")
    ann, hostile = rows["ann"], rows[HOSTILE]
    assert figures["ann"] == [
        "ann",
        "annotator · Active",
        "22",
        f"1/1 · 100% ({ann.gold_low:.0%}–100%)",
        f"{ann.majority_agreed}/{ann.majority_compared} · {ann.majority_kappa:.2f}",
        f"{ann.first_share:.0%} of {ann.decisive} · p {ann.first_p_value:.3f}",
        f"{ann.median_seconds:.1f}",
        "—",
    ]
    assert figures["bea"][1:4] == ["reviewer · Active", "22", "0/0 · —"]
    assert figures[HOSTILE][1:4] == ["annotator · Suspended", "22", f"0/1 · 0% (0%–{hostile.gold_high:.0%})"]
    assert [anomaly["code"] for anomaly in hostile.anomalies] == [
        "one_choice",
        "position_bias",
        "low_agreement",
    ]
    assert figures[HOSTILE][-1] == "One choice, Position bias, Low agreement"
    reasons = [anomaly["reason"] for anomaly in hostile.anomalies]
    # The reasons in full, in a row of their own under the annotator's.
    assert lines[1] == [f"One choice: {reasons[0]} Position bias: {reasons[1]} Low agreement: {reasons[2]}"]
    assert len(lines) == 4

    names = {row.annotator_id: name for name, row in rows.items()}
    pairs = sorted(report["kappa"]["pairs"], key=lambda pair: pair["kappa"])
    assert len(pairs) == 3
    assert table(page, "kappa-pairs") == [
        [
            names[pair["first"]],
            names[pair["second"]],
            "22",
            f"{pair['agreement']:.0%}",
            f"{pair['kappa']:.2f}",
        ]
        for pair in pairs
    ]
    shares = sorted(rows.values(), key=lambda row: (-row.first_share, row.annotator.username))
    assert table(page, "first-position") == [
        [
            row.annotator.username,
            f"{row.first_share:.0%} of {row.decisive}",
            f"{row.first_p_value:.3f}" if row.first_p_value >= 0.001 else "< 0.001",
        ]
        for row in shares
    ]
    bias = report["position_bias"]
    assert (
        f"the response shown first ahead in {bias['share']:.0%} of {bias['decisive']} decisive judgments, where "
        f"chance is 50% (p {bias['p_value']:.3f})" in " ".join(page.split())
    )
    assert len(charts(page)) == 4


def test_untrusted_usernames_and_reasons_are_escaped_in_tables_and_charts(admin_client, judged_project):
    page = admin_client.get(quality_url(judged_project)).content.decode()
    assert "<script" not in page.replace('<script src="', "")  # the admin's own scripts are files
    assert "alert(1)</script>" not in page
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert page.count(escaped) >= 6  # the annotator table, kappa table, bar table, and three charts
    for chart in charts(page):
        assert "<script" not in chart
    assert (
        sum(escaped in chart for chart in charts(page)) == 3
    )  # heatmap, bars, accuracy (suspended: labelled)


def test_the_charts_are_inline_svg_that_loads_nothing_and_repeats_byte_for_byte(admin_client, judged_project):
    first = charts(admin_client.get(quality_url(judged_project)).content.decode())
    second = charts(admin_client.get(quality_url(judged_project)).content.decode())
    assert len(first) == 4
    assert first == second
    ids = []
    for chart in first:
        assert re.search(r"<(script|image|foreignObject|iframe)\b", chart) is None
        assert re.search(r"\son\w+=", chart) is None
        assert [
            target for target in re.findall(r'(?:href="|url\()([^")]*)', chart) if not target.startswith("#")
        ] == []
        assert "<metadata>" not in chart
        assert "<?xml" not in chart
        ids += re.findall(r'\sid="([^"]+)"', chart)
    assert len(ids) == len(set(ids))  # several charts on one page share no id
    prefixes = {chart_id.split("-")[0] for chart_id in ids}
    assert prefixes == {"alpha", "gold", "kappa", "first"}


def test_a_chart_is_the_same_bytes_for_the_same_figures_and_changes_with_them():
    points = [
        AccuracyPoint("ann", 30, 0.9, 0.75, 0.97, "active"),
        AccuracyPoint("bo", 12, 0.4, 0.2, 0.65, "suspended"),
    ]
    one = accuracy_volume_svg(points, warn_accuracy=0.8, suspend_accuracy=0.6)
    assert accuracy_volume_svg(points, warn_accuracy=0.8, suspend_accuracy=0.6) == one
    assert accuracy_volume_svg(points[:1], warn_accuracy=0.8, suspend_accuracy=0.6) != one
    bars = first_share_svg([ShareBar("$x^2$ {bad", 0.5, 10, False)], expected=0.5)
    assert ">$x^2$ {bad</text>" in bars  # a dollar sign is text, not mathematics


def stored_quality(project: Project, people: list, pairs: list[dict]) -> None:
    """Figures written as the service would store them, for a reader's test with exact numbers."""
    now = timezone.now()
    ProjectQuality.objects.create(
        project=project,
        computed_at=now - timedelta(hours=2),
        seconds=0.5,
        high_water_mark=0,
        report={
            "judgments": 100,
            "comparisons": 40,
            "annotators": len(people),
            "alpha": {"choice": {"value": 0.41234, "units": 40, "values": 100}},
            "alpha_by_category": {"code": {"value": None, "units": 1, "values": 2}},
            "alpha_over_time": [
                {
                    "until": (now - timedelta(days=1)).isoformat(),
                    "judgments": 50,
                    "value": None,
                    "units": 1,
                    "values": 2,
                },
                {"until": now.isoformat(), "judgments": 100, "value": 0.41234, "units": 40, "values": 100},
            ],
            "kappa": {"min_shared": 20, "pairs": pairs},
            "position_bias": {
                "first": 60,
                "decisive": 90,
                "expected": 0.5,
                "share": 60 / 90,
                "p_value": 0.0021,
            },
            "gold": {"items": 4, "answered": 10, "correct": 7},
        },
    )
    AnnotatorQuality.objects.bulk_create(
        AnnotatorQuality(
            project=project,
            annotator=person,
            computed_at=now,
            judgments=100 - index,
            decisive=10,
            first_chosen=5,
            first_share=0.5,
            first_p_value=1.0,
        )
        for index, person in enumerate(people)
    )


def test_stored_figures_are_shown_as_stored(admin_client):
    project = ProjectFactory()
    people = [UserFactory(username=name) for name in ("kim", "lou")]
    stored_quality(
        project,
        people,
        [{"first": people[0].pk, "second": people[1].pk, "shared": 21, "agreement": 0.8095, "kappa": 0.6123}],
    )
    page = admin_client.get(quality_url(project)).content.decode()
    assert "(2\xa0hours ago) in 0.50 s" in page
    assert table(page, "alpha-by-measure") == [["Choice (nominal)", "0.412", "40", "100"]]
    assert table(page, "alpha-by-category") == [["Code", "—", "1", "2"]]
    assert [line[1:] for line in table(page, "alpha-over-time")] == [["50", "—", "1"], ["100", "0.412", "40"]]
    assert table(page, "kappa-pairs") == [["kim", "lou", "21", "81%", "0.61"]]
    assert table(page, "first-position") == [["kim", "50% of 10", "1.000"], ["lou", "50% of 10", "1.000"]]
    assert table(page, "annotator-figures")[1] == [
        "lou",
        "— · Active",
        "99",
        "0/0 · —",
        "0/0 · —",
        "50% of 10 · p 1.000",
        "—",
        "—",
    ]
    summary = " ".join(page.split())
    assert "<dt>Gold answers correct</dt><dd>7/10 (70%)</dd>" in summary
    assert "ahead in 67% of 90 decisive judgments, where chance is 50% (p 0.002)" in summary
    assert "No annotator has answered a gold item yet." in page


def test_the_heatmap_shows_the_busiest_annotators_and_says_so(admin_client, django_assert_max_num_queries):
    project = ProjectFactory()
    people = [UserFactory(username=f"person-{index:02}") for index in range(CHART_MAX_ANNOTATORS + 2)]
    pairs = [
        {"first": first.pk, "second": second.pk, "shared": 20, "agreement": 0.5, "kappa": 0.0}
        for position, first in enumerate(people)
        for second in people[position + 1 :]
    ]
    stored_quality(project, people, pairs)
    # Session, user, project, newest report, every annotator's figures in one, newer judgments.
    with django_assert_max_num_queries(6):
        page = admin_client.get(quality_url(project)).content.decode()
    assert f"Showing the {CHART_MAX_ANNOTATORS} busiest of {CHART_MAX_ANNOTATORS + 2} annotators" in page
    heatmap = next(chart for chart in charts(page) if 'aria-label="Cohen' in chart)
    assert ">person-39</text>" in heatmap
    assert ">person-40</text>" not in heatmap
    assert ">person-41</text>" not in heatmap
    assert len(table(page, "kappa-pairs")) == len(pairs)


def test_the_project_page_and_list_link_to_the_quality_page(admin_client):
    project = ProjectFactory()
    link = f'<a href="{quality_url(project)}">Quality</a>'
    assert (
        link in admin_client.get(reverse("admin:feedback_project_change", args=[project.pk])).content.decode()
    )
    assert link in admin_client.get(reverse("admin:feedback_project_changelist")).content.decode()


@pytest.mark.parametrize("who", ["anonymous", "annotator"])
def test_non_staff_are_sent_to_the_admin_login(request, who):
    project = ProjectFactory()
    client = Client() if who == "anonymous" else request.getfixturevalue("annotator_client")
    for response in (client.get(quality_url(project)), client.post(quality_url(project))):
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))
    assert not ProjectQuality.objects.exists()


def test_staff_need_the_projects_view_permission_to_read_and_change_to_compute():
    project = ProjectFactory()
    staff = UserFactory(username="staff", is_staff=True)
    client = logged_in_client(staff)
    assert client.get(quality_url(project)).status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="view_project"))
    client = logged_in_client(staff)
    page = client.get(quality_url(project))
    assert page.status_code == 200
    assert "Compute now" not in page.content.decode()
    assert client.post(quality_url(project)).status_code == 403
    assert not ProjectQuality.objects.exists()
    assert client.get(reverse("admin:feedback_project_quality", args=[10**9])).status_code == 404


def test_the_suspended_annotator_is_marked_in_the_chart_and_the_table(admin_client, judged_project):
    page = admin_client.get(quality_url(judged_project)).content.decode()
    assert '<tr class="suspended">' in page
    assert AnnotatorStanding.objects.get(annotator__username=HOSTILE).status == "suspended"
    accuracy = next(chart for chart in charts(page) if 'aria-label="Gold accuracy' in chart)
    assert ">suspended</text>" in accuracy
    assert ">active</text>" in accuracy
