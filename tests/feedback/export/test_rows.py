"""Rows of every format, both aggregations, ties, both-bad, k-wise expansion and margins, against the
hand-derived expectations of the `corpus` fixture (see conftest.py for who judged what)."""

import json

import pytest

from feedback.export.options import ExportOptions
from feedback.export.snapshot import judgment_high_water_mark
from feedback.export.writer import export_write

HAIKU = "User: Write a haiku about rain.\n\nAssistant:"
MULTI = (
    "System: Be brief.\n\nUser: Name a colour.\n\nAssistant: Blue.\n\nUser: Another, «please».\n\nAssistant:"
)
SORT = "User: Sort 3,1,2.\n\nAssistant:"


def export(tmp_path, **options):
    parsed = ExportOptions.from_mapping(options)
    directory = tmp_path / "out"
    manifest = export_write(parsed, high_water_mark=judgment_high_water_mark(), directory=directory)
    rows = {}
    for split, count in manifest["rows"].items():
        path = directory / f"{split}.jsonl"
        assert path.exists() == bool(count)  # an empty split gets no file
        rows[split] = [json.loads(line) for line in path.open(encoding="utf-8")] if count else []
    return rows, manifest


def triples(rows, *extra):
    return [
        (row.get("prompt"), row["chosen"], row["rejected"], *(row[name] for name in extra)) for row in rows
    ]


def test_preference_raw_is_one_pair_per_judgment_with_ties_and_both_bad_left_out(corpus, tmp_path):
    rows, manifest = export(tmp_path, format="preference", columns=["margin"])
    assert triples(rows["train"], "margin") == [
        (HAIKU, "Rain taps the roof.", "It rains.", 3.0),
        (HAIKU, "Rain taps the roof.", "It rains.", 1.0),
        (HAIKU, "It rains.", "Rain taps the roof.", 2.0),
        (MULTI, "Green.", 'Red, "crimson".', 1.0),
        # k-wise [1, 3, 2], twice, then [2, 3, 1], all pairs: the rank difference is the margin.
        (SORT, "1,2,3", "3,2,1", 2.0),
        (SORT, "1,2,3", "1,3,2", 1.0),
        (SORT, "1,3,2", "3,2,1", 1.0),
        (SORT, "1,2,3", "3,2,1", 2.0),
        (SORT, "1,2,3", "1,3,2", 1.0),
        (SORT, "1,3,2", "3,2,1", 1.0),
        (SORT, "1,2,3", "3,2,1", 1.0),
        (SORT, "1,3,2", "1,2,3", 1.0),
        (SORT, "1,3,2", "3,2,1", 2.0),
    ]
    assert manifest["rows"] == {"train": 13}
    # The flagged both-bad judgment is left out (exclude_flagged defaults to true).
    assert manifest["judgments"] == 3 + 3 + 3


def test_preference_consensus_majority_margin_votes_and_agreement(corpus, tmp_path):
    rows, _ = export(
        tmp_path, format="preference", aggregation="consensus", columns=["margin", "agreement", "votes"]
    )
    got = [
        (
            row["chosen"],
            row["rejected"],
            row["margin"],
            row["agreement"],
            row["judgment_count"],
            (row["votes_chosen"], row["votes_rejected"], row["votes_tie"], row["votes_both_bad"]),
        )
        for row in rows["train"]
    ]
    assert got == [
        # A 2–1: margin is the mean of the winners' strengths (3 and 1); agreement 2/3.
        ("Rain taps the roof.", "It rains.", 2.0, pytest.approx(2 / 3), 3, (2, 1, 0, 0)),
        # k-wise mean ranks A 4/3, B 3, C 5/3: A > C > B; margins are mean-rank differences.
        ("1,2,3", "3,2,1", pytest.approx(5 / 3), pytest.approx(8 / 9), 3, (3, 0, 0, 0)),
        ("1,2,3", "1,3,2", pytest.approx(1 / 3), pytest.approx(8 / 9), 3, (2, 1, 0, 0)),
        ("1,3,2", "3,2,1", pytest.approx(4 / 3), pytest.approx(8 / 9), 3, (3, 0, 0, 0)),
    ]


def test_ties_both_ways_writes_both_orders_with_zero_margin(corpus, tmp_path):
    rows, _ = export(
        tmp_path, format="preference", aggregation="consensus", ties="both-ways", columns="margin"
    )
    tie_rows = [
        (row["chosen"], row["rejected"], row["margin"]) for row in rows["train"] if row["prompt"] == MULTI
    ]
    # "split" has no majority (tie, both bad, A: one vote each); "tie" is a unanimous tie.
    assert tie_rows == [("Yellow.", "Gold.", 0.0), ("Gold.", "Yellow.", 0.0)]


