"""From judgments of one comparison to dataset rows, for every format and both aggregations.

A judgment (or, under `consensus`, the majority of a comparison's judgments) becomes *preferences*: ordered
pairs of display positions with a margin, plus ties and a both-bad verdict. Each format turns those into
rows, a list per comparison. Row dicts are built in their schema's column order, which is also the JSON
key order: the order is part of the bytes an export promises to reproduce.

Agreement of a comparison: for pairwise projects, the share of its judgments that made the majority
choice (A, B, tie or both bad); for k-wise, the mean over pairs of positions of the share of judgments
that order the pair as the consensus does (a tie agreeing with a tie). One judgment agrees with itself: 1.
Consensus ranking (k-wise): positions ordered by mean rank; equal means are tied (dense ranks).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from feedback.export.options import ExportOptions
from feedback.export.quality import ExportQuality
from feedback.export.source import ComparisonGroup, JudgmentRecord
from feedback.models import position_label
from feedback.prompting import completion_prompt_render
from feedback.quality.gold import gold_correct, verdict_labels

Row = dict[str, Any]


@dataclass(slots=True)
class Preference:
    """`chosen` over `rejected` (display positions); `tie` when neither is preferred."""

    chosen: int
    rejected: int
    margin: float
    tie: bool = False
    votes: tuple[int, int, int, int] | None = None  # chosen, rejected, tie, both bad (consensus only)


@dataclass(slots=True)
class Verdict:
    """What one judgment, or a comparison's consensus, says."""

    judgments: list[JudgmentRecord]
    choice: str  # a, b, tie, both_bad or ranked
    ranks: Sequence[float]  # per position, 1 = best; equal ranks tie
    margin: float | None  # pairwise preference margin (mean over the winning votes under consensus)
    agreement: float
    ratings: list[dict[str, float | None]] = field(default_factory=list)
    votes: Counter[str] | None = None
    reviewed: bool = False  # the verdict is a reviewer's final word, not the vote


