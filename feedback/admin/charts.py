"""Charts for admin pages, drawn on the server by matplotlib into SVG markup that the page embeds inline.

Matplotlib's object API with its SVG canvas (`FigureCanvasSVG`) is used directly, never pyplot: no
global backend is chosen (`matplotlib.use` is never called, so nothing else that imports matplotlib is
affected), no GUI toolkit is touched, and figures are not kept in a global registry between requests.

What reaches the page is safe to inline under a strict Content-Security-Policy:
- text is written as SVG `<text>` (`svg.fonttype: none`), which matplotlib escapes; math parsing is off,
  so a `$` in a username is text, not TeX;
- the heatmap is vector cells (`pcolormesh`), never an embedded raster image;
- `svg_markup` refuses markup with a script, a foreign object, an event handler or any reference that
  is not to an element of the same chart, so it is the one place that marks matplotlib's output safe;
- ids are prefixed with the chart's name, so several charts on one page never share one;
- output is deterministic: the same figures give the same bytes (`svg.hashsalt` fixed per chart, no
  date or creator metadata).
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe
from matplotlib import colormaps, rc_context
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, date2num
from matplotlib.figure import Figure
from matplotlib.typing import RcKeyType

STYLE: dict[RcKeyType, Any] = {
    "svg.fonttype": "none",
    "text.parse_math": False,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#dddddd",
    "grid.linewidth": 0.6,
}
UNGRIDDED: dict[RcKeyType, Any] = {**STYLE, "axes.grid": False}
# Figures are this wide (inches at 72 points each); the page scales them down on narrow screens.
WIDTH = 6.2
# Above this many points, only the ones that need attention carry their username.
LABELLED_POINTS = 25
# Cells show their number in the heatmap up to this many annotators.
ANNOTATED_CELLS = 12
# Kappa's colours come in steps (of 0.1 from -1 to 1): easier to read, and a small vector colour bar.
KAPPA_STEPS = 20
ACTIVE_COLOUR, WARNED_COLOUR, SUSPENDED_COLOUR = "#2f6f9f", "#d08a00", "#c0392b"
CHANCE_COLOUR = "#555555"

# Every tag of the markup: text between tags cannot hold "<" or ">" (matplotlib escapes them).
_TAG = re.compile(r"<[^<>]*>")
_FORBIDDEN = re.compile(
    r"^</?\s*(script|foreignObject|iframe|object|embed|image)\b|\son\w+\s*=|javascript:", re.I
)
_REFERENCE = re.compile(r"(?:href=\"|url\()([^\")]*)")


@dataclass(frozen=True)
class AccuracyPoint:
    """An annotator on the accuracy-against-volume chart: gold accuracy with its Wilson interval."""

    username: str
    judgments: int
    accuracy: float
    low: float
    high: float
    status: str  # active, warned, suspended


@dataclass(frozen=True)
class ShareBar:
    """An annotator's share of decisive judgments that put the response shown first ahead."""

    username: str
    share: float
    decisive: int
    beyond_chance: bool


def svg_markup(figure: Figure, *, name: str, label: str) -> SafeString:
    """The figure as an inline `<svg>` element (no XML prolog), its ids prefixed with `name`, labelled
    for screen readers. Raises ValueError if the markup holds anything that could run or load."""
    buffer = io.StringIO()
    with rc_context({"svg.hashsalt": name}):
        FigureCanvasSVG(figure).print_svg(
            buffer, metadata={"Date": None, "Creator": None, "Format": None, "Type": None}
        )
    markup = buffer.getvalue()
    markup = markup[markup.index("<svg") :]
    markup = re.sub(r"\s*<metadata>.*?</metadata>", "", markup, flags=re.S)
    markup = _TAG.sub(lambda tag: _tag_checked(tag.group(0), name), markup)
    opening = format_html('<svg role="img" aria-label="{}" class="chart" ', label)
    # Safe: matplotlib escaped every text it wrote (usernames included), and the checks above hold.
    return mark_safe(markup.replace("<svg ", opening, 1))  # noqa: S308