def test_best_vs_rest_pairs_only_the_best(corpus, tmp_path):
    rows, _ = export(tmp_path, format="preference", kwise="best-vs-rest", projects="ranks", columns="margin")
    assert triples(rows["train"], "margin") == [
        (SORT, "1,2,3", "3,2,1", 2.0),
        (SORT, "1,2,3", "1,3,2", 1.0),
        (SORT, "1,2,3", "3,2,1", 2.0),
        (SORT, "1,2,3", "1,3,2", 1.0),
        (SORT, "1,3,2", "1,2,3", 1.0),
        (SORT, "1,3,2", "3,2,1", 2.0),
    ]


def test_margin_scale_maps_strength_levels(corpus, tmp_path):
    rows, _ = export(tmp_path, format="preference", projects="chat", margin_scale="0.5,1,4", columns="margin")
    assert [row["margin"] for row in rows["train"]] == [4.0, 0.5, 1.0, 0.5]


def test_conversational_and_hh_transcripts(corpus, tmp_path):
    rows, _ = export(tmp_path, format="preference-conversational", projects="chat")
    assert rows["train"][3] == {
        "prompt": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Name a colour."},
            {"role": "assistant", "content": "Blue."},
            {"role": "user", "content": "Another, «please»."},
        ],
        "chosen": [{"role": "assistant", "content": "Green."}],
        "rejected": [{"role": "assistant", "content": 'Red, "crimson".'}],
    }
    rows, _ = export(tmp_path / "hh", format="hh-rlhf", projects="chat")
    assert rows["train"][3] == {
        "chosen": "\n\nHuman: Be brief.\n\nName a colour.\n\nAssistant: Blue.\n\nHuman: Another, «please»."
        "\n\nAssistant: Green.",
        "rejected": "\n\nHuman: Be brief.\n\nName a colour.\n\nAssistant: Blue.\n\nHuman: Another, «please»."
        '\n\nAssistant: Red, "crimson".',
    }


def test_unpaired_labels_winners_true_and_both_bad_false(corpus, tmp_path):
    rows, _ = export(tmp_path, format="unpaired", exclude_flagged=False)
    got = [(row["prompt"], row["completion"], row["label"]) for row in rows["train"]]
    assert got == [
        (HAIKU, "Rain taps the roof.", True),
        (HAIKU, "It rains.", False),
        (HAIKU, "Rain taps the roof.", True),
        (HAIKU, "It rains.", False),
        (HAIKU, "It rains.", True),
        (HAIKU, "Rain taps the roof.", False),
        # split: the tie is dropped, both-bad gives two false rows, A gives true/false.
        (MULTI, "Green.", False),
        (MULTI, 'Red, "crimson".', False),
        (MULTI, "Green.", True),
        (MULTI, 'Red, "crimson".', False),
        # bad: two both-bad judgments (one flagged, included here).
        (HAIKU, "Sun.", False),
        (HAIKU, "Snow.", False),
        (HAIKU, "Sun.", False),
        (HAIKU, "Snow.", False),
        # k-wise: the best is desirable, the rest not.
        (SORT, "1,2,3", True),
        (SORT, "3,2,1", False),
        (SORT, "1,3,2", False),
        (SORT, "1,2,3", True),
        (SORT, "3,2,1", False),
        (SORT, "1,3,2", False),
        (SORT, "1,3,2", True),
        (SORT, "1,2,3", False),
        (SORT, "3,2,1", False),
    ]
    rows, _ = export(tmp_path / "drop", format="unpaired", both_bad="drop", projects="chat")
    assert [row["label"] for row in rows["train"]] == [True, False, True, False, True, False, True, False]


def test_sft_takes_the_preferred_answer(corpus, tmp_path):
    rows, _ = export(tmp_path, format="sft", aggregation="consensus", columns="ids")
    assert [(row["messages"][-1]["content"], row["comparison_id"]) for row in rows["train"]] == [
        ("Rain taps the roof.", corpus.comparisons["majority"].pk),
        ("1,2,3", corpus.comparisons["kwise"].pk),
    ]
    assert rows["train"][1]["messages"][:-1] == [{"role": "user", "content": "Sort 3,1,2."}]
    rows, _ = export(
        tmp_path / "ties", format="sft", aggregation="consensus", ties="both-ways", projects="chat"
    )
    assert [row["messages"][-1]["content"] for row in rows["train"]] == [
        "Rain taps the roof.",
        "Yellow.",
        "Gold.",
    ]


