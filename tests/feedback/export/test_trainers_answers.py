"""Every format added for people's answers and online methods, produced end to end and read by TRL as it
is: the tiny checkpoint generates, annotators judge and edit through the annotator endpoints (the same
JSON the workspace sends), writers draft and submit demonstrations through theirs, the export job writes
the files, and each trainer runs two optimizer steps on them (CPU)."""

from __future__ import annotations

import json

import pytest

from feedback.models import Comparison, PolicyCheckpoint, Project, Response
from feedback.services.generation import generation_run_start
from inference.tasks import generate_chunk
from inference.tiny import build_tiny_checkpoint
from tests.conftest import logged_in_client
from tests.factories import AnnotatorFactory, ProjectFactory, PromptFactory
from tests.feedback.export.conftest import exported
from tests.trl_consumers import (
    load_exported_dataset,
    train_dpo,
    train_grpo,
    train_kto,
    train_reward,
    train_sft,
)

# (choice, the label the edit starts from or None): both kinds of edit, and verdicts without one.
VERDICTS = [("a", "A"), ("b", None), ("both_bad", "B"), ("b", "B"), ("tie", None), ("a", None)]


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    return build_tiny_checkpoint(tmp_path_factory.mktemp("checkpoints") / "tiny", kind="instruct")


def _generate(project):
    run = generation_run_start(project=project, samples_per_prompt=2, seed=7, chunk_size=4)
    for chunk_id in run.chunks.values_list("id", flat=True):
        assert generate_chunk(chunk_id) == "done"


def _page_config(client, project):
    page = client.get(f"/projects/{project.slug}/annotate")
    assert page.status_code == 200
    html = page.content.decode()
    if 'id="workspace-config"' not in html:
        return None  # nothing left: the done page
    return json.loads(html.split('id="workspace-config" type="application/json">')[1].split("</script>")[0])


def _post(client, url, body):
    return client.post(url, json.dumps(body), content_type="application/json")


@pytest.fixture
def loop(db, tiny_checkpoint, django_capture_on_commit_callbacks, settings, tmp_path):
    settings.EXPORT_ROOT = tmp_path / "exports"
    checkpoint = PolicyCheckpoint.objects.create(name="tiny-instruct", source=str(tiny_checkpoint))
    judged = ProjectFactory(
        slug="judge-and-edit",
        current_checkpoint=checkpoint,
        judgments_per_comparison=1,
        max_new_tokens=12,
        answer_editing=Project.AnswerEditing.OPTIONAL,
    )
    written = ProjectFactory(
        slug="write",
        comparison_mode=Project.ComparisonMode.DEMONSTRATION,
        reference_answers=1,
        current_checkpoint=checkpoint,
        judgments_per_comparison=1,
        max_new_tokens=12,
    )
    for project in (judged, written):
        PromptFactory.create_batch(7, project=project)
        PromptFactory(
            project=project,
            conversation=[
                {"role": "system", "content": "Answer in one line."},
                {"role": "user", "content": "Name a fruit."},
                {"role": "assistant", "content": "Apple."},
                {"role": "user", "content": "And a vegetable, «s'il vous plaît»?"},
            ],
        )
        with django_capture_on_commit_callbacks(execute=False):
            _generate(project)
    assert Comparison.objects.filter(project=written).count() == 8  # a writing task per prompt

    annotator = AnnotatorFactory(username="judge-edit")
    judged.members.add(annotator)
    client = logged_in_client(annotator)
    turn = 0
    while (config := _page_config(client, judged)) is not None:
        choice, start = VERDICTS[turn % len(VERDICTS)]
        turn += 1
        body = {"submission_key": f"judge-edit-{turn:04d}", "choice": choice}
        if choice in ("a", "b"):
            body["strength"] = 1
        if start is not None:
            text = config["texts"][start] + " Better, and clear."
            assert (
                _post(client, config["draftUrl"], {"text": text, "revision": 1, "base": start}).status_code
                == 200
            )
            body["edit"] = {"from": start, "text": text}
        assert _post(client, config["submitUrl"], body).status_code == 201
    assert Response.objects.filter(source="human", judgment__isnull=False).count() >= 4

    writer = AnnotatorFactory(username="writer")
    written.members.add(writer)
    client = logged_in_client(writer)
    turn = 0
    while (config := _page_config(client, written)) is not None:
        turn += 1
        text = f"A demonstration, number {turn}.\n\n- short\n- **clear**"
        assert _post(client, config["draftUrl"], {"text": text[:10], "revision": 1}).status_code == 200
        assert (
            _post(
                client, config["submitUrl"], {"submission_key": f"write-{turn:04d}", "text": text}
            ).status_code
            == 201
        )
    assert turn == 8
    return judged, written


