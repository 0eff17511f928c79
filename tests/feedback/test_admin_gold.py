"""Gold items in the admin: the comparison list shows and filters them, "Mark as gold" takes the verdict
written by label (a verdict that cannot be read is a form error and changes nothing), a gold comparison's
page shows its verdict by label, and "Import gold items" lists every bad line of a refused file."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from feedback.models import Comparison, GoldVerdict, Prompt, Response
from tests.conftest import logged_in_client
from tests.factories import ComparisonFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


def mark_url(comparison: Comparison) -> str:
    return reverse("admin:feedback_comparison_gold", args=[comparison.pk])


def change_url(comparison: Comparison) -> str:
    return reverse("admin:feedback_comparison_change", args=[comparison.pk])


IMPORT_URL = "/admin/feedback/comparison/import-gold/"
# The read-only inlines' management forms, as a browser posts them with the change form.
INLINES = {
    f"{prefix}-{name}": "0"
    for prefix in ("entries", "judgments", "assignments")
    for name in ("TOTAL_FORMS", "INITIAL_FORMS")
}


def shown(comparison: Comparison) -> list[int]:
    """The comparison's response ids by display position: A, B, …"""
    return list(comparison.entries.order_by("position").values_list("response_id", flat=True))


def state(comparison: Comparison) -> tuple:
    comparison.refresh_from_db()
    verdicts = list(GoldVerdict.objects.values_list("comparison_id", "verdict", "explanation"))
    return comparison.is_gold, comparison.required_judgments, comparison.status, verdicts


def gold_file(*lines: dict | str) -> SimpleUploadedFile:
    body = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    return SimpleUploadedFile("gold.jsonl", body.encode(), content_type="application/octet-stream")


def gold_line(number: int, expected: object = "A") -> dict:
    return {
        "id": f"g-{number}",
        "prompt": f"What is {number} + {number}?",
        "responses": [f"{2 * number}.", f"{2 * number + 1}."],
        "expected": expected,
    }


def test_the_list_shows_and_filters_gold_items_and_links_to_the_import(admin_client):
    ordinary = ComparisonFactory()
    gold = ComparisonFactory(project=ordinary.project, prompt__project=ordinary.project)
    admin_client.post(mark_url(gold), {"expected": "A"})
    url = reverse("admin:feedback_comparison_changelist")
    page = admin_client.get(url).content.decode()
    assert f'href="{reverse("admin:feedback_comparison_gold_import")}"' in page
    assert '<td class="field-is_gold"><img src="/static/admin/img/icon-yes.svg" alt="True"></td>' in page
    only_gold = admin_client.get(url, {"is_gold__exact": "1"}).context["cl"].result_list
    assert [comparison.pk for comparison in only_gold] == [gold.pk]


@pytest.mark.parametrize(
    ("text", "accepted"),
    [
        ("A", ["{A}"]),
        ("b", ["{B}"]),
        ("A, tie", ["{A}", "tie"]),
        ("B or both bad", ["{B}", "both_bad"]),
    ],
)
def test_marking_a_comparison_gold_stores_the_verdict_by_response(admin_client, admin_user, text, accepted):
    comparison = ComparisonFactory(required_judgments=3)
    labels = dict(zip("AB", map(str, shown(comparison)), strict=True))
    response = admin_client.post(
        mark_url(comparison), {"expected": text, "explanation": "B cites <sources>."}
    )
    assert response.status_code == 302
    assert response["Location"] == change_url(comparison)
    is_gold, required, status, verdicts = state(comparison)
    assert (is_gold, required, status) == (True, None, "open")
    expected = sorted(outcome.format(**labels) for outcome in accepted)
    assert verdicts == [(comparison.pk, {"accepted": expected}, "B cites <sources>.")]
    assert GoldVerdict.objects.get().created_by == admin_user


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        ("", "expected", "This field is required."),
        ("C", None, "'C' is not a response here; use one of A, B."),
        ("A, B", None, "Accepting every response as better accepts any preference: that is no test."),
        ("A,,tie", "expected", "'A,,tie' has an empty outcome between its separators."),
        ("A or A", None, "'A' is accepted twice."),
    ],
)
def test_a_verdict_that_cannot_be_read_is_a_form_error_and_changes_nothing(
    admin_client, text, field, message
):
    comparison = ComparisonFactory()
    before = state(comparison)
    response = admin_client.post(mark_url(comparison), {"expected": text})
    assert response.status_code == 200
    form = response.context["form"]
    assert (form.non_field_errors() if field is None else form.errors[field]) == [message]
    assert state(comparison) == before
    assert before[0] is False