def test_rankings_keep_ranks_ratings_and_all_bad(corpus, tmp_path):
    rows, _ = export(tmp_path, format="rankings", projects="ranks", columns="ids,checkpoints")
    first = rows["train"][0]
    entries = list(
        corpus.comparisons["kwise"].entries.order_by("position").values_list("response_id", flat=True)
    )
    assert first["prompt"] == SORT
    assert first["completions"] == ["1,2,3", "3,2,1", "1,3,2"]
    assert first["ranks"] == [1, 3, 2]
    assert first["all_bad"] is False
    assert first["response_ids"] == entries
    assert first["checkpoints"] == ["alpha", "beta", "alpha"]
    assert [scores["helpfulness"] for scores in first["ratings"]] == [5, 1, None]
    assert [row["ranks"] for row in rows["train"]] == [[1, 3, 2], [1, 3, 2], [2, 3, 1]]
    consensus, _ = export(tmp_path / "c", format="rankings", aggregation="consensus", projects="ranks")
    (row,) = consensus["train"]
    assert row["ranks"] == [1, 3, 2]
    # Ratings under consensus: the mean of the judgments that rated (5 and 4), then 1, then none.
    assert [scores["helpfulness"] for scores in row["ratings"]] == [4.5, 1.0, None]
    pairwise, _ = export(tmp_path / "p", format="rankings", projects="chat", exclude_flagged=False)
    assert [(row["ranks"], row["all_bad"]) for row in pairwise["train"]][-2:] == [
        ([1, 1], True),
        ([1, 1], True),
    ]


def test_judgments_format_carries_every_field(corpus, tmp_path):
    rows, _ = export(tmp_path, format="judgments", projects="chat")
    first = rows["train"][0]
    comparison = corpus.comparisons["majority"]
    judgment = comparison.judgments.order_by("annotator_id").first()
    entries = list(comparison.entries.order_by("position").select_related("response"))
    assert first["judgment_id"] == judgment.pk
    assert first["comparison_id"] == comparison.pk
    assert first["project"] == "chat"
    assert first["prompt_id"] == "haiku"
    assert first["responses"] == [
        {
            "response_id": entries[0].response_id,
            "position": 0,
            "label": "A",
            "checkpoint": "alpha",
            "text": "Rain taps the roof.",
        },
        {
            "response_id": entries[1].response_id,
            "position": 1,
            "label": "B",
            "checkpoint": "beta",
            "text": "It rains.",
        },
    ]
    assert (
        first["annotator"],
        first["choice"],
        first["ranking"],
        first["strength"],
        first["strength_label"],
    ) == (
        "rater-0",
        "a",
        [1, 2],
        3,
        "Much",
    )
    assert first["created_at"] == judgment.created_at.isoformat().replace("+00:00", "Z")
    assert first["agreement"] == pytest.approx(2 / 3)
    assert len(rows["train"]) == 9  # 10 judgments in "chat", one flagged


@pytest.mark.parametrize(
    ("filters", "expected_comparisons"),
    [
        ({"projects": "chat"}, {"majority", "split"}),
        ({"checkpoints": "alpha"}, set()),
        ({"checkpoints": "alpha,beta"}, {"majority", "split", "kwise"}),
        ({"min_judgments": 3}, {"majority", "split", "kwise"}),
        ({"min_agreement": 0.7}, {"kwise"}),
        ({"exclude_annotators": "rater-2"}, {"majority", "kwise"}),
    ],
)
def test_filters(corpus, tmp_path, filters, expected_comparisons):
    rows, _ = export(tmp_path, format="preference", columns="ids", **filters)
    names = {comparison.pk: name for name, comparison in corpus.comparisons.items()}
    assert {names[row["comparison_id"]] for row in rows["train"]} == expected_comparisons


def test_time_range_filter(corpus, tmp_path):
    from feedback.models import Judgment

    majority = corpus.comparisons["majority"]
    Judgment.objects.filter(comparison=majority).update(created_at="2026-01-01T00:00:00Z")
    rows, _ = export(tmp_path, format="judgments", until="2026-06-01T00:00:00Z")
    assert {row["comparison_id"] for row in rows["train"]} == {majority.pk}
    rows, _ = export(tmp_path / "since", format="judgments", since="2026-06-01T00:00:00Z")
    assert majority.pk not in {row["comparison_id"] for row in rows["train"]}
    assert len(rows["train"]) == 12 - 3


def test_high_water_mark_bounds_the_export(corpus, tmp_path):
    from feedback.models import Judgment

    last = Judgment.objects.order_by("-id").first()
    parsed = ExportOptions.from_mapping({"format": "judgments"})
    manifest = export_write(parsed, high_water_mark=last.pk - 1, directory=tmp_path / "out")
    assert manifest["rows"] == {"train": 11}  # 13, less the flagged one, less the last
