"""The admin renders every page for staff, refuses everyone else, and keeps judgments read-only."""

import io
import json

import pytest
from django import forms
from django.contrib import admin
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from feedback.admin.settings_fields import LinesField
from feedback.export.options import ExportOptions
from feedback.models import (
    AnnotatorStanding,
    Assignment,
    Comparison,
    Export,
    Judgment,
    PolicyCheckpoint,
    Project,
    Prompt,
    StandingChange,
    conversation_hash,
    default_rating_rubric,
    default_strength_labels,
)
from feedback.services.exports import export_create, export_run
from feedback.services.prompts import prompts_import
from feedback.services.standing import annotator_suspend
from feedback.services.tokens import api_token_create
from tests.factories import (
    AdminFactory,
    AssignmentFactory,
    ComparisonFactory,
    JudgmentFactory,
    ProjectFactory,
    PromptFactory,
    ResponseFactory,
)

pytestmark = pytest.mark.django_db

FEEDBACK_MODELS = [model for model in admin.site._registry if model._meta.app_label == "feedback"]


@pytest.fixture
def one_of_everything(settings, tmp_path):
    """A project with a prompt, a comparison (two responses, a run, a checkpoint), a lease, a judgment,
    a suspended annotator (their standing and its change), an API token and a finished export."""
    settings.EXPORT_ROOT = tmp_path / "exports"
    judgment = JudgmentFactory()
    AssignmentFactory(comparison=judgment.comparison)
    annotator_suspend(
        project_id=judgment.comparison.project_id,
        annotator_id=judgment.annotator_id,
        actor=AdminFactory(),
        reason="Clicks A.",
    )
    api_token_create(user=judgment.annotator, name="nightly pull")
    export = export_create(options=ExportOptions.from_mapping({"format": "preference"}))
    export_run(export_id=export.pk)
    return judgment


def admin_url(model, view, *args):
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def test_every_feedback_model_is_in_the_admin():
    assert sorted(model.__name__ for model in FEEDBACK_MODELS) == [
        "AnnotatorStanding",
        "ApiToken",
        "Assignment",
        "Comparison",
        "Export",
        "GenerationRun",
        "Judgment",
        "PolicyCheckpoint",
        "Project",
        "Prompt",
        "Response",
        "StandingChange",
    ]


@pytest.mark.parametrize("model", FEEDBACK_MODELS, ids=lambda model: model.__name__)
def test_staff_see_the_list_and_change_pages_of_every_model(admin_client, one_of_everything, model):
    instance = model.objects.first()
    assert instance is not None
    assert admin_client.get(admin_url(model, "changelist")).status_code == 200
    assert admin_client.get(admin_url(model, "changelist"), {"q": "a"}).status_code == 200
    assert admin_client.get(admin_url(model, "change", instance.pk)).status_code == 200
    # Judgments, comparisons, leases and standings are written by the services only.
    expected_add = (
        403 if model in (Judgment, Comparison, Assignment, AnnotatorStanding, StandingChange) else 200
    )
    assert admin_client.get(admin_url(model, "add")).status_code == expected_add


@pytest.mark.parametrize("who", ["anonymous", "annotator"])
@pytest.mark.parametrize("model", FEEDBACK_MODELS, ids=lambda model: model.__name__)
def test_non_staff_are_sent_to_the_admin_login(request, one_of_everything, who, model):
    client = Client() if who == "anonymous" else request.getfixturevalue("annotator_client")
    for url in (admin_url(model, "changelist"), admin_url(model, "change", model.objects.first().pk)):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))


def test_judgments_cannot_be_changed_or_deleted_in_the_admin(admin_client, one_of_everything):
    judgment = one_of_everything
    response = admin_client.post(
        admin_url(Judgment, "change", judgment.pk), {"choice": "b", "ranking": "[2, 1]"}
    )
    assert response.status_code == 403
    assert admin_client.post(admin_url(Judgment, "delete", judgment.pk), {"post": "yes"}).status_code == 403
    judgment.refresh_from_db()
    assert (judgment.choice, judgment.ranking) == ("a", [1, 2])
    page = admin_client.get(admin_url(Judgment, "change", judgment.pk)).content.decode()
    assert 'name="_save"' not in page