def _tag_checked(tag: str, name: str) -> str:
    """One tag with its ids, and references to them, prefixed by the chart's name; ValueError if it could
    run or load anything. Only tags are looked at: text between them (usernames) is left as matplotlib
    escaped it."""
    if _FORBIDDEN.search(tag):
        raise ValueError(f"chart {name}: the SVG holds markup that could run or load: {tag[:80]}")
    outside = [target for target in _REFERENCE.findall(tag) if not target.startswith("#")]
    if outside:
        raise ValueError(f"chart {name}: the SVG refers outside itself: {outside[0][:80]}")
    tag = re.sub(r'(\sid=")', rf"\1{name}-", tag)
    tag = re.sub(r'(href="#)', rf"\1{name}-", tag)
    return re.sub(r"(url\(#)", rf"\1{name}-", tag)


def _figure(height: float) -> Figure:
    return Figure(figsize=(WIDTH, height), layout="constrained")


def _reference_line(axes: Any, value: float, label: str, *, where: str) -> None:
    """A dashed line at `value` with its label: a horizontal one labelled at its "left" or "right" end,
    or a vertical one labelled above the plot ("top")."""
    position: tuple[float, float]
    if where == "top":
        axes.axvline(value, color=CHANCE_COLOUR, linestyle="--", linewidth=0.8)
        position, coordinates, offset, align = (value, 1.0), ("data", "axes fraction"), (0, 3), "center"
    else:
        axes.axhline(value, color=CHANCE_COLOUR, linestyle="--", linewidth=0.8)
        position, coordinates = (0.0 if where == "left" else 1.0, value), ("axes fraction", "data")
        offset, align = ((3, 2) if where == "left" else (-2, 2)), where
    axes.annotate(
        label,
        xy=position,
        xycoords=coordinates,
        xytext=offset,
        textcoords="offset points",
        ha=align,
        va="bottom",
        color=CHANCE_COLOUR,
    )


def alpha_timeline_svg(moments: Sequence[datetime], alphas: Sequence[float | None]) -> SafeString:
    """Krippendorff's alpha of the choice, of all judgments up to each moment; gaps where undefined."""
    with rc_context(STYLE):
        figure = _figure(3.0)
        axes = figure.add_subplot()
        values = np.array([math.nan if alpha is None else alpha for alpha in alphas], dtype=float)
        axes.plot(
            date2num(list(moments)), values, marker="o", markersize=4, color=ACTIVE_COLOUR, label="alpha"
        )
        for level, meaning in ((0.8, "reliable"), (0.667, "tentative")):
            _reference_line(axes, level, f"{level:g} {meaning}", where="right")
        axes.axhline(0, color="#999999", linewidth=0.8)
        defined = values[~np.isnan(values)]
        axes.set_ylim(min(-0.1, float(defined.min()) - 0.05) if len(defined) else -0.1, 1.02)
        locator = AutoDateLocator()
        axes.xaxis.set_major_locator(locator)
        axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
        axes.set_ylabel("Krippendorff's alpha (choice)")
        axes.set_xlabel("judgments up to")
        return svg_markup(figure, name="alpha-timeline", label="Krippendorff's alpha over time")