def test_a_tie_where_the_project_allows_none_and_a_retired_comparison_are_refused(admin_client):
    comparison = ComparisonFactory(prompt__project=ProjectFactory(allows_tie=False))
    response = admin_client.post(mark_url(comparison), {"expected": "A, tie"})
    assert response.context["form"].non_field_errors() == [
        "This project does not allow ties, so a tie cannot be expected."
    ]
    Comparison.objects.filter(pk=comparison.pk).update(status=Comparison.Status.RETIRED)
    response = admin_client.post(mark_url(comparison), {"expected": "A"})
    assert response.context["form"].non_field_errors() == [
        "A retired comparison cannot become gold: it is served to nobody."
    ]
    assert state(comparison) == (False, 3, "retired", [])


def test_a_ranking_verdict_is_written_as_an_order_with_ties(admin_client):
    project = ProjectFactory(comparison_mode="ranking", responses_per_comparison=3, strength_labels=[])
    comparison = ComparisonFactory(prompt__project=project, with_responses=3)
    a, b, c = map(str, shown(comparison))
    assert admin_client.post(mark_url(comparison), {"expected": "C > A = B"}).status_code == 302
    assert GoldVerdict.objects.get().verdict == {"ranks": {c: 1, a: 2, b: 2}}
    assert admin_client.post(mark_url(comparison), {"expected": "b best"}).status_code == 302
    assert GoldVerdict.objects.get().verdict == {"best": b}
    response = admin_client.post(mark_url(comparison), {"expected": "C > A"})
    assert response.context["form"].non_field_errors() == ["The order must place every response; missing: B."]
    assert GoldVerdict.objects.get().verdict == {"best": b}


def test_a_gold_comparisons_page_shows_its_verdict_by_label_and_the_form_starts_from_it(admin_client):
    comparison = ComparisonFactory()
    admin_client.post(mark_url(comparison), {"expected": "B, tie", "explanation": "A <b>invents</b> a date."})
    page = admin_client.get(change_url(comparison)).content.decode()
    assert "<strong>B or tie</strong>" in page
    assert "A &lt;b&gt;invents&lt;/b&gt; a date." in page
    assert "Written by admin-user, last changed " in page
    assert 'name="required_judgments"' not in page  # read-only: any number of annotators answer gold
    assert f'<a href="{mark_url(comparison)}">Change the gold verdict</a>' in page
    form = admin_client.get(mark_url(comparison)).context["form"]
    assert form.initial == {"expected": "B or tie", "explanation": "A <b>invents</b> a date."}
    assert (
        admin_client.post(mark_url(comparison), {"expected": "B or tie", "explanation": ""}).status_code
        == 302
    )
    assert GoldVerdict.objects.get().verdict == {"accepted": sorted([str(shown(comparison)[1]), "tie"])}


def test_the_mark_page_shows_the_responses_by_label_escaped(admin_client):
    comparison = ComparisonFactory()
    first = comparison.entries.get(position=0).response
    first.text = "<script>alert(1)</script>"
    first.save()
    page = admin_client.get(mark_url(comparison)).content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)" not in page
    assert (
        f'<a href="{mark_url(comparison)}">Mark as gold</a>'
        in admin_client.get(change_url(comparison)).content.decode()
    )