def test_the_project_list_shows_prompts_comparisons_and_progress(admin_client):
    project = ProjectFactory(name="Progress project")
    PromptFactory.create_batch(3, project=project)
    ComparisonFactory(prompt=PromptFactory(project=project))
    ComparisonFactory(prompt=PromptFactory(project=project), status=Comparison.Status.COMPLETED)
    page = admin_client.get(admin_url(type(project), "changelist")).content.decode()
    row = page[page.index("Progress project") :]
    row = row[: row.index("</tr>")]
    assert '<td class="field-prompt_count">5</td>' in row
    assert '<td class="field-comparison_count">2</td>' in row
    assert '<td class="field-progress">1/2 (50%)</td>' in row


def test_the_project_list_query_count_does_not_grow_with_projects(
    admin_client, django_assert_max_num_queries
):
    ComparisonFactory()
    url = admin_url(ProjectFactory._meta.model, "changelist")
    with django_assert_max_num_queries(12) as few:
        admin_client.get(url)
    for _ in range(10):
        ComparisonFactory()
    with django_assert_max_num_queries(len(few.captured_queries)):
        admin_client.get(url)


def test_model_text_is_escaped_in_the_admin(admin_client):
    comparison = ComparisonFactory()
    entry = comparison.entries.get(position=0)
    entry.response.text = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    entry.response.save()
    page = admin_client.get(admin_url(Comparison, "change", comparison.pk)).content.decode()
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in page
    assert "<script>alert(" not in page
    assert "<img src=x" not in page


# --- The import page ------------------------------------------------------------------------------------


def upload(name: str, *lines: dict | str) -> SimpleUploadedFile:
    body = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    return SimpleUploadedFile(name, body.encode(), content_type="application/octet-stream")


def test_the_prompt_list_links_to_the_import_page(admin_client):
    page = admin_client.get(admin_url(Prompt, "changelist")).content.decode()
    assert f'href="{reverse("admin:feedback_prompt_import")}"' in page


def test_importing_a_good_file_from_the_admin(admin_client):
    project = ProjectFactory()
    response = admin_client.post(
        reverse("admin:feedback_prompt_import"),
        {
            "project": project.pk,
            "file": upload("p.jsonl", {"id": "a", "prompt": "Hi"}, {"id": "b", "prompt": "Yo"}),
        },
        follow=True,
    )
    assert response.redirect_chain == [
        (f"{admin_url(Prompt, 'changelist')}?project__id__exact={project.pk}", 302)
    ]
    assert [str(message) for message in response.context["messages"]] == [
        f"p.jsonl into {project}: 2 imported, 0 unchanged, 0 conflict(s) of 2 prompt(s)."
    ]
    assert set(Prompt.objects.filter(project=project).values_list("external_id", flat=True)) == {"a", "b"}


def test_a_bad_file_shows_form_errors_naming_the_lines_and_imports_nothing(admin_client):
    project = ProjectFactory()
    response = admin_client.post(
        reverse("admin:feedback_prompt_import"),
        {"project": project.pk, "file": upload("p.jsonl", {"id": "a", "prompt": "ok"}, "{oops", {"id": "c"})},
    )
    assert response.status_code == 200
    assert response.context["form"].errors["file"] == [
        "p.jsonl: 2 bad line(s); nothing was imported",
        "line 2: bad JSON: Expecting property name enclosed in double quotes (column 2)",
        "line 3: missing text: give 'prompt' (a string) or 'messages' (a list)",
    ]
    assert "line 2: bad JSON" in response.content.decode()
    assert Prompt.objects.count() == 0


def test_an_unknown_file_type_is_a_form_error(admin_client):
    project = ProjectFactory()
    response = admin_client.post(
        reverse("admin:feedback_prompt_import"),
        {"project": project.pk, "file": upload("p.txt", {"prompt": "x"})},
    )
    assert response.context["form"].errors["file_format"] == [
        "Cannot tell the format of 'p.txt': use a .jsonl or .csv file, or name the format."
    ]
    assert Prompt.objects.count() == 0