def split_of(content_hash: str, options: ExportOptions) -> str:
    """train or test, fixed by the prompt's content (so equal prompts share a split) and the salt."""
    if options.test_fraction <= 0:
        return "train"
    digest = hashlib.sha256(f"{options.split_salt}\x00{content_hash}".encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") / 2**64 < options.test_fraction else "train"


PROMPT_CACHE_SIZE = 4_096


class PromptTexts:
    """The prompt as one string, the project's completion template rendered as base checkpoints were
    prompted; one per export, so comparisons of one prompt (adjacent in id order) share the rendering.
    Bounded: emptied when full."""

    def __init__(self) -> None:
        self._texts: dict[int, str] = {}

    def __call__(self, group: ComparisonGroup) -> str:
        text = self._texts.get(group.prompt_pk)
        if text is None:
            if len(self._texts) >= PROMPT_CACHE_SIZE:
                self._texts.clear()
            text = completion_prompt_render(
                template=group.completion_template, conversation=group.conversation
            )
            self._texts[group.prompt_pk] = text
        return text


# --- verdicts ---------------------------------------------------------------------------------------------


def comparison_agreement(group: ComparisonGroup, judgments: Sequence[JudgmentRecord]) -> float:
    if len(judgments) <= 1:
        return 1.0
    choices = [judgment.choice for judgment in judgments]
    if "ranked" not in choices:
        return max(map(choices.count, set(choices))) / len(choices)
    consensus = _mean_ranks([judgment.ranking for judgment in judgments])
    return _pair_agreement(consensus, [judgment.ranking for judgment in judgments])


def raw_verdict(
    group: ComparisonGroup,
    judgment: JudgmentRecord,
    options: ExportOptions,
    axes: Sequence[str],
    agreement: float,
) -> Verdict:
    """What one judgment says; `agreement` is its comparison's."""
    return Verdict(
        judgments=[judgment],
        choice=judgment.choice,
        ranks=judgment.ranking,
        margin=options.margin_for_strength(judgment.strength) if judgment.choice in ("a", "b") else None,
        agreement=agreement,
        ratings=_ratings([judgment], group, axes) if axes else [],
    )


def consensus_verdict(
    group: ComparisonGroup, judgments: Sequence[JudgmentRecord], options: ExportOptions, axes: Sequence[str]
) -> Verdict | None:
    """The majority of a comparison's judgments; None when no choice has a strict plurality."""
    ratings = _ratings(judgments, group, axes)
    if all(judgment.choice != "ranked" for judgment in judgments):
        votes = Counter(judgment.choice for judgment in judgments)
        ranked = votes.most_common()
        if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
            return None
        choice = ranked[0][0]
        winners = [judgment for judgment in judgments if judgment.choice == choice]
        margin = None
        if choice in ("a", "b"):
            margin = sum(options.margin_for_strength(judgment.strength) for judgment in winners) / len(
                winners
            )
        return Verdict(
            judgments=list(judgments),
            choice=choice,
            ranks=winners[0].ranking,
            margin=margin,
            agreement=votes[choice] / len(judgments),
            ratings=ratings,
            votes=votes,
        )
    rankings = [judgment.ranking for judgment in judgments]
    mean_ranks = _mean_ranks(rankings)
    return Verdict(
        judgments=list(judgments),
        choice="ranked",
        ranks=mean_ranks,
        margin=None,
        agreement=_pair_agreement(mean_ranks, rankings),
        ratings=ratings,
    )


def adjudicated_verdict(
    group: ComparisonGroup,
    judgments: Sequence[JudgmentRecord],
    options: ExportOptions,
    axes: Sequence[str],
    decided: Mapping[str, Any],
) -> Verdict:
    """A reviewer's final verdict on the comparison, with the judgments' votes and agreement beside it."""
    choice = decided["choice"]
    votes = Counter(judgment.choice for judgment in judgments) if choice != "ranked" else None
    return Verdict(
        judgments=list(judgments),
        choice=choice,
        ranks=decided["ranking"],
        margin=options.margin_for_strength(decided.get("strength")) if choice in ("a", "b") else None,
        agreement=comparison_agreement(group, judgments),
        ratings=_ratings(judgments, group, axes),
        votes=votes,
        reviewed=True,
    )


def _mean_ranks(rankings: Sequence[Sequence[int]]) -> list[float]:
    return [
        sum(ranking[position] for ranking in rankings) / len(rankings) for position in range(len(rankings[0]))
    ]


def dense_ranks(values: Sequence[float]) -> list[int]:
    order = {value: index for index, value in enumerate(sorted(set(values)), start=1)}
    return [order[value] for value in values]


def _pair_agreement(consensus: Sequence[float], rankings: Sequence[Sequence[int]]) -> float:
    size = len(consensus)
    if size < 2:
        return 1.0
    shares = []
    for first in range(size):
        for second in range(first + 1, size):
            expected = _sign(consensus[second] - consensus[first])
            agreeing = sum(1 for ranking in rankings if _sign(ranking[second] - ranking[first]) == expected)
            shares.append(agreeing / len(rankings))
    return sum(shares) / len(shares)


def _sign(value: float) -> int:
    return (value > 0) - (value < 0)


def _ratings(
    judgments: Sequence[JudgmentRecord], group: ComparisonGroup, axes: Sequence[str]
) -> list[dict[str, float | None]]:
    """Per position, per axis: the score (raw) or the mean over the judgments that gave one. Only the
    rankings and judgments formats carry ratings; the others pass no axes and get none."""
    if not axes:
        return []
    result = []
    for entry in group.entries:
        key = str(entry.response_id)
        scores: dict[str, float | None] = {}
        for axis in axes:
            given = [
                judgment.ratings[key][axis]
                for judgment in judgments
                if key in judgment.ratings and axis in judgment.ratings[key]
            ]
            scores[axis] = sum(given) / len(given) if given else None
        result.append(scores)
    return result


def preferences(verdict: Verdict, options: ExportOptions) -> list[Preference]:
    """Ordered pairs from a verdict. Ties are included (marked) for the format to keep or drop;
    both-bad yields none."""
    if verdict.choice == "both_bad":
        return []
    votes = verdict.votes
    if verdict.choice in ("a", "b", "tie"):
        chosen, rejected = (1, 0) if verdict.choice == "b" else (0, 1)
        counts = None
        if votes is not None:
            for_chosen = votes["b" if verdict.choice == "b" else "a"]
            for_rejected = votes["a" if verdict.choice == "b" else "b"]
            counts = (for_chosen, for_rejected, votes["tie"], votes["both_bad"])
        if verdict.choice == "tie":
            return [Preference(0, 1, 0.0, tie=True, votes=counts)]
        return [Preference(chosen, rejected, verdict.margin or 0.0, votes=counts)]
    ranks = verdict.ranks
    positions = range(len(ranks))
    if options.kwise == "best-vs-rest":
        best = min(ranks)
        leaders = [position for position in positions if ranks[position] == best]
        pairs = [(leader, other) for leader in leaders for other in positions if other != leader]
        pairs = [(first, second) for first, second in pairs if first < second or ranks[second] != best]
    else:
        pairs = [(first, second) for first in positions for second in positions if first < second]
    result = []
    for first, second in pairs:
        difference = ranks[second] - ranks[first]
        pair_votes = _pair_votes(verdict, first, second) if options.aggregation == "consensus" else None
        if difference == 0:
            result.append(Preference(first, second, 0.0, tie=True, votes=pair_votes))
        elif difference > 0:
            result.append(Preference(first, second, float(difference), votes=pair_votes))
        else:
            swapped = (pair_votes[1], pair_votes[0], pair_votes[2], pair_votes[3]) if pair_votes else None
            result.append(Preference(second, first, float(-difference), votes=swapped))
    return result


def _pair_votes(verdict: Verdict, first: int, second: int) -> tuple[int, int, int, int]:
    ahead = behind = level = 0
    for judgment in verdict.judgments:
        sign = _sign(judgment.ranking[second] - judgment.ranking[first])
        if sign > 0:
            ahead += 1
        elif sign < 0:
            behind += 1
        else:
            level += 1
    return (ahead, behind, level, 0)


# --- formats ---------------------------------------------------------------------------------------------


class RowContext:
    """One comparison's shared inputs to its rows; the prompt string is rendered on first use."""

    __slots__ = ("_prompt", "_prompt_texts", "axes", "columns", "group", "options", "quality")

    def __init__(
        self,
        group: ComparisonGroup,
        options: ExportOptions,
        axes: tuple[str, ...],
        prompt_texts: PromptTexts,
        quality: ExportQuality | None = None,
    ):
        self.group = group
        self.quality = quality
        self.options = options
        self.axes = axes
        self.columns = options.columns
        self._prompt_texts = prompt_texts
        self._prompt: str | None = None

    def prompt_text(self) -> str:
        if self._prompt is None:
            self._prompt = self._prompt_texts(self.group)
        return self._prompt

    def finish(self, row: Row, verdict: Verdict, preference: Preference | None, **naming: Any) -> Row:
        """The row with its optional columns (none asked: the row as it is)."""
        if not self.columns:
            return row
        return _extras(row, self, verdict, preference, **naming)


def _messages(conversation: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{"role": message["role"], "content": message["content"]} for message in conversation]


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def hh_transcript(conversation: list[dict[str, str]], answer: str) -> str:
    """Anthropic HH style: "\\n\\nHuman: …\\n\\nAssistant: …". A system message has no HH role: its
    text opens the first human turn, followed by a blank line."""
    parts: list[str] = []
    system = "\n\n".join(message["content"] for message in conversation if message["role"] == "system")
    for message in conversation:
        if message["role"] == "system":
            continue
        content = message["content"]
        if message["role"] == "user":
            if system:
                content, system = f"{system}\n\n{content}", ""
            parts.append(f"\n\nHuman: {content}")
        else:
            parts.append(f"\n\nAssistant: {content}")
    parts.append(f"\n\nAssistant: {answer}")
    return "".join(parts)


def _extras(
    row: Row,
    context: RowContext,
    verdict: Verdict,
    preference: Preference | None,
    *,
    positions: Sequence[int],
    naming: str,
) -> Row:
    """The optional columns, in a fixed order. `naming` says how per-response columns are named:
    "pair" (chosen_x, rejected_x), "single" (x) or "list" (xs)."""
    group = context.group
    columns = context.columns
    entries = group.entries
    if "margin" in columns and preference is not None:
        row["margin"] = preference.margin
    if "ids" in columns:
        row["comparison_id"] = group.comparison_id
        row["prompt_id"] = group.prompt_id
        if context.options.aggregation == "raw":
            row["judgment_id"] = verdict.judgments[0].id
        else:
            row["judgment_ids"] = [judgment.id for judgment in verdict.judgments]
        _per_response(row, "response_id", [entries[position].response_id for position in positions], naming)
    if "checkpoints" in columns:
        _per_response(row, "checkpoint", [entries[position].checkpoint for position in positions], naming)
    if "category" in columns:
        row["category"] = group.category
    if "agreement" in columns:
        row["agreement"] = verdict.agreement
    if "votes" in columns:
        row["judgment_count"] = len(verdict.judgments)
        if preference is not None:
            votes = preference.votes or (0, 0, 0, 0)
            row["votes_chosen"], row["votes_rejected"], row["votes_tie"], row["votes_both_bad"] = votes
    if "reviewed" in columns:
        row["reviewed"] = verdict.reviewed
    return row


def _per_response(row: Row, name: str, values: list[Any], naming: str) -> None:
    if naming == "pair":
        row[f"chosen_{name}"], row[f"rejected_{name}"] = values
    elif naming == "single":
        row[name] = values[0]
    else:
        row[f"{name}s"] = values


def pair_rows(context: RowContext, verdict: Verdict) -> list[Row]:
    """preference, preference-conversational and hh-rlhf."""
    group = context.group
    options = context.options
    export_format = options.format
    entries = group.entries
    rows = []
    for preference in preferences(verdict, options):
        orders = [(preference.chosen, preference.rejected)]
        if preference.tie:
            if options.ties == "drop":
                continue
            orders.append((preference.rejected, preference.chosen))
        for chosen, rejected in orders:
            if export_format == "preference":
                row: Row = {
                    "prompt": context.prompt_text(),
                    "chosen": entries[chosen].text,
                    "rejected": entries[rejected].text,
                }
            elif export_format == "preference-conversational":
                row = {
                    "prompt": _messages(group.conversation),
                    "chosen": _assistant(entries[chosen].text),
                    "rejected": _assistant(entries[rejected].text),
                }
            elif export_format == "preference-conversational-implicit":
                row = {
                    "chosen": _messages(group.conversation) + _assistant(entries[chosen].text),
                    "rejected": _messages(group.conversation) + _assistant(entries[rejected].text),
                }
            else:
                row = {
                    "chosen": hh_transcript(group.conversation, entries[chosen].text),
                    "rejected": hh_transcript(group.conversation, entries[rejected].text),
                }
            rows.append(context.finish(row, verdict, preference, positions=(chosen, rejected), naming="pair"))
    return rows


def _best_positions(verdict: Verdict) -> tuple[list[int], list[int]]:
    """(best, rest) by rank; everything tied gives no best."""
    best = min(verdict.ranks)
    leaders = [position for position, rank in enumerate(verdict.ranks) if rank == best]
    if len(leaders) == len(verdict.ranks):
        return [], []
    return leaders, [position for position in range(len(verdict.ranks)) if position not in leaders]


def unpaired_rows(context: RowContext, verdict: Verdict) -> list[Row]:
    """KTO: the preferred response(s) labelled true, the others false; both-bad gives all false. The
    conversational format keeps the messages and gives the completion as an assistant message."""
    group = context.group
    if verdict.choice == "both_bad":
        if context.options.both_bad != "undesirable":
            return []
        labelled = [(position, False) for position in range(len(group.entries))]
    elif verdict.choice == "tie":
        return []
    else:
        best, rest = _best_positions(verdict)
        if len(best) != 1:
            return []  # all tied, or tied winners: the judgment does not say which is desirable
        labelled = [(best[0], True)] + [(position, False) for position in rest]
    conversational = context.options.format == "unpaired-conversational"
    return [
        context.finish(
            {
                "prompt": _messages(group.conversation) if conversational else context.prompt_text(),
                "completion": _assistant(group.entries[position].text)
                if conversational
                else group.entries[position].text,
                "label": label,
            },
            verdict,
            None,
            positions=(position,),
            naming="single",
        )
        for position, label in labelled
    ]


def _winners(context: RowContext, verdict: Verdict) -> list[int]:
    """The preferred answers' positions; tied winners only with ties=both-ways; none after both-bad."""
    if verdict.choice == "both_bad":
        return []
    if verdict.choice == "tie":
        winners = list(range(len(context.group.entries)))
    else:
        winners, _ = _best_positions(verdict)
    if len(winners) > 1 and context.options.ties == "drop":
        return []
    return winners


def sft_rows(context: RowContext, verdict: Verdict) -> list[Row]:
    """The conversation with the preferred answer appended."""
    group = context.group
    return [
        context.finish(
            {"messages": _messages(group.conversation) + _assistant(group.entries[position].text)},
            verdict,
            None,
            positions=(position,),
            naming="single",
        )
        for position in _winners(context, verdict)
    ]


def chosen_completion_rows(context: RowContext, verdict: Verdict) -> list[Row]:
    """prompt-completion (standard or conversational) from the model answers judgments preferred, when
    the export takes "chosen" answers (`feedback.export.answers` writes the people's)."""
    group = context.group
    conversational = context.options.format == "prompt-completion-conversational"
    return [
        {
            "prompt": _messages(group.conversation),
            "completion": _assistant(group.entries[position].text),
        }
        if conversational
        else {"prompt": context.prompt_text(), "completion": group.entries[position].text}
        for position in _winners(context, verdict)
    ]


def ranking_rows(context: RowContext, verdict: Verdict) -> list[Row]:
    group = context.group
    ranks = dense_ranks(verdict.ranks)
    row: Row = {
        "prompt": context.prompt_text(),
        "completions": [entry.text for entry in group.entries],
        "ranks": ranks,
        "all_bad": verdict.choice == "both_bad",
    }
    if context.axes:
        row["ratings"] = verdict.ratings
    return [context.finish(row, verdict, None, positions=range(len(group.entries)), naming="list")]


def judgment_rows(context: RowContext, verdict: Verdict) -> list[Row]:
    group = context.group
    judgment = verdict.judgments[0]
    labels = group.strength_labels
    row: Row = {
        "judgment_id": judgment.id,
        "comparison_id": group.comparison_id,
        "project": group.project,
        "prompt_id": group.prompt_id,
        "conversation": _messages(group.conversation),
        "category": group.category,
        "responses": _shown_responses(group, checkpoint=True),
        "annotator_id": judgment.annotator_id,
        "annotator": judgment.annotator,
        "choice": judgment.choice,
        "ranking": list(judgment.ranking),
        "strength": judgment.strength,
        "strength_label": labels[judgment.strength - 1]
        if judgment.strength and judgment.strength <= len(labels)
        else None,
        "rationale": judgment.rationale,
        "flags": list(judgment.flags),
        "time_spent_ms": judgment.time_spent_ms,
        "created_at": judgment.created_at.isoformat().replace("+00:00", "Z") if judgment.created_at else None,
        "agreement": verdict.agreement,
        # The annotator's gold accuracy in the project at the snapshot; None without gold answers.
        "gold_accuracy": context.quality.gold_accuracy(group.project, judgment.annotator_id)
        if context.quality is not None
        else None,
        "reviewed": context.quality is not None and context.quality.decided(group.comparison_id) is not None,
    }
    if context.axes:
        row["ratings"] = verdict.ratings
    return [row]


def _shown_responses(group: ComparisonGroup, *, checkpoint: bool) -> list[dict[str, Any]]:
    """The responses as shown, in display order; with the checkpoint that wrote each, or without."""
    return [
        {
            "response_id": entry.response_id,
            "position": entry.position,
            "label": position_label(entry.position),
            **({"checkpoint": entry.checkpoint} if checkpoint else {}),
            "text": entry.text,
        }
        for entry in group.entries
    ]


def gold_row(context: RowContext) -> Row:
    """One gold item: what annotators were shown, the expected verdict (by the labels shown), and every
    answer with whether it was right."""
    group = context.group
    verdict, explanation = (
        context.quality.verdicts.get(group.comparison_id, ({}, "")) if context.quality else ({}, "")
    )
    shown = [entry.response_id for entry in group.entries]
    answers = []
    for judgment in group.judgments:
        correct = (
            gold_correct(verdict, choice=judgment.choice, ranking=judgment.ranking, response_ids=shown)
            if verdict
            else None
        )
        answers.append(
            {
                "judgment_id": judgment.id,
                "annotator_id": judgment.annotator_id,
                "annotator": judgment.annotator,
                "choice": judgment.choice,
                "ranking": list(judgment.ranking),
                "correct": correct,
                "created_at": judgment.created_at.isoformat().replace("+00:00", "Z")
                if judgment.created_at
                else None,
            }
        )
    return {
        "comparison_id": group.comparison_id,
        "project": group.project,
        "prompt_id": group.prompt_id,
        "conversation": _messages(group.conversation),
        "category": group.category,
        "responses": _shown_responses(group, checkpoint=False),
        "expected": verdict_labels(verdict, response_ids=shown) if verdict else None,
        "explanation": explanation,
        "answered": len(answers),
        "correct": sum(bool(answer["correct"]) for answer in answers),
        "answers": answers,
    }


ROW_BUILDERS: dict[str, Callable[[RowContext, Verdict], list[Row]]] = {
    "preference": pair_rows,
    "preference-conversational": pair_rows,
    "preference-conversational-implicit": pair_rows,
    "hh-rlhf": pair_rows,
    "unpaired": unpaired_rows,
    "unpaired-conversational": unpaired_rows,
    "sft": sft_rows,
    "prompt-completion": chosen_completion_rows,
    "prompt-completion-conversational": chosen_completion_rows,
    "rankings": ranking_rows,
    "judgments": judgment_rows,
}


def group_rows(
    group: ComparisonGroup,
    options: ExportOptions,
    axes: tuple[str, ...],
    *,
    agreement: float,
    prompt_texts: PromptTexts,
    quality: ExportQuality | None = None,
) -> list[Row]:
    """Every row one comparison contributes, after the comparison-level filters. `agreement` is the
    comparison's (`comparison_agreement`), computed once by the caller."""
    judgments = group.judgments
    if len(judgments) < options.min_judgments or agreement < options.min_agreement:
        return []
    context = RowContext(group, options, axes, prompt_texts, quality)
    if options.format == "gold":
        return [gold_row(context)]
    build = ROW_BUILDERS[options.format]
    if options.aggregation == "consensus":
        decided = (
            quality.decided(group.comparison_id) if quality is not None and options.adjudicated_wins else None
        )
        if decided is not None:
            return build(context, adjudicated_verdict(group, judgments, options, axes, decided))
        verdict = consensus_verdict(group, judgments, options, axes)
        return build(context, verdict) if verdict is not None else []
    rows: list[Row] = []
    for judgment in judgments:
        rows += build(context, raw_verdict(group, judgment, options, axes, agreement))
    return rows