def accuracy_volume_svg(
    points: Sequence[AccuracyPoint], *, warn_accuracy: float, suspend_accuracy: float
) -> SafeString:
    """Gold accuracy (with its 95% Wilson interval) against judgments, one point per annotator, marked
    by standing; the project's warning and suspension thresholds as lines."""
    with rc_context(STYLE):
        figure = _figure(3.6)
        axes = figure.add_subplot()
        kinds = (
            ("active", "o", ACTIVE_COLOUR, "active"),
            ("warned", "s", WARNED_COLOUR, "warned"),
            ("suspended", "X", SUSPENDED_COLOUR, "suspended"),
        )
        for status, marker, colour, legend in kinds:
            mine = [point for point in points if point.status == status]
            if not mine:
                continue
            accuracy = np.array([point.accuracy for point in mine])
            errors = np.array(
                [
                    [point.accuracy - point.low for point in mine],
                    [point.high - point.accuracy for point in mine],
                ]
            )
            axes.errorbar(
                [point.judgments for point in mine],
                accuracy,
                yerr=errors,
                fmt=marker,
                color=colour,
                ecolor=colour,
                elinewidth=0.8,
                alpha=0.9,
                markersize=6,
                capsize=2,
                label=legend,
            )
        for level, meaning in ((warn_accuracy, "warning"), (suspend_accuracy, "suspension")):
            # Labelled on the left: the busiest annotators, on the right, would hide a label there.
            _reference_line(axes, level, f"{meaning} {level:.0%}", where="left")
        axes.set_ylim(-0.02, 1.05)
        axes.set_xlim(left=0, right=max((point.judgments for point in points), default=1) * 1.12 + 1)
        labelled = [point for point in points if len(points) <= LABELLED_POINTS or point.status != "active"]
        drops = _label_drops(axes, [(point.judgments, point.accuracy, point.username) for point in labelled])
        for point, drop in zip(labelled, drops, strict=True):
            axes.annotate(
                point.username,
                xy=(point.judgments, point.accuracy),
                xytext=(6, 2 - drop),
                textcoords="offset points",
                fontsize=8,
                va="bottom",
                arrowprops={"arrowstyle": "-", "color": "#999999", "linewidth": 0.5} if drop else None,
            )
        axes.yaxis.set_major_formatter(lambda value, _position: f"{value:.0%}")
        axes.set_xlabel("judgments (gold items apart)")
        axes.set_ylabel("gold accuracy (95% interval)")
        axes.legend(loc="lower right", fontsize=8, frameon=False)
        return svg_markup(
            figure, name="gold-accuracy", label="Gold accuracy against judgments, one point per annotator"
        )


def _label_drops(axes: Any, labels: Sequence[tuple[float, float, str]]) -> list[float]:
    """How far (points) to move each label (x, y, text) down so that it overlaps none placed before it:
    labels are placed top first, each at its point unless a label already sits there. Approximate
    (8-point text about 5 points a character wide), which is enough to keep names apart."""
    height, width_per_character = 10.0, 5.0
    to_points = axes.transData
    scale = 72 / axes.figure.dpi
    placed: list[tuple[float, float, float]] = []  # left, bottom, right
    drops = [0.0] * len(labels)
    order = sorted(range(len(labels)), key=lambda index: (-labels[index][1], labels[index][0]))
    for index in order:
        x, y, text = labels[index]
        left, bottom = (value * scale for value in to_points.transform((x, y)))
        left, right = left + 6, left + 6 + width_per_character * len(text)
        drop = 0.0
        while any(
            left < other_right and other_left < right and abs(bottom - drop - other_bottom) < height
            for other_left, other_bottom, other_right in placed
        ):
            drop += height
        placed.append((left, bottom - drop, right))
        drops[index] = drop
    return drops


def kappa_heatmap_svg(usernames: Sequence[str], kappas: Sequence[Sequence[float | None]]) -> SafeString:
    """Cohen's kappa of every pair of annotators as a symmetric heatmap; blank cells where a pair shares
    too few comparisons (or the diagonal)."""
    return _heatmap(
        usernames,
        kappas,
        limits=(-1.0, 1.0),
        cell_text=lambda value: f"{value:.2f}",
        colour_label="Cohen's kappa",
        name="kappa-heatmap",
        label="Cohen's kappa of each pair of annotators",
    )