def test_conflicts_are_shown_as_warnings(admin_client):
    project = ProjectFactory()
    PromptFactory(project=project, external_id="a")
    response = admin_client.post(
        reverse("admin:feedback_prompt_import"),
        {"project": project.pk, "file": upload("p.jsonl", {"id": "a", "prompt": "Different"})},
        follow=True,
    )
    assert [str(message) for message in response.context["messages"]][1:] == [
        "line 1: id 'a' already exists with a different conversation, category; kept the stored prompt"
    ]


def test_only_staff_with_add_permission_may_import(annotator_client, client):
    url = reverse("admin:feedback_prompt_import")
    for anybody in (client, annotator_client):
        response = anybody.post(
            url, {"project": ProjectFactory().pk, "file": upload("p.jsonl", {"prompt": "x"})}
        )
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))
    assert Prompt.objects.count() == 0


def test_prompt_search_finds_text_and_ids_within_the_active_filter(admin_client):
    mine, other = ProjectFactory(), ProjectFactory()
    PromptFactory(
        project=mine, external_id="tide-1", conversation=[{"role": "user", "content": "Explain TIDES."}]
    )
    PromptFactory(
        project=mine, external_id="rain-1", conversation=[{"role": "user", "content": "Explain rain."}]
    )
    PromptFactory(
        project=other, external_id="tide-2", conversation=[{"role": "user", "content": "Tides again"}]
    )
    url = admin_url(Prompt, "changelist")

    def found(**params):
        response = admin_client.get(url, params)
        return sorted(prompt.external_id for prompt in response.context["cl"].result_list)

    assert found(q="tides") == ["tide-1", "tide-2"]
    assert found(q="tides", project__id__exact=mine.pk) == ["tide-1"]
    assert found(q="rain-1") == ["rain-1"]
    assert found(q="  ", project__id__exact=mine.pk) == ["rain-1", "tide-1"]


# --- prompts written by hand -----------------------------------------------------------------------------


def prompt_form(project, conversation, **fields):
    return {
        "project": project.pk,
        "external_id": "by-hand-1",
        "category": "explain",
        "conversation": json.dumps(conversation),
        "metadata": "{}",
        **fields,
    }


