"""What an export contains and how it is shaped: one frozen, validated, JSON-round-tripping record.

`ExportOptions.from_mapping` is the single parser: the REST API, the admin form and the command all
hand it their input and get either options or field messages back. `to_dict` is canonical (the same
options always give the same dict), so it can be stored with an export and hashed into its digest.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime

FORMATS = (
    "preference",
    "preference-conversational",
    "preference-conversational-implicit",
    "unpaired",
    "unpaired-conversational",
    "hh-rlhf",
    "rankings",
    "sft",
    "prompt-completion",
    "prompt-completion-conversational",
    "edits",
    "edits-conversational",
    "prompt-only",
    "prompt-only-conversational",
    "judgments",
    "gold",
)
# Formats made of people's answers (`feedback.export.answers`): demonstrations and edits, with chosen
# model answers from judgments as an option of the prompt-completion ones.
EDIT_FORMATS = frozenset({"edits", "edits-conversational"})
ANSWER_FORMATS = frozenset({"prompt-completion", "prompt-completion-conversational"}) | EDIT_FORMATS
# Formats made of the projects' prompts alone, for online methods that generate their own completions.
PROMPT_FORMATS = frozenset({"prompt-only", "prompt-only-conversational"})
# Which people's answers a prompt-completion export takes: "written" (demonstrations), "edited" (model
# answers people improved), "chosen" (the model answers judgments preferred).
ANSWER_SOURCES = ("chosen", "edited", "written")
DEFAULT_ANSWER_SOURCES = ("edited", "written")
EDIT_PAIRS = ("edit-over-original", "expanded")
# Options that only some formats read: left out of the canonical dict elsewhere, so that adding them
# changed no earlier export's digest.
FORMAT_OPTIONS = {
    "answers": (frozenset({"prompt-completion", "prompt-completion-conversational"}), DEFAULT_ANSWER_SOURCES),
    "edit_pairs": (EDIT_FORMATS, "edit-over-original"),
}
# Formats whose rows are (chosen, rejected) pairs: the ones with a margin and per-pair vote counts.
PREFERENCE_FORMATS = frozenset(
    {"preference", "preference-conversational", "preference-conversational-implicit", "hh-rlhf"}
)
UNPAIRED_FORMATS = frozenset({"unpaired", "unpaired-conversational"})
# Formats that carry the rubric ratings.
RATED_FORMATS = frozenset({"rankings", "judgments"})
AGGREGATIONS = ("raw", "consensus")
TIE_POLICIES = ("drop", "both-ways")
BOTH_BAD_POLICIES = ("drop", "undesirable")
KWISE_EXPANSIONS = ("all-pairs", "best-vs-rest")
OUTPUTS = ("jsonl", "jsonl.gz", "parquet", "hf-dataset")
EXTRA_COLUMNS = ("margin", "ids", "checkpoints", "category", "agreement", "votes", "reviewed")
SPLITS = ("train", "test")
MAX_LIST_LENGTH = 200
MAX_MARGIN_LEVELS = 10


class ExportOptionsError(ValueError):
    """Bad options: `errors` maps each field to its messages."""

    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors
        super().__init__("; ".join(f"{key}: {' '.join(messages)}" for key, messages in errors.items()))


@dataclass(frozen=True)
class ExportOptions:
    """Everything that decides an export's rows and bytes (the snapshot's mark aside).

    Ties and both-bad: `ties="drop"` leaves a tie out of pair formats; `"both-ways"` writes both orders
    with margin 0 (and, in `sft`, both responses). `both_bad="undesirable"` makes a both-bad judgment two
    label-false rows in `unpaired`; pair formats always drop it, having nothing to prefer. The default
    of `both_bad` is `"undesirable"` for `unpaired` and `"drop"` elsewhere.

    Margin (`margin` column, read by TRL's RewardTrainer): a pairwise preference of strength level `s`
    (1 = weakest) gets `margin_scale[s - 1]`, linear `s` by default; no strength asked gives 1.0; a tie
    kept both ways gives 0.0; a pair from a k-wise ranking gives the rank difference. Consensus rows
    carry the mean margin of the winning votes.
    """

    format: str
    aggregation: str = "raw"
    projects: tuple[str, ...] = ()
    checkpoints: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    min_judgments: int = 1
    min_agreement: float = 0.0
    exclude_flagged: bool = True
    exclude_annotators: tuple[str, ...] = ()
    # Quality: decided as of the snapshot (see feedback.export.quality).
    exclude_suspended: bool = True
    min_gold_accuracy: float = 0.0
    reviewed_only: bool = False
    adjudicated_wins: bool = True
    ties: str = "drop"
    both_bad: str = ""
    kwise: str = "all-pairs"
    margin_scale: tuple[float, ...] = ()
    columns: tuple[str, ...] = ()
    test_fraction: float = 0.0
    split_salt: str = "rankwise"
    output: str = "jsonl"
    answers: tuple[str, ...] = DEFAULT_ANSWER_SOURCES
    edit_pairs: str = "edit-over-original"

    # --- parsing -----------------------------------------------------------------------------------

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> ExportOptions:
        """Parse and validate user input (JSON body, form data, command options).

        Lists may be given as lists or comma-separated strings; booleans as JSON booleans or the
        strings true/false/1/0. Unknown keys are refused. Raises ExportOptionsError.
        """
        errors: dict[str, list[str]] = {}
        known = {item.name for item in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            errors["non_field_errors"] = [f"Unknown options: {', '.join(unknown)}."]
        values: dict[str, Any] = {}

        def fail(name: str, message: str) -> None:
            errors.setdefault(name, []).append(message)

        def choice(name: str, allowed: tuple[str, ...], default: str | None = None) -> None:
            raw = data.get(name, default)
            if raw is None:
                fail(name, "This field is required.")
            elif raw not in allowed:
                fail(name, f"{raw!r} is not one of: {', '.join(allowed)}.")
            else:
                values[name] = raw

        choice("format", FORMATS)
        choice("aggregation", AGGREGATIONS, "raw")
        choice("ties", TIE_POLICIES, "drop")
        choice("kwise", KWISE_EXPANSIONS, "all-pairs")
        choice("output", OUTPUTS, "jsonl")
        choice("edit_pairs", EDIT_PAIRS, "edit-over-original")
        answers = _string_list(data.get("answers", DEFAULT_ANSWER_SOURCES))
        if answers is None or not answers or set(answers) - set(ANSWER_SOURCES):
            fail("answers", f"A non-empty list of: {', '.join(ANSWER_SOURCES)}.")
        else:
            values["answers"] = tuple(sorted(set(answers)))
        both_bad = data.get("both_bad") or (
            "undesirable" if data.get("format") in UNPAIRED_FORMATS else "drop"
        )
        if both_bad not in BOTH_BAD_POLICIES:
            fail("both_bad", f"{both_bad!r} is not one of: {', '.join(BOTH_BAD_POLICIES)}.")
        values["both_bad"] = both_bad

        is_consensus = data.get("aggregation") == "consensus" and data.get("format") in (
            set(FORMATS) - {"judgments"} - ANSWER_FORMATS - PROMPT_FORMATS
        )
        default_columns = ("agreement", "votes", "reviewed") if is_consensus else ()
        for name in ("projects", "checkpoints", "exclude_annotators", "columns"):
            parsed = _string_list(data.get(name, default_columns if name == "columns" else ()))
            if parsed is None:
                fail(name, "A list of strings (or one comma-separated string).")
            elif len(parsed) > MAX_LIST_LENGTH:
                fail(name, f"At most {MAX_LIST_LENGTH} entries.")
            else:
                values[name] = tuple(sorted(set(parsed)))
        bad_columns = sorted(set(values.get("columns", ())) - set(EXTRA_COLUMNS))
        if bad_columns:
            fail(
                "columns",
                f"Unknown columns {', '.join(bad_columns)}; choose from {', '.join(EXTRA_COLUMNS)}.",
            )

        for name in ("since", "until"):
            raw = data.get(name)
            if raw in (None, ""):
                values[name] = None
                continue
            moment = raw if isinstance(raw, datetime) else _parse_moment(raw)
            if moment is None:
                fail(name, "An ISO 8601 date-time, e.g. 2026-11-01T00:00:00Z.")
                continue
            if timezone.is_naive(moment):
                moment = timezone.make_aware(moment, timezone.get_current_timezone())
            values[name] = moment.astimezone(UTC)
        if values.get("since") and values.get("until") and values["since"] >= values["until"]:
            fail("until", "Must be after since.")

        min_judgments = _integer(data.get("min_judgments", 1))
        if min_judgments is None or not 1 <= min_judgments <= 1000:
            fail("min_judgments", "An integer from 1 to 1000.")
        else:
            values["min_judgments"] = min_judgments
        for name, default, low, high in (
            ("min_agreement", 0.0, 0.0, 1.0),
            ("test_fraction", 0.0, 0.0, 0.9),
            ("min_gold_accuracy", 0.0, 0.0, 1.0),
        ):
            number = _number(data.get(name, default))
            if number is None or not low <= number <= high:
                fail(name, f"A number from {low:g} to {high:g}.")
            else:
                values[name] = number
        for name, default in (
            ("exclude_flagged", True),
            ("exclude_suspended", True),
            ("reviewed_only", False),
            ("adjudicated_wins", True),
        ):
            flag = _boolean(data.get(name, default))
            if flag is None:
                fail(name, "true or false.")
            else:
                values[name] = flag

        salt = data.get("split_salt", "rankwise")
        if not isinstance(salt, str) or not salt or len(salt) > 100 or "\x00" in salt:
            fail("split_salt", "A non-empty string of at most 100 characters.")
        else:
            values["split_salt"] = salt

        scale = data.get("margin_scale", ())
        if isinstance(scale, str):
            scale = [part for part in scale.split(",") if part.strip()]
        numbers = [_number(item) for item in scale] if isinstance(scale, list | tuple) else [None]
        if any(number is None for number in numbers) or len(numbers) > MAX_MARGIN_LEVELS:
            fail("margin_scale", f"At most {MAX_MARGIN_LEVELS} finite numbers, one per strength level.")
        elif any(number < 0 for number in numbers if number is not None):
            fail("margin_scale", "Margins cannot be negative.")
        else:
            values["margin_scale"] = tuple(float(number) for number in numbers if number is not None)

        if not errors:
            _check_combination(values, fail)
        if errors:
            raise ExportOptionsError(errors)
        return cls(**values)

    # --- canonical form ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready and canonical: what is stored with an export and hashed into its digest. Options
        that the format does not read are left out (`FORMAT_OPTIONS`)."""
        result = canonical_dict(self)
        for name, (formats, _) in FORMAT_OPTIONS.items():
            if self.format not in formats:
                del result[name]
        return result

    def margin_for_strength(self, strength: int | None) -> float:
        if strength is None:
            return 1.0
        if self.margin_scale:
            return self.margin_scale[min(strength, len(self.margin_scale)) - 1]
        return float(strength)


def canonical_dict(record: Any) -> dict[str, Any]:
    """A frozen dataclass of options as canonical JSON-ready values: moments in UTC ISO 8601 with Z,
    tuples as lists (the same options always give the same dict)."""
    result: dict[str, Any] = {}
    for item in dataclasses.fields(record):
        value = getattr(record, item.name)
        if isinstance(value, datetime):
            value = value.astimezone(UTC).isoformat().replace("+00:00", "Z")
        elif isinstance(value, tuple):
            value = list(value)
        result[item.name] = value
    return result


def _check_combination(values: dict[str, Any], fail: Any) -> None:
    export_format = values["format"]
    for name, (formats, default) in FORMAT_OPTIONS.items():
        if export_format not in formats and values[name] != default:
            fail(name, f"Applies to the {', '.join(sorted(formats))} format(s) only.")
    if export_format in ANSWER_FORMATS | PROMPT_FORMATS:
        if values["aggregation"] != "raw" and (
            export_format not in ("prompt-completion", "prompt-completion-conversational")
            or "chosen" not in values["answers"]
        ):
            fail("aggregation", "People's answers and prompts are not aggregated: use aggregation 'raw'.")
        if values["columns"]:
            fail("columns", "This format carries its own fields; extra columns do not apply.")
    if export_format == "judgments" and values["aggregation"] != "raw":
        fail("aggregation", "The judgments format is one row per judgment: use aggregation 'raw'.")
    if export_format == "gold" and values["aggregation"] != "raw":
        fail(
            "aggregation",
            "The gold format is one row per gold item with every answer: use aggregation 'raw'.",
        )
    if export_format == "gold" and values["columns"]:
        fail("columns", "The gold format carries its own fields; extra columns do not apply.")
    if export_format in UNPAIRED_FORMATS and values["ties"] == "both-ways":
        fail("ties", "A tie says nothing about desirability: unpaired exports drop ties.")
    if values["both_bad"] == "undesirable" and export_format not in UNPAIRED_FORMATS:
        fail("both_bad", "'undesirable' applies to the unpaired formats only; pair formats drop both-bad.")
    if "margin" in values["columns"] and export_format not in PREFERENCE_FORMATS:
        fail("columns", f"The margin column exists in the {', '.join(sorted(PREFERENCE_FORMATS))} formats.")
    if export_format == "judgments" and values["columns"]:
        fail("columns", "The judgments format already carries every field; extra columns do not apply.")
    if "votes" in values["columns"] and values["aggregation"] != "consensus":
        fail("columns", "The votes column exists in consensus exports only.")


def _string_list(raw: Any) -> list[str] | None:
    if isinstance(raw, str):
        raw = [part.strip() for part in raw.split(",") if part.strip()]
    if not isinstance(raw, list | tuple):
        return None
    if not all(isinstance(item, str) and item and len(item) <= 200 and "\x00" not in item for item in raw):
        return None
    return list(raw)


def _parse_moment(raw: Any) -> datetime | None:
    if not isinstance(raw, str):
        return None
    try:
        return parse_datetime(raw.strip())
    except ValueError:
        return None


def _integer(raw: Any) -> int | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and raw.strip().lstrip("-").isdigit():
        return int(raw)
    return None


def _number(raw: Any) -> float | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, str):
        try:
            raw = float(raw)
        except ValueError:
            return None
    if isinstance(raw, int | float) and math.isfinite(raw):
        return float(raw)
    return None


def _boolean(raw: Any) -> bool | None:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.lower() in ("true", "1", "yes", "false", "0", "no"):
        return raw.lower() in ("true", "1", "yes")
    return None