def _trained(run, rows):
    assert run.global_step == 2
    assert run.losses_finite
    assert run.rows == rows


def test_prompt_completion_formats_train_sft(loop, tiny_checkpoint, tmp_path):
    _judged, written = loop
    standard, _ = exported(tmp_path, format="prompt-completion", answers="written,edited,chosen")
    rows = load_exported_dataset(standard / "train.jsonl")["train"]
    assert rows.column_names == ["prompt", "completion"]
    assert all(isinstance(row["prompt"], str) and isinstance(row["completion"], str) for row in rows)
    assert any(row["completion"].startswith("A demonstration") for row in rows)
    assert any(row["completion"].endswith(" Better, and clear.") for row in rows)
    _trained(train_sft(standard / "train.jsonl", tiny_checkpoint, tmp_path / "sft"), rows.num_rows)

    conversational, _ = exported(
        tmp_path, format="prompt-completion-conversational", projects=written.slug, output="parquet"
    )
    rows = load_exported_dataset(conversational / "train.parquet")["train"]
    assert rows.num_rows == 8
    assert rows[0]["completion"][0]["role"] == "assistant"
    _trained(train_sft(conversational / "train.parquet", tiny_checkpoint, tmp_path / "sft-chat"), 8)


def test_edits_train_the_reward_model_and_dpo(loop, tiny_checkpoint, tmp_path):
    directory, _ = exported(tmp_path, format="edits", edit_pairs="expanded")
    rows = load_exported_dataset(directory / "train.jsonl")["train"]
    assert rows.column_names == ["prompt", "chosen", "rejected"]
    assert rows.num_rows > Response.objects.filter(source="human", judgment__isnull=False).count()
    _trained(train_reward(directory / "train.jsonl", tiny_checkpoint, tmp_path / "reward"), rows.num_rows)
    _trained(train_dpo(directory / "train.jsonl", tiny_checkpoint, tmp_path / "dpo"), rows.num_rows)

    # The same pairs in the conversational shape: the prompt's messages, each answer an assistant turn.
    chat, _ = exported(tmp_path, format="edits-conversational", edit_pairs="expanded", output="parquet")
    chat_rows = load_exported_dataset(chat / "train.parquet")["train"]
    assert chat_rows.column_names == ["prompt", "chosen", "rejected"]
    assert chat_rows.num_rows == rows.num_rows
    assert chat_rows[0]["prompt"][-1]["role"] == "user"
    assert [turn["content"] for turn in chat_rows["chosen"][0]] == [rows[0]["chosen"]]
    assert chat_rows[0]["rejected"] == [{"role": "assistant", "content": rows[0]["rejected"]}]
    _trained(train_reward(chat / "train.parquet", tiny_checkpoint, tmp_path / "reward-chat"), rows.num_rows)
    _trained(train_dpo(chat / "train.parquet", tiny_checkpoint, tmp_path / "dpo-chat"), rows.num_rows)


def test_the_conversational_judgment_shapes_train_kto_and_dpo(loop, tiny_checkpoint, tmp_path):
    unpaired, _ = exported(tmp_path, format="unpaired-conversational", output="hf-dataset")
    rows = load_exported_dataset(unpaired / "dataset")["train"]
    assert rows.column_names == ["prompt", "completion", "label"]
    _trained(train_kto(unpaired / "dataset", tiny_checkpoint, tmp_path / "kto"), rows.num_rows)
    implicit, _ = exported(tmp_path, format="preference-conversational-implicit")
    rows = load_exported_dataset(implicit / "train.jsonl")["train"]
    assert rows.column_names == ["chosen", "rejected"]
    assert rows[0]["chosen"][-1]["role"] == "assistant"
    _trained(train_dpo(implicit / "train.jsonl", tiny_checkpoint, tmp_path / "dpo-implicit"), rows.num_rows)


def test_prompt_only_formats_train_grpo(loop, tiny_checkpoint, tmp_path):
    judged, _written = loop
    standard, _ = exported(tmp_path, format="prompt-only")
    rows = load_exported_dataset(standard / "train.jsonl")["train"]
    assert rows.column_names == ["prompt"]
    assert rows.num_rows == 16
    _trained(train_grpo(standard / "train.jsonl", tiny_checkpoint, tmp_path / "grpo"), 16)
    conversational, _ = exported(
        tmp_path, format="prompt-only-conversational", projects=judged.slug, output="parquet"
    )
    rows = load_exported_dataset(conversational / "train.parquet")["train"]
    assert rows.num_rows == 8
    run = train_grpo(conversational / "train.parquet", tiny_checkpoint, tmp_path / "grpo-chat")
    _trained(run, 8)
    assert all(entry["grad_norm"] > 0 for entry in run.log_history if "grad_norm" in entry)
