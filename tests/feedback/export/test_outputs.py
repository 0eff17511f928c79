"""Every output holds the same rows: Parquet and `datasets` directories read back equal to JSON Lines,
with the schema's types; splits keep each prompt on one side; the card says what the export holds."""

import gzip
import json

import pyarrow.parquet as pq
import pytest
from datasets import load_dataset, load_from_disk

from feedback.export.options import ANSWER_FORMATS, FORMATS, PROMPT_FORMATS, ExportOptions
from feedback.export.snapshot import judgment_high_water_mark
from feedback.export.writer import export_write
from feedback.models import Prompt, conversation_hash
from tests.factories import AnnotatorFactory, PolicyCheckpointFactory, ProjectFactory, PromptFactory
from tests.feedback.export.conftest import comparison_of, judge


def write(tmp_path, name, **options):
    parsed = ExportOptions.from_mapping(options)
    return export_write(parsed, high_water_mark=judgment_high_water_mark(), directory=tmp_path / name)


def json_rows(path):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def same(value):
    """Parquet holds ratings as float and absent values as None; compare on JSON's terms."""
    return json.loads(json.dumps(value))


@pytest.mark.parametrize("export_format", FORMATS)
def test_parquet_and_datasets_directory_hold_the_jsonl_rows(corpus, tmp_path, export_format):
    if export_format == "gold":
        _gold_answered(corpus)
    own_fields = ("judgments", "gold", *ANSWER_FORMATS, *PROMPT_FORMATS)
    aggregation = "raw" if export_format in own_fields else "consensus"
    common = {
        "format": export_format,
        "aggregation": aggregation,
        "exclude_flagged": False,
        "test_fraction": 0.5,
    }
    if export_format not in own_fields:
        common["columns"] = "ids,checkpoints,category,agreement,votes"
    if export_format.startswith("prompt-completion"):
        common["answers"] = "chosen,edited,written"
    if export_format.startswith("edits"):
        _edits_written(corpus)
    write(tmp_path, "jsonl", output="jsonl", **common)
    write(tmp_path, "gz", output="jsonl.gz", **common)
    write(tmp_path, "parquet", output="parquet", **common)
    write(tmp_path, "hf", output="hf-dataset", **common)
    dataset = load_from_disk(str(tmp_path / "hf" / "dataset"))
    counts = {}
    for split in ("train", "test"):
        jsonl = tmp_path / "jsonl" / f"{split}.jsonl"
        if not jsonl.exists():
            # An empty split gets no file in any output: `datasets` cannot load one.
            assert not list((tmp_path / "parquet").glob(f"{split}.*"))
            assert split not in dataset
            continue
        expected = json_rows(jsonl)
        counts[split] = len(expected)
        assert json_rows(tmp_path / "gz" / f"{split}.jsonl.gz") == expected
        parquet = pq.read_table(tmp_path / "parquet" / f"{split}.parquet").to_pylist()
        assert [same(row) for row in parquet] == [same(row) for row in expected]
        assert [same(row) for row in dataset[split]] == [same(row) for row in expected]
    assert counts  # something was exported
    loaded = load_dataset("parquet", data_dir=str(tmp_path / "parquet"))
    assert {split: len(rows) for split, rows in loaded.items()} == counts


def _edits_written(corpus) -> None:
    """A person's improvement of each of the corpus's first responses to six prompts."""
    from feedback.models import Response
    from feedback.services.answers import human_answer_create

    editor = AnnotatorFactory(username="output-editor")
    for response in (
        Response.objects.filter(source="model").order_by("prompt_id", "pk").distinct("prompt_id")[:6]
    ):
        human_answer_create(
            prompt=response.prompt, author=editor, text=response.text + " (improved)", edited_from=response
        )


def _gold_answered(corpus) -> None:
    """Two gold items of the corpus's pairwise project, answered by two of its raters."""
    import io

    from feedback.models import Comparison, Project
    from feedback.services.gold import gold_import
    from tests.factories import JudgmentFactory

    project = Project.objects.get(slug="chat")
    lines = [
        {
            "id": f"g{n}",
            "prompt": f"Gold {n}, «quoted»?",
            "responses": [f"yes {n}", f"no {n}"],
            "expected": ["A", "tie"],
        }
        for n in range(2)
    ]
    gold_import(project=project, source=io.BytesIO("\n".join(map(json.dumps, lines)).encode()))
    for comparison in Comparison.objects.filter(project=project, is_gold=True):
        for username, choice, ranking in (("rater-0", "a", [1, 2]), ("rater-1", "tie", [1, 1])):
            JudgmentFactory(
                comparison=comparison,
                annotator=AnnotatorFactory(username=username),
                choice=choice,
                ranking=ranking,
                strength=1 if choice == "a" else None,
            )


def test_splits_keep_each_prompt_on_one_side_and_are_fixed_by_the_salt(db, tmp_path):
    project = ProjectFactory(slug="many")
    other = ProjectFactory(slug="other")
    checkpoint = PolicyCheckpointFactory(name="solo")
    rater = AnnotatorFactory(username="rater")
    for index in range(120):
        conversation = [{"role": "user", "content": f"Question {index % 60}?"}]
        # Two prompts with the same text in different projects: they must share a split too.
        prompt = PromptFactory(
            project=project if index < 60 else other, external_id=f"p{index}", conversation=conversation
        )
        comparison = comparison_of(
            prompt.project, prompt, [(checkpoint, f"x{index}"), (checkpoint, f"y{index}")]
        )
        judge(comparison, rater, "a", strength=1)
    first = write(tmp_path, "one", format="preference", test_fraction=0.3, columns="ids")
    again = write(tmp_path, "two", format="preference", test_fraction=0.3, columns="ids")
    assert first["files"] == again["files"]
    by_split = {split: json_rows(tmp_path / "one" / f"{split}.jsonl") for split in ("train", "test")}
    hashes = {
        split: {
            conversation_hash(Prompt.objects.get(external_id=row["prompt_id"]).conversation) for row in rows
        }
        for split, rows in by_split.items()
    }
    assert hashes["train"].isdisjoint(hashes["test"])
    assert len(hashes["train"]) + len(hashes["test"]) == 60
    assert 8 <= len(hashes["test"]) <= 30  # 30% of 60 prompts, give or take chance
    salted = write(
        tmp_path, "salted", format="preference", test_fraction=0.3, split_salt="other", columns="ids"
    )
    assert salted["rows"] != first["rows"] or salted["files"] != first["files"]


def test_the_card_reports_counts_agreement_checkpoints_and_options(corpus, tmp_path):
    manifest = write(tmp_path, "card", format="preference", aggregation="consensus")
    card = (tmp_path / "card" / "README.md").read_text(encoding="utf-8")
    assert card.startswith(
        "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n    path: train.jsonl\n"
    )
    assert f"Snapshot digest: `{manifest['snapshot_digest']}`" in card
    assert "| train | 4 |" in card
    assert "- Judgments: 6\n- Annotators: 3\n" in card
    # majority 2/3 and kwise 8/9 gave rows; the mean of the two.
    assert f"mean {(2 / 3 + 8 / 9) / 2:.3f}, minimum 0.667" in card
    assert "| alpha | 2 |\n| beta | 2 |" in card
    assert '"aggregation": "consensus"' in card
