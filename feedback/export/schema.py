"""Column names and Arrow types of each format's rows: Parquet and `datasets` files are written with
exactly this schema, so every export of a format reads the same types whatever its data."""

from __future__ import annotations

from typing import Any

from feedback.export.options import PREFERENCE_FORMATS, ExportOptions


def row_schema(options: ExportOptions, axes: tuple[str, ...]) -> Any:
    """The pyarrow schema of `options`' rows; `axes` are the rating axes of the exported projects."""
    import pyarrow as pa

    text = pa.string()
    messages = pa.list_(pa.struct([("role", text), ("content", text)]))
    ratings = pa.list_(pa.struct([(axis, pa.float64()) for axis in axes]))
    integers = pa.list_(pa.int64())
    export_format = options.format
    columns: list[tuple[str, Any]]
    if export_format == "gold":
        return pa.schema(
            [
                ("comparison_id", pa.int64()),
                ("project", text),
                ("prompt_id", text),
                ("conversation", messages),
                ("category", text),
                (
                    "responses",
                    pa.list_(
                        pa.struct(
                            [
                                ("response_id", pa.int64()),
                                ("position", pa.int64()),
                                ("label", text),
                                ("text", text),
                            ]
                        )
                    ),
                ),
                ("expected", text),
                ("explanation", text),
                ("answered", pa.int64()),
                ("correct", pa.int64()),
                (
                    "answers",
                    pa.list_(
                        pa.struct(
                            [
                                ("judgment_id", pa.int64()),
                                ("annotator_id", pa.int64()),
                                ("annotator", text),
                                ("choice", text),
                                ("ranking", integers),
                                ("correct", pa.bool_()),
                                ("created_at", text),
                            ]
                        )
                    ),
                ),
            ]
        )
    if export_format == "judgments":
        columns = [
            ("judgment_id", pa.int64()),
            ("comparison_id", pa.int64()),
            ("project", text),
            ("prompt_id", text),
            ("conversation", messages),
            ("category", text),
            (
                "responses",
                pa.list_(
                    pa.struct(
                        [
                            ("response_id", pa.int64()),
                            ("position", pa.int64()),
                            ("label", text),
                            ("checkpoint", text),
                            ("text", text),
                        ]
                    )
                ),
            ),
            ("annotator_id", pa.int64()),
            ("annotator", text),
            ("choice", text),
            ("ranking", integers),
            ("strength", pa.int64()),
            ("strength_label", text),
            ("rationale", text),
            ("flags", pa.list_(text)),
            ("time_spent_ms", pa.int64()),
            ("created_at", text),
            ("agreement", pa.float64()),
            ("gold_accuracy", pa.float64()),
            ("reviewed", pa.bool_()),
        ]
        if axes:
            columns.append(("ratings", ratings))
        return pa.schema(columns)

    naming = "single"
    if export_format == "preference":
        columns = [("prompt", text), ("chosen", text), ("rejected", text)]
        naming = "pair"
    elif export_format == "preference-conversational":
        columns = [("prompt", messages), ("chosen", messages), ("rejected", messages)]
        naming = "pair"
    elif export_format == "preference-conversational-implicit":
        columns = [("chosen", messages), ("rejected", messages)]
        naming = "pair"
    elif export_format in ("prompt-completion", "edits", "prompt-only"):
        return pa.schema(
            {
                "prompt-completion": [("prompt", text), ("completion", text)],
                "edits": [("prompt", text), ("chosen", text), ("rejected", text)],
                "prompt-only": [("prompt", text)],
            }[export_format]
        )
    elif export_format == "edits-conversational":
        return pa.schema([("prompt", messages), ("chosen", messages), ("rejected", messages)])
    elif export_format == "prompt-completion-conversational":
        return pa.schema([("prompt", messages), ("completion", messages)])
    elif export_format == "prompt-only-conversational":
        return pa.schema([("prompt", messages)])
    elif export_format == "hh-rlhf":
        columns = [("chosen", text), ("rejected", text)]
        naming = "pair"
    elif export_format == "unpaired":
        columns = [("prompt", text), ("completion", text), ("label", pa.bool_())]
    elif export_format == "unpaired-conversational":
        columns = [("prompt", messages), ("completion", messages), ("label", pa.bool_())]
    elif export_format == "sft":
        columns = [("messages", messages)]
    else:  # rankings
        columns = [
            ("prompt", text),
            ("completions", pa.list_(text)),
            ("ranks", integers),
            ("all_bad", pa.bool_()),
        ]
        if axes:
            columns.append(("ratings", ratings))
        naming = "list"

    def per_response(name: str, kind: Any) -> list[tuple[str, Any]]:
        if naming == "pair":
            return [(f"chosen_{name}", kind), (f"rejected_{name}", kind)]
        if naming == "single":
            return [(name, kind)]
        return [(f"{name}s", pa.list_(kind))]

    extras = options.columns
    is_pair = export_format in PREFERENCE_FORMATS
    if "margin" in extras and is_pair:
        columns.append(("margin", pa.float64()))
    if "ids" in extras:
        columns += [("comparison_id", pa.int64()), ("prompt_id", text)]
        columns.append(
            ("judgment_id", pa.int64()) if options.aggregation == "raw" else ("judgment_ids", integers)
        )
        columns += per_response("response_id", pa.int64())
    if "checkpoints" in extras:
        columns += per_response("checkpoint", text)
    if "category" in extras:
        columns.append(("category", text))
    if "agreement" in extras:
        columns.append(("agreement", pa.float64()))
    if "votes" in extras:
        columns.append(("judgment_count", pa.int64()))
        if is_pair:
            columns += [(f"votes_{name}", pa.int64()) for name in ("chosen", "rejected", "tie", "both_bad")]
    if "reviewed" in extras:
        columns.append(("reviewed", pa.bool_()))
    return pa.schema(columns)
