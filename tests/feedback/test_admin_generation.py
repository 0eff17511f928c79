"""Generation from the admin: the start page, the actions, and the run and checkpoint pages.

The pages call the services; a chunk's message is only registered to be sent after commit, never sent
here (no worker in these tests), so each test asserts the callback and leaves it unexecuted.
"""

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from feedback.models import GenerationChunk, GenerationRun, PolicyCheckpoint, Project
from feedback.sampling import SamplingParameters
from feedback.services.generation import generation_run_start
from tests.conftest import logged_in_client
from tests.factories import (
    GenerationRunFactory,
    PolicyCheckpointFactory,
    ProjectFactory,
    PromptFactory,
    ResponseFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

START_URL = "admin:feedback_generationrun_start"


def ready_project(*, prompts: int = 3, **kwargs) -> Project:
    """A pairwise project with a current checkpoint and some prompts."""
    project = ProjectFactory(current_checkpoint=PolicyCheckpointFactory(), **kwargs)
    PromptFactory.create_batch(prompts, project=project)
    return project


def run_url(run: GenerationRun) -> str:
    return reverse("admin:feedback_generationrun_change", args=[run.pk])


def run_link(run: GenerationRun, checkpoints: str) -> str:
    return (
        f'<a href="{run_url(run)}">run {run.pk}</a> for {run.project} '
        f"({run.total_prompts} prompt(s) from {checkpoints})"
    )


def message_texts(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def run_action(client, model_name: str, action: str, objects) -> object:
    return client.post(
        reverse(f"admin:feedback_{model_name}_changelist"),
        {"action": action, "_selected_action": [obj.pk for obj in objects]},
        follow=True,
    )


# --- The start page -------------------------------------------------------------------------------------


def test_the_start_page_renders_and_the_run_list_links_to_it(admin_client):
    page = admin_client.get(reverse(START_URL))
    assert page.status_code == 200
    assert list(page.context["form"].fields) == [
        "project",
        "checkpoint",
        "opponent_checkpoint",
        "samples_per_prompt",
        "temperature",
        "top_p",
        "top_k",
        "max_new_tokens",
        "repetition_penalty",
        "stop_strings",
        "seed",
        "chunk_size",
    ]
    changelist = admin_client.get(reverse("admin:feedback_generationrun_changelist")).content.decode()
    assert f'href="{reverse(START_URL)}"' in changelist
    # The generic add page is the start page too, posting to the start URL.
    add_page = admin_client.get(reverse("admin:feedback_generationrun_add")).content.decode()
    assert f'action="{reverse(START_URL)}"' in add_page


def test_starting_a_run_creates_it_with_its_chunks_and_redirects(
    admin_client, admin_user, django_capture_on_commit_callbacks
):
    project = ready_project(prompts=5, top_k=40)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_client.post(
            reverse(START_URL),
            {
                "project": project.pk,
                "samples_per_prompt": "3",
                "temperature": "0.5",
                "stop_strings": "###\n\\nUser:\n\n",
                "seed": "7",
                "chunk_size": "2",
            },
        )
    run = GenerationRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == run_url(run)
    assert len(callbacks) == 1
    assert (run.project, run.checkpoint, run.opponent_checkpoint) == (
        project,
        project.current_checkpoint,
        None,
    )
    assert (run.status, run.samples_per_prompt, run.seed, run.chunk_size, run.total_prompts) == (
        GenerationRun.Status.QUEUED,
        3,
        7,
        2,
        5,
    )
    assert run.created_by == admin_user
    # The project's defaults, with the given fields replaced.
    assert run.sampling_parameters == {
        "temperature": 0.5,
        "top_p": 0.95,
        "top_k": 40,
        "max_new_tokens": 256,
        "repetition_penalty": 1.0,
        "stop_strings": ["###", "\nUser:"],
    }
    prompt_ids = list(project.prompts.order_by("id").values_list("id", flat=True))
    assert list(
        run.chunks.order_by("index").values_list("index", "checkpoint_id", "prompt_ids", "status")
    ) == [
        (0, project.current_checkpoint_id, prompt_ids[0:2], "queued"),
        (1, project.current_checkpoint_id, prompt_ids[2:4], "queued"),
        (2, project.current_checkpoint_id, prompt_ids[4:5], "queued"),
    ]
    followed = admin_client.get(response["Location"])
    assert message_texts(followed) == [
        f"Started {run_link(run, str(project.current_checkpoint))}: 3 chunk(s) queued."
    ]


def test_a_head_to_head_run_with_blank_sampling_uses_the_project_defaults(
    admin_client, django_capture_on_commit_callbacks
):
    project = ready_project(prompts=2, temperature=1.2, stop_strings=["\n\n"])
    challenger, opponent = PolicyCheckpointFactory(), PolicyCheckpointFactory()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_client.post(
            reverse(START_URL),
            {"project": project.pk, "checkpoint": challenger.pk, "opponent_checkpoint": opponent.pk},
        )
    run = GenerationRun.objects.get()
    assert response["Location"] == run_url(run)
    assert len(callbacks) == 1
    assert (run.checkpoint, run.opponent_checkpoint, run.total_prompts) == (challenger, opponent, 2)
    assert run.sampling_parameters == project.sampling_parameters().as_dict()
    assert sorted(run.chunks.values_list("index", "checkpoint_id")) == sorted(
        [(0, challenger.pk), (0, opponent.pk)]
    )


def _no_current_checkpoint(project: Project) -> dict:
    project.current_checkpoint = None
    project.save()
    return {"project": project.pk}


@pytest.mark.parametrize(
    ("form_data", "field", "message"),
    [
        pytest.param(
            _no_current_checkpoint,
            "checkpoint",
            "The project {project} has no current checkpoint; choose one.",
            id="no-current-checkpoint",
        ),
        pytest.param(
            lambda project: {"project": project.pk, "opponent_checkpoint": project.current_checkpoint_id},
            "opponent_checkpoint",
            "The opponent must be a different checkpoint.",
            id="opponent-is-the-checkpoint",
        ),
        pytest.param(
            lambda project: {"project": project.pk, "temperature": "9"},
            "temperature",
            "Must be a number from 0 to 5.",
            id="temperature-too-high",
        ),
        pytest.param(
            lambda project: {"project": project.pk, "samples_per_prompt": "1"},
            "samples_per_prompt",
            "Comparisons of 2 responses from one checkpoint need at least 2 samples per prompt.",
            id="one-sample-for-pairs",
        ),
    ],
)
def test_a_rejected_start_shows_the_field_error_and_creates_nothing(
    admin_client, django_capture_on_commit_callbacks, form_data, field, message
):
    project = ready_project(name="Rejected project")
    expected = message.format(project=project)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_client.post(reverse(START_URL), form_data(project))
    assert response.status_code == 200
    assert response.context["form"].errors == {field: [expected]}
    assert expected in response.content.decode()
    assert callbacks == []
    assert GenerationRun.objects.count() == 0
    assert GenerationChunk.objects.count() == 0


def test_staff_without_the_add_permission_cannot_start_runs(client):
    viewer = UserFactory(is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_generationrun"))
    viewer_client = logged_in_client(viewer)
    assert viewer_client.get(reverse(START_URL)).status_code == 403
    assert viewer_client.post(reverse(START_URL), {"project": ready_project().pk}).status_code == 403
    assert GenerationRun.objects.count() == 0


# --- The actions ----------------------------------------------------------------------------------------


def test_the_project_action_starts_a_run_per_project_and_names_the_ones_it_could_not(
    admin_client, django_capture_on_commit_callbacks
):
    ready = ready_project(name="Alpha project", prompts=3)
    unready = ProjectFactory(name="Beta project")
    PromptFactory(project=unready)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = run_action(admin_client, "project", "generate_responses", [ready, unready])
    run = GenerationRun.objects.get()
    assert len(callbacks) == 1
    assert (run.project, run.checkpoint, run.total_prompts, run.chunks.count()) == (
        ready,
        ready.current_checkpoint,
        3,
        1,
    )
    assert message_texts(response) == [
        "No run started for Beta project: checkpoint: The project Beta project has no current checkpoint; "
        "choose one.",
        f"Started 1 generation run(s): {run_link(run, str(ready.current_checkpoint))}.",
    ]


def test_the_prompt_action_starts_one_run_per_project_over_the_selected_prompts_only(
    admin_client, django_capture_on_commit_callbacks
):
    alpha = ready_project(name="Alpha project", prompts=0)
    beta = ready_project(name="Beta project", prompts=0)
    alpha_1, _unselected, alpha_3 = PromptFactory.create_batch(3, project=alpha)
    _unselected, beta_2 = PromptFactory.create_batch(2, project=beta)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = run_action(admin_client, "prompt", "generate_responses", [alpha_1, alpha_3, beta_2])
    assert len(callbacks) == 2
    runs = {run.project: run for run in GenerationRun.objects.all()}
    assert set(runs) == {alpha, beta}
    assert list(runs[alpha].chunks.values_list("prompt_ids", flat=True)) == [[alpha_1.pk, alpha_3.pk]]
    assert list(runs[beta].chunks.values_list("prompt_ids", flat=True)) == [[beta_2.pk]]
    assert (runs[alpha].total_prompts, runs[beta].total_prompts) == (2, 1)
    assert message_texts(response) == [
        "Started 2 generation run(s): "
        f"{run_link(runs[alpha], str(alpha.current_checkpoint))}; "
        f"{run_link(runs[beta], str(beta.current_checkpoint))}."
    ]


def test_the_cancel_action_cancels_unfinished_runs_and_counts_finished_ones(admin_client):
    project = ready_project(prompts=3)
    live = generation_run_start(project=project, chunk_size=1)
    finished = GenerationRunFactory(project=project, status=GenerationRun.Status.COMPLETED)
    response = run_action(admin_client, "generationrun", "cancel_runs", [live, finished])
    live.refresh_from_db()
    finished.refresh_from_db()
    assert live.status == GenerationRun.Status.CANCELLED
    assert live.finished_at is not None
    assert list(live.chunks.values_list("status", flat=True)) == ["cancelled"] * 3
    assert finished.status == GenerationRun.Status.COMPLETED
    assert message_texts(response) == [f"Cancelled 1 run(s). 1 had already finished: {finished.pk}."]


def test_the_validate_action_marks_checkpoints_pending_and_asks_a_worker(
    admin_client, django_capture_on_commit_callbacks
):
    checkpoints = PolicyCheckpointFactory.create_batch(2)
    untouched = PolicyCheckpointFactory()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = run_action(admin_client, "policycheckpoint", "validate_checkpoints", checkpoints)
    assert len(callbacks) == 1
    assert sorted(PolicyCheckpoint.objects.values_list("name", "validation_status")) == sorted(
        [(checkpoints[0].name, "pending"), (checkpoints[1].name, "pending"), (untouched.name, "unchecked")]
    )
    assert message_texts(response) == [
        "Asked the workers to validate 2 checkpoint(s); each shows “Checking” until a worker records "
        "its verdict."
    ]


# --- The checkpoint, run and response pages --------------------------------------------------------------


BADGE = ">tiny test model</span>"


def test_a_tiny_test_model_is_labelled_in_the_list_and_on_its_page(admin_client):
    tiny = PolicyCheckpointFactory(
        name="tiny-llama",
        validation_status=PolicyCheckpoint.ValidationStatus.VALID,
        validation_report={"is_test_model": True, "architecture": "LlamaForCausalLM", "parameters": 1024},
    )
    real = PolicyCheckpointFactory(
        name="real-model",
        validation_status=PolicyCheckpoint.ValidationStatus.VALID,
        validation_report={"is_test_model": False},
    )
    tiny_url, real_url = (
        reverse("admin:feedback_policycheckpoint_change", args=[checkpoint.pk]) for checkpoint in (tiny, real)
    )
    listing = admin_client.get(reverse("admin:feedback_policycheckpoint_changelist")).content.decode()
    assert f'<a href="{tiny_url}">tiny-llama <span title="Random weights' in listing
    assert f'<a href="{real_url}">real-model</a>' in listing
    assert listing.count(BADGE) == 1
    page = admin_client.get(tiny_url).content.decode()
    assert BADGE in page
    assert (
        '<th scope="row">architecture</th><td><span style="white-space: pre-wrap">LlamaForCausalLM</span>'
        in page
    )
    assert '<th scope="row">parameters</th><td><span style="white-space: pre-wrap">1024</span>' in page
    assert "Validation failed" not in page


def test_an_invalid_checkpoint_shows_its_error_escaped(admin_client):
    checkpoint = PolicyCheckpointFactory(
        validation_status=PolicyCheckpoint.ValidationStatus.INVALID,
        validation_report={"error": "Hub id org/<script>alert(1)</script> is not in the local cache."},
    )
    page = admin_client.get(
        reverse("admin:feedback_policycheckpoint_change", args=[checkpoint.pk])
    ).content.decode()
    assert (
        '<p class="errornote">Validation failed: '
        "Hub id org/&lt;script&gt;alert(1)&lt;/script&gt; is not in the local cache.</p>"
    ) in page
    assert "<script>alert(1)</script>" not in page
    assert BADGE not in page


def test_the_run_page_shows_progress_sampling_and_chunk_errors_escaped(admin_client):
    run = GenerationRunFactory(
        status=GenerationRun.Status.RUNNING,
        total_prompts=20,
        done_prompts=12,
        failed_prompts=2,
        sampling_parameters=SamplingParameters(temperature=0.7).as_dict(),
        error="<b>run went wrong</b>",
    )
    GenerationChunk.objects.create(
        run=run,
        checkpoint=run.checkpoint,
        index=0,
        prompt_ids=[1],
        status=GenerationChunk.Status.FAILED,
        attempts=3,
        error="ValueError: <img src=x onerror=alert(1)>\n\nTraceback (most recent call last): <i>here</i>",
    )
    GenerationChunk.objects.create(run=run, checkpoint=run.checkpoint, index=1, prompt_ids=[2])
    url = run_url(run)
    page = admin_client.get(url).content.decode()
    assert '<div class="readonly">12/20 (60%), 2 failed</div>' in page
    assert '<div class="readonly">1 queued, 1 failed</div>' in page
    assert '<th scope="row">temperature</th><td><span style="white-space: pre-wrap">0.7</span>' in page
    assert '<span style="white-space: pre-wrap">&lt;b&gt;run went wrong&lt;/b&gt;</span>' in page
    assert (
        "<details><summary>ValueError: &lt;img src=x onerror=alert(1)&gt;</summary>"
        '<pre style="white-space: pre-wrap">ValueError: &lt;img src=x onerror=alert(1)&gt;\n\n'
        "Traceback (most recent call last): &lt;i&gt;here&lt;/i&gt;</pre></details>"
    ) in page
    assert "<img src=x" not in page
    assert "<b>run went wrong" not in page
    # Read-only: no save button, and a forged save is refused.
    assert 'name="_save"' not in page
    assert admin_client.post(url, {"status": "completed"}).status_code == 403
    run.refresh_from_db()
    assert run.status == GenerationRun.Status.RUNNING

    listing = admin_client.get(reverse("admin:feedback_generationrun_changelist")).content.decode()
    assert '<td class="field-progress">12/20 (60%), 2 failed</td>' in listing


def test_the_response_page_shows_the_text_escaped_and_read_only(admin_client):
    response = ResponseFactory(text='<script>alert("x")</script>\nsecond line')
    page = admin_client.get(reverse("admin:feedback_response_change", args=[response.pk])).content.decode()
    assert (
        '<pre style="white-space: pre-wrap; margin: 0">'
        "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;\nsecond line</pre>"
    ) in page
    assert '<textarea name="text"' not in page
    assert "<script>alert(" not in page