def _heatmap(
    names: Sequence[str],
    values_by_row: Sequence[Sequence[float | None]],
    *,
    limits: tuple[float, float],
    cell_text: Any,
    colour_label: str,
    name: str,
    label: str,
    column_label: str = "",
) -> SafeString:
    """A square heatmap of `names` against themselves in stepped red–blue, blank (grey) cells where a value
    is None, each cell's number written in it up to ANNOTATED_CELLS names, and a vector colour bar."""
    count = len(names)
    low, high = limits
    with rc_context(UNGRIDDED):
        side = min(9.0, max(3.4, 1.6 + 0.19 * count))
        figure = Figure(figsize=(side + 1.4, side), layout="constrained")
        axes = figure.add_subplot()
        values = np.array(
            [[math.nan if value is None else value for value in row] for row in values_by_row], dtype=float
        ).reshape(count, count)
        cells = axes.pcolormesh(
            np.ma.masked_invalid(values),
            cmap=colormaps["RdBu"].resampled(KAPPA_STEPS),
            vmin=low,
            vmax=high,
            edgecolors="white",
            linewidth=0.5,
        )
        axes.set_facecolor("#f2f2f2")
        positions = np.arange(count) + 0.5
        axes.set_xticks(positions, labels=list(names), rotation=90, fontsize=8)
        axes.set_yticks(positions, labels=list(names), fontsize=8)
        axes.set_xlim(0, count)
        axes.set_ylim(count, 0)
        axes.set_aspect("equal")
        axes.tick_params(length=0)
        if column_label:
            axes.set_xlabel(column_label)
        middle, half = (low + high) / 2, (high - low) / 2
        if count <= ANNOTATED_CELLS:
            for row in range(count):
                for column in range(count):
                    value = values[row, column]
                    if not math.isnan(value):
                        axes.text(
                            column + 0.5,
                            row + 0.5,
                            cell_text(value),
                            ha="center",
                            va="center",
                            fontsize=7,
                            color="white" if abs(value - middle) > 0.6 * half else "black",
                        )
        colour_bar = figure.colorbar(cells, ax=axes, shrink=0.8)
        colour_bar.set_label(colour_label)
        if colour_bar.solids is not None:
            colour_bar.solids.set_rasterized(False)  # vector, like the cells: no embedded image
        return svg_markup(figure, name=name, label=label)


def first_share_svg(bars: Sequence[ShareBar], *, expected: float) -> SafeString:
    """Each annotator's share of decisive judgments that put the response shown first ahead, as
    horizontal bars, with the share chance gives as a line."""
    with rc_context(UNGRIDDED):
        figure = _figure(max(2.2, 0.9 + 0.24 * len(bars)))
        axes = figure.add_subplot()
        positions = np.arange(len(bars))
        axes.barh(
            positions,
            [bar.share for bar in bars],
            color=[SUSPENDED_COLOUR if bar.beyond_chance else ACTIVE_COLOUR for bar in bars],
            height=0.7,
        )
        axes.set_yticks(positions, labels=[bar.username for bar in bars], fontsize=8)
        axes.set_ylim(len(bars) - 0.5, -0.5)
        _reference_line(axes, expected, f"chance {expected:.0%}", where="top")
        axes.set_xlim(0, 1)
        axes.xaxis.set_major_formatter(lambda value, _position: f"{value:.0%}")
        axes.grid(axis="x", color="#dddddd", linewidth=0.6)
        axes.set_axisbelow(True)
        axes.set_xlabel("share of decisive judgments putting the response shown first (A) ahead")
        return svg_markup(
            figure, name="first-share", label="Share of judgments putting the first-shown response ahead"
        )


# --- the leaderboard -------------------------------------------------------------------------------------

RAW_COLOUR, CONTROLLED_COLOUR = "#2f6f9f", "#d08a00"


@dataclass(frozen=True)
class ForestRow:
    """A checkpoint on the forest plot: its raw and style-controlled scores (Elo scale) with their 95%
    intervals; None where it has no score."""

    name: str
    raw: tuple[float, float, float] | None  # score, low, high
    controlled: tuple[float, float, float] | None