@pytest.mark.parametrize(
    ("conversation", "metadata", "field", "message"),
    [
        (
            [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
            "{}",
            "conversation",
            "the last message must be from the user",
        ),
        (
            [{"role": "user", "content": "a\u0000b"}],
            "{}",
            "conversation",
            "message 1 contains a NUL character",
        ),
        (
            [{"role": "user"}],
            "{}",
            "conversation",
            "message 1 must be an object with exactly 'role' and 'content'",
        ),
        ("Explain tides.", "{}", "conversation", "messages must be a non-empty list"),
        (
            [{"role": "user", "content": "Fine"}],
            "[1]",
            "metadata",
            "metadata must be a JSON object, got a list.",
        ),
    ],
)
def test_a_prompt_added_by_hand_is_checked_as_an_import_line_is(
    admin_client, conversation, metadata, field, message
):
    project = ProjectFactory()
    response = admin_client.post(
        admin_url(Prompt, "add"), prompt_form(project, conversation, metadata=metadata)
    )
    assert response.status_code == 200
    assert message in " ".join(response.context["adminform"].form.errors[field])
    assert Prompt.objects.count() == 0


def test_a_prompt_added_or_changed_by_hand_gets_the_hash_an_import_would_give(admin_client):
    project = ProjectFactory()
    conversation = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Explain tides."}]
    response = admin_client.post(admin_url(Prompt, "add"), prompt_form(project, conversation))
    assert response.status_code == 302
    prompt = Prompt.objects.get()
    imported = prompts_import(
        project=ProjectFactory(),
        source=io.BytesIO(json.dumps({"messages": conversation}).encode() + b"\n"),
        file_format="jsonl",
    )
    assert imported.created == 1
    assert prompt.content_hash == Prompt.objects.exclude(pk=prompt.pk).get().content_hash

    changed = [{"role": "user", "content": "Explain rain."}]
    response = admin_client.post(admin_url(Prompt, "change", prompt.pk), prompt_form(project, changed))
    assert response.status_code == 302
    prompt.refresh_from_db()
    assert (prompt.conversation, prompt.content_hash) == (changed, conversation_hash(changed))


def test_a_prompt_with_responses_keeps_its_conversation_and_project(
    admin_client, django_assert_max_num_queries
):
    response = ResponseFactory()
    prompt = response.prompt
    before = (prompt.conversation, prompt.content_hash, prompt.project_id)
    # Session, user, the prompt (whether it has responses comes with it), the content type, its project:
    # asking for its responses again, per field and for the note, would add one query each.
    with django_assert_max_num_queries(5):
        page = admin_client.get(admin_url(Prompt, "change", prompt.pk)).content.decode()
    assert "Responses were generated from this conversation, so it can no longer change." in page
    assert 'name="conversation"' not in page
    assert 'name="project"' not in page
    answer = admin_client.post(
        admin_url(Prompt, "change", prompt.pk),
        prompt_form(ProjectFactory(), [{"role": "user", "content": "Something else?"}], category="write"),
    )
    assert answer.status_code == 302
    prompt.refresh_from_db()
    assert (prompt.conversation, prompt.content_hash, prompt.project_id) == before
    assert prompt.category == "write"  # what does not change the meaning of the responses still can


def submitted_defaults(client: Client, url: str) -> dict:
    """What a browser submits from an add page left as it is: each field's initial value, and the inline
    formsets empty."""
    page = client.get(url)
    form = page.context["adminform"].form
    data: dict = {}
    for name, field in form.fields.items():
        value = form.get_initial_for_field(field, name)
        if value is None or value is False:
            continue
        if value is True:
            data[name] = "on"
        elif isinstance(field, forms.JSONField):
            data[name] = json.dumps(value)
        elif isinstance(field, LinesField):
            data[name] = field.prepare_value(value)  # the lines the page shows
        else:
            data[name] = value
    for inline in page.context["inline_admin_formsets"]:
        data |= {f"{inline.formset.prefix}-TOTAL_FORMS": "0", f"{inline.formset.prefix}-INITIAL_FORMS": "0"}
    return data


def test_a_project_and_a_checkpoint_are_added_from_their_forms_as_they_come(admin_client, tmp_path):
    url = admin_url(Project, "add")
    data = submitted_defaults(admin_client, url) | {"name": "Summaries", "slug": "summaries"}
    assert admin_client.post(url, data).status_code == 302
    project = Project.objects.get(slug="summaries")
    assert project.rating_rubric == default_rating_rubric()
    assert project.strength_labels == default_strength_labels()

    url = admin_url(PolicyCheckpoint, "add")
    data = submitted_defaults(admin_client, url) | {"name": "policy-v1", "source": str(tmp_path)}
    assert admin_client.post(url, data).status_code == 302
    assert PolicyCheckpoint.objects.get(name="policy-v1").source == str(tmp_path)


def test_judgment_lists_show_verdicts_and_strength_labels_not_codes(admin_client):
    from tests.factories import AnnotatorFactory, ComparisonFactory, JudgmentFactory, ProjectFactory

    project = ProjectFactory(strength_labels=["A little", "Clearly", "By far"])
    pairwise = ComparisonFactory(prompt__project=project)
    JudgmentFactory(comparison=pairwise, choice="b", ranking=[2, 1], strength=3)
    JudgmentFactory(comparison=pairwise, choice="both_bad", ranking=[1, 1], strength=None)
    ranking_project = ProjectFactory(
        comparison_mode="ranking", responses_per_comparison=3, strength_labels=[]
    )
    ranked = ComparisonFactory(prompt__project=ranking_project, with_responses=3)
    judgment = JudgmentFactory(
        comparison=ranked, annotator=AnnotatorFactory(), choice="ranked", ranking=[2, 1, 2], strength=None
    )
    page = admin_client.get("/admin/feedback/judgment/").content.decode()
    assert '<td class="field-verdict">B better</td><td class="field-strength_label">By far</td>' in page
    assert '<td class="field-verdict">Both bad</td><td class="field-strength_label">—</td>' in page
    assert '<td class="field-verdict">B &gt; A = C</td>' in page
    detail = admin_client.get(f"/admin/feedback/judgment/{judgment.pk}/change/").content.decode()
    assert "B &gt; A = C" in detail


def test_a_projects_list_settings_are_edited_as_lines_and_bad_lines_are_named(admin_client):
    url = admin_url(Project, "add")
    page = admin_client.get(url).content.decode()
    # The defaults as lines, not JSON.
    assert "Slightly better\nBetter\nMuch better</textarea>" in page
    assert "instruction_following | Instruction following | 1-5 | Does the response do what was asked" in page
    data = submitted_defaults(admin_client, url) | {
        "name": "Lines",
        "slug": "lines",
        "strength_labels": "A little\n\n  Clearly  \nBy far\n",
        "rating_rubric": "helpfulness | Helpfulness | 1-5 | Is it useful?\nsafety | Safety | 0 - 2\n",
        "stop_strings": "###\n\\nUser:\nback\\\\slash\ttab\n",
    }
    assert admin_client.post(url, data).status_code == 302
    project = Project.objects.get(slug="lines")
    assert project.strength_labels == ["A little", "Clearly", "By far"]
    assert project.rating_rubric == [
        {
            "key": "helpfulness",
            "label": "Helpfulness",
            "scale": {"min": 1, "max": 5},
            "description": "Is it useful?",
        },
        {"key": "safety", "label": "Safety", "scale": {"min": 0, "max": 2}},
    ]
    assert project.stop_strings == ["###", "\nUser:", "back\\slash\ttab"]
    # Shown again as written (escapes and all), so saving the page unchanged changes nothing.
    change = admin_client.get(admin_url(Project, "change", project.pk)).content.decode()
    assert "###\n\\nUser:\nback\\\\slash\\ttab</textarea>" in change

    bad = admin_client.post(
        url,
        data
        | {
            "slug": "bad",
            "rating_rubric": "helpfulness | Helpfulness | 1-5\nformat | Format | five",
            "stop_strings": "fine\nbad \\q escape",
            "strength_labels": "Same\nSame",
        },
    )
    assert bad.status_code == 200
    errors = bad.context["adminform"].form.errors
    assert errors["rating_rubric"] == ["Line 2: the scale 'five' is not 'min-max', e.g. 1-5."]
    assert errors["stop_strings"][0].startswith("Line 2: 'bad \\\\q escape' has a backslash that is not")
    assert errors["strength_labels"] == ["Strength labels must be distinct."]
    assert not Project.objects.filter(slug="bad").exists()
    # The model's own rules still hold on what the lines make: keys as slugs, once each.
    twice = admin_client.post(
        url, data | {"slug": "twice", "rating_rubric": "tone | Tone | 1-5\ntone | Again | 1-3"}
    )
    assert twice.context["adminform"].form.errors["rating_rubric"] == ["Axis 2: key 'tone' is used twice."]


def test_the_export_form_offers_people_as_a_checkpoint(admin_client, settings, tmp_path):
    settings.EXPORT_ROOT = tmp_path
    PolicyCheckpoint.objects.create(name="policy-a", source=str(tmp_path))
    url = "/admin/feedback/export/add/"
    page = admin_client.get(url)
    html = page.content.decode()
    assert '<option value="policy-a">policy-a</option>' in html
    assert '<option value="people">people (people&#x27;s answers)</option>' in html
    form = page.context["form"]
    data = {}
    for name, field in form.fields.items():
        value = form.get_initial_for_field(field, name)
        if value is None or value is False or value in ("", []):
            continue
        data[name] = "on" if value is True else value
    data |= {"format": "preference", "checkpoints": ["people", "policy-a"]}
    sent = admin_client.post(url, data)
    assert sent.status_code == 302, sent.context["form"].errors if sent.status_code == 200 else sent
    assert Export.objects.get().options["checkpoints"] == ["people", "policy-a"]