def test_a_gold_comparison_cannot_be_completed_from_its_page(admin_client):
    comparison = ComparisonFactory()
    admin_client.post(mark_url(comparison), {"expected": "A"})
    before = state(comparison)
    response = admin_client.post(change_url(comparison), {"status": "completed", **INLINES})
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["status"] == [
        "A gold comparison never completes; retire it to stop serving it."
    ]
    assert state(comparison) == before
    assert admin_client.post(change_url(comparison), {"status": "retired", **INLINES}).status_code == 302
    assert state(comparison)[:3] == (True, None, "retired")


def test_an_ordinary_comparison_keeps_its_number_of_judgments(admin_client):
    comparison = ComparisonFactory()
    response = admin_client.post(
        change_url(comparison), {"status": "open", "required_judgments": "", **INLINES}
    )
    assert response.context["adminform"].form.errors["required_judgments"] == [
        "Say how many annotators judge this comparison."
    ]
    assert state(comparison) == (False, 3, "open", [])


def test_importing_a_good_gold_file(admin_client):
    project = ProjectFactory(name="Maths")
    response = admin_client.post(
        IMPORT_URL,
        {"project": project.pk, "file": gold_file(gold_line(1), gold_line(2, ["B", "tie"]))},
        follow=True,
    )
    changelist = reverse("admin:feedback_comparison_changelist")
    assert response.redirect_chain == [
        (f"{changelist}?is_gold__exact=1&project__id__exact={project.pk}", 302)
    ]
    assert [str(message) for message in response.context["messages"]] == [
        "gold.jsonl into Maths: 2 gold item(s) imported, 0 already there."
    ]
    assert Comparison.objects.filter(project=project, is_gold=True).count() == 2
    again = admin_client.post(
        IMPORT_URL, {"project": project.pk, "file": gold_file(gold_line(1))}, follow=True
    )
    assert [str(message) for message in again.context["messages"]] == [
        "gold.jsonl into Maths: 0 gold item(s) imported, 1 already there."
    ]
    assert GoldVerdict.objects.count() == 2


def test_a_bad_gold_file_lists_every_bad_line_and_stores_nothing(admin_client):
    project = ProjectFactory()
    response = admin_client.post(
        IMPORT_URL,
        {
            "project": project.pk,
            "file": gold_file(
                gold_line(1),
                "{oops",
                gold_line(3, "C"),
                {"id": "g-4", "prompt": "Hi", "responses": ["same", "same"], "expected": "A"},
            ),
        },
    )
    assert response.status_code == 200
    assert response.context["form"].errors["file"] == [
        "gold.jsonl: 3 bad line(s); nothing was imported",
        "line 2: bad JSON: Expecting property name enclosed in double quotes (column 2)",
        "line 3: expected: 'C' is not a response here; use one of A, B.",
        "line 4: two responses are the same text: nothing to choose between",
    ]
    assert "line 3: expected: &#x27;C&#x27; is not a response here" in response.content.decode()
    assert (Comparison.objects.count(), Prompt.objects.count(), Response.objects.count()) == (0, 0, 0)


def test_gold_pages_need_the_permission_to_write_gold_verdicts(annotator_client):
    comparison = ComparisonFactory()
    staff = UserFactory(username="viewer", is_staff=True)
    staff.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_comparison", "change_comparison"])
    )
    client = logged_in_client(staff)
    assert client.get(mark_url(comparison)).status_code == 403
    assert client.post(mark_url(comparison), {"expected": "A"}).status_code == 403
    assert (
        client.post(
            IMPORT_URL, {"project": comparison.project_id, "file": gold_file(gold_line(1))}
        ).status_code
        == 403
    )
    assert "Mark as gold" not in client.get(change_url(comparison)).content.decode()
    assert (
        "Import gold items"
        not in client.get(reverse("admin:feedback_comparison_changelist")).content.decode()
    )
    for anybody in (Client(), annotator_client):
        assert anybody.post(mark_url(comparison), {"expected": "A"})["Location"].startswith(
            reverse("admin:login")
        )
    assert state(comparison) == (False, 3, "open", [])
    assert Comparison.objects.count() == 1