def forest_plot_svg(rows: Sequence[ForestRow], *, reference: float) -> SafeString:
    """Each checkpoint's score with its interval, raw and length/style-controlled side by side (best at
    the top), and the reference's score as a line."""
    with rc_context(STYLE):
        figure = _figure(max(2.2, 1.0 + 0.32 * len(rows)))
        axes = figure.add_subplot()
        positions = np.arange(len(rows), dtype=float)
        for offset, attribute, colour, label, marker in (
            (-0.15, "raw", RAW_COLOUR, "raw", "o"),
            (0.15, "controlled", CONTROLLED_COLOUR, "length and style controlled", "s"),
        ):
            shown = [(index, getattr(row, attribute)) for index, row in enumerate(rows)]
            shown = [(index, value) for index, value in shown if value is not None]
            if not shown:
                continue
            where = np.array([index for index, _ in shown], dtype=float) + offset
            scores = np.array([value[0] for _, value in shown])
            lows = np.array([value[1] for _, value in shown])
            highs = np.array([value[2] for _, value in shown])
            axes.errorbar(
                scores,
                where,
                # A percentile interval may (rarely) leave out its point: draw no negative bar then.
                xerr=np.vstack((scores - lows, highs - scores)).clip(0.0),
                fmt=marker,
                color=colour,
                markersize=4,
                elinewidth=1.2,
                capsize=2,
                label=label,
            )
        axes.set_yticks(positions, labels=[row.name for row in rows], fontsize=8)
        axes.set_ylim(len(rows) - 0.5, -0.5)
        _reference_line(axes, reference, "reference", where="top")
        axes.set_xlabel("score (Elo scale) with its 95% bootstrap interval")
        axes.grid(axis="y", visible=False)
        figure.legend(loc="outside upper center", ncols=2, fontsize=8, frameon=False)
        return svg_markup(
            figure, name="forest", label="Checkpoint scores with 95% intervals, raw and length-controlled"
        )


def win_rate_heatmap_svg(names: Sequence[str], rates: Sequence[Sequence[float | None]]) -> SafeString:
    """The row's share of wins against the column (ties half), blank where two never met."""
    return _heatmap(
        names,
        rates,
        limits=(0.0, 1.0),
        cell_text=lambda value: f"{value:.0%}",
        colour_label="share of wins of the row (ties half)",
        name="win-rate",
        label="Share of wins of each checkpoint against each other",
        column_label="against",
    )


def category_bars_svg(
    categories: Sequence[str],
    names: Sequence[str],
    scores: Sequence[Sequence[tuple[float, float, float] | None]],
) -> SafeString:
    """Per prompt category (a group), each checkpoint's raw score above the reference (a bar) with its
    interval; `scores[category][checkpoint]` is (score, low, high) on the Elo scale, None where absent."""
    with rc_context(STYLE):
        figure = _figure(max(2.6, 1.2 + 0.22 * len(categories) * max(1, len(names))))
        axes = figure.add_subplot()
        height = 0.8 / max(1, len(names))
        palette = colormaps["tab20"]
        for index, name in enumerate(names):
            where, values, lows, highs = [], [], [], []
            for group, row in enumerate(scores):
                value = row[index]
                if value is not None:
                    where.append(group - 0.4 + height * (index + 0.5))
                    values.append(value[0] - 1000.0)
                    lows.append(max(0.0, value[0] - value[1]))
                    highs.append(max(0.0, value[2] - value[0]))
            if where:
                axes.barh(
                    where,
                    values,
                    height=height * 0.9,
                    xerr=np.vstack((lows, highs)),
                    color=palette(index % 20),
                    error_kw={"elinewidth": 0.8, "capsize": 1.5},
                    label=name,
                )
        axes.set_yticks(np.arange(len(categories)), labels=list(categories), fontsize=8)
        axes.set_ylim(len(categories) - 0.5, -0.5)
        axes.axvline(0, color=CHANCE_COLOUR, linewidth=0.8)
        axes.set_xlabel("score above the reference (Elo points) with its 95% interval")
        axes.grid(axis="y", visible=False)
        axes.legend(loc="best", fontsize=7, frameon=False)
        return svg_markup(figure, name="category-bars", label="Checkpoint scores per prompt category")
