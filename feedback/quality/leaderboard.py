"""Bradley–Terry scores of checkpoints from pairwise battles, with bootstrap intervals. Plain numpy: no
ORM (see `feedback/quality/__init__.py`).

The model: the response shown first wins with probability σ(s_first − s_second + δ), where s is a
checkpoint's score in logits and δ the advantage of being shown first (estimated, and reported). A tie
counts as half a win for each side (the convention Chatbot Arena uses); "both bad" is not a battle and is
left out by the caller. Scores are anchored on a reference checkpoint (s = 0) and shown on an Elo-like
scale, `ELO_BASE + ELO_SCALE · s`, so 400 points are a 10:1 odds.

Scores carry a weak Gaussian prior (PRIOR_SCALE logits) so that a checkpoint that won or lost every
battle keeps a finite score; on real data it moves a fit by far less than its interval (tested), and
without it the fits equal independent maximum-likelihood fits to 1e-6 (tested).

The fit works on battles counted per cell (first, second, outcome): there are at most 3·k² cells for k
checkpoints, however many judgments, so a fit and each bootstrap round cost what the checkpoints cost,
not the judgments. The bootstrap resamples the battles with replacement, which is a multinomial draw of
the cells' counts, and fits every round at once by Newton's method on stacked (rounds × parameters)
systems.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import sparse
from scipy.special import expit

from feedback.quality.proportions import CONFIDENCE, wilson

ELO_BASE = 1000.0
ELO_SCALE = 400.0 / np.log(10.0)
FIRST, SECOND, TIE = 0, 1, 2  # outcomes of a battle
NEWTON_STEPS = 100
MAX_STEP = 4.0  # logits: the most a Newton step moves any parameter
NEWTON_TOLERANCE = 1e-10
RIDGE = 1e-9  # keeps the systems solvable where a checkpoint has no battles in a round
# A weak Gaussian prior on each score (and style coefficient): N(0, PRIOR_SCALE²) in logits. It changes a
# fit of real data by far less than its interval, and keeps a checkpoint that won (or lost) every battle
# at a finite score, where maximum likelihood has none (its score would grow without bound).
PRIOR_SCALE = 10.0
BOOTSTRAP_CHUNK = 100  # rounds drawn at a time by the controlled fit's bootstrap


@dataclass(frozen=True)
class BattleCells:
    """Battles counted per (first, second) pair of checkpoint indexes: `first_wins`, `second_wins` and
    `ties` for each pair that met."""

    checkpoints: int
    first: npt.NDArray[np.intp]
    second: npt.NDArray[np.intp]
    first_wins: npt.NDArray[np.float64]
    second_wins: npt.NDArray[np.float64]
    ties: npt.NDArray[np.float64]

    @property
    def battles(self) -> float:
        return float(self.first_wins.sum() + self.second_wins.sum() + self.ties.sum())


def battle_cells(
    first: npt.ArrayLike, second: npt.ArrayLike, outcome: npt.ArrayLike, *, checkpoints: int
) -> BattleCells:
    """Count battles (parallel arrays: the checkpoint shown first, the one shown second, the outcome
    FIRST, SECOND or TIE) per pair of checkpoints."""
    first, second, outcome = (
        np.asarray(array, dtype=np.intp).reshape(-1) for array in (first, second, outcome)
    )
    if not (len(first) == len(second) == len(outcome)):
        raise ValueError("first, second and outcome must have the same length")
    if len(first) and (min(first.min(), second.min()) < 0 or max(first.max(), second.max()) >= checkpoints):
        raise ValueError(f"checkpoint indexes must lie in [0, {checkpoints})")
    if (first == second).any():
        raise ValueError("a checkpoint cannot battle itself")
    if len(outcome) and not np.isin(outcome, (FIRST, SECOND, TIE)).all():
        raise ValueError("outcomes are FIRST (0), SECOND (1) or TIE (2)")
    pair = first * checkpoints + second
    counts = np.bincount(pair * 3 + outcome, minlength=checkpoints * checkpoints * 3).reshape(-1, 3)
    met = np.flatnonzero(counts.sum(axis=1))
    return BattleCells(
        checkpoints=checkpoints,
        first=(met // checkpoints).astype(np.intp),
        second=(met % checkpoints).astype(np.intp),
        first_wins=counts[met, FIRST].astype(np.float64),
        second_wins=counts[met, SECOND].astype(np.float64),
        ties=counts[met, TIE].astype(np.float64),
    )


def _design(cells: BattleCells, reference: int) -> npt.NDArray[np.float64]:
    """One row per cell: +1 for the first checkpoint, −1 for the second (the reference's column dropped:
    its score is 0), and 1 for the first-position term in the last column."""
    rows = np.arange(len(cells.first))
    full = np.zeros((len(cells.first), cells.checkpoints + 1))
    full[rows, cells.first] = 1.0
    full[rows, cells.second] = -1.0
    full[:, -1] = 1.0
    return np.delete(full, reference, axis=1)


def _newton(
    design: npt.NDArray[np.float64],
    wins: npt.NDArray[np.float64],
    totals: npt.NDArray[np.float64],
    start: npt.NDArray[np.float64] | None = None,
    penalty: npt.NDArray[np.float64] | None = None,
) -> npt.NDArray[np.float64]:
    """Maximum likelihood (with the Gaussian prior whose precisions are `penalty`, per parameter) for each
    row of `wins` / `totals` (rounds × cells: the first side's wins, ties counted half, and the
    battles), all rounds at once, from `start` (zeros by default). Returns rounds × parameters."""
    rounds, parameters = wins.shape[0], design.shape[1]
    theta = np.zeros((rounds, parameters)) if start is None else np.tile(start, (rounds, 1))
    precision = np.zeros(parameters) if penalty is None else penalty
    ridge = np.diag(RIDGE + precision)
    # Many rounds over few cells: each round's Hessian through the cells' outer products (sparse). One
    # round (a point estimate, possibly over every battle): one dense product.
    outer = _outer_products(design) if rounds > 1 else None
    for _ in range(NEWTON_STEPS):
        p = expit(theta @ design.T)  # rounds × cells
        gradient = (wins - totals * p) @ design - theta * precision
        weights = totals * p * (1.0 - p)
        if outer is None:
            hessian = (design.T @ (weights[0][:, None] * design))[None, :, :] + ridge
        else:
            hessian = (outer.T @ weights.T).T.reshape(rounds, parameters, parameters) + ridge
        step = np.linalg.solve(hessian, gradient[:, :, None])[:, :, 0]
        # Damped: no parameter moves more than MAX_STEP logits at once, so a round whose resample leaves
        # a checkpoint (nearly) undefeated walks out to its prior-held score instead of overshooting.
        step /= np.maximum(1.0, np.abs(step).max(axis=1) / MAX_STEP)[:, None]
        theta += step
        if np.abs(step).max() < NEWTON_TOLERANCE:
            break
    return theta


def _outer_products(design: npt.NDArray[np.float64]) -> sparse.csr_array:
    """Each cell's design row's outer product, flattened, as a sparse cells × parameters² matrix: a
    round's Hessian is its weights times this (a row has three non-zero entries, so nine products)."""
    cells, parameters = design.shape
    rows, columns = np.nonzero(design)
    per_cell = np.bincount(rows, minlength=cells)
    starts = np.concatenate(([0], np.cumsum(per_cell)))
    entries_rows, entries_columns, values = [], [], []
    for cell in range(cells):
        members = columns[starts[cell] : starts[cell + 1]]
        first, second = np.meshgrid(members, members, indexing="ij")
        entries_rows.append(np.full(first.size, cell))
        entries_columns.append((first * parameters + second).reshape(-1))
        values.append((design[cell, first] * design[cell, second]).reshape(-1))
    return sparse.csr_array(
        (np.concatenate(values), (np.concatenate(entries_rows), np.concatenate(entries_columns))),
        shape=(cells, parameters * parameters),
    )


@dataclass(frozen=True)
class Leaderboard:
    """Scores in logits (the reference at 0), on the Elo-like scale, with 95% bootstrap intervals and
    ranks that respect them: a checkpoint's rank is 1 + the number of checkpoints whose interval lies
    wholly above its own."""

    reference: int
    scores: npt.NDArray[np.float64]
    elo: npt.NDArray[np.float64]
    low: npt.NDArray[np.float64]  # Elo scale
    high: npt.NDArray[np.float64]
    ranks: npt.NDArray[np.intp]
    first_advantage: float  # δ in logits: the odds of the response shown first, all else equal
    first_advantage_interval: tuple[float, float]
    battles: float
    rounds: int


def bradley_terry(
    cells: BattleCells,
    *,
    reference: int = 0,
    rounds: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    first_position: bool = True,
    prior: float | None = PRIOR_SCALE,
) -> Leaderboard:
    """Fit the scores and (unless `first_position` is False) the first-position term, and bootstrap
    `rounds` resamples of the battles (seeded: the same data and seed give the same intervals). `prior`:
    the scores' prior scale in logits (None: plain maximum likelihood, which has no finite answer when a
    checkpoint won or lost every battle)."""
    if not 0 <= reference < cells.checkpoints:
        raise ValueError(f"the reference must be a checkpoint index in [0, {cells.checkpoints})")
    if cells.battles == 0:
        raise ValueError("no battles to fit")
    design = _design(cells, reference)
    if not first_position:
        design = design[:, :-1]
    scored = cells.checkpoints - 1  # the parameters that are scores; the position term follows
    wins = cells.first_wins + cells.ties / 2.0
    totals = cells.first_wins + cells.second_wins + cells.ties
    penalty = np.zeros(design.shape[1])
    if prior is not None:
        penalty[:scored] = 1.0 / prior**2
    point = _newton(design, wins[None, :], totals[None, :], penalty=penalty)[0]
    # Resampling battles with replacement: a multinomial draw over (cell, outcome) of the same total.
    observed = np.stack([cells.first_wins, cells.second_wins, cells.ties], axis=1).reshape(-1)
    generator = np.random.default_rng(seed)
    draws = generator.multinomial(round(float(observed.sum())), observed / observed.sum(), size=rounds)
    draws = draws.reshape(rounds, -1, 3).astype(np.float64)
    resampled = _newton(
        design, draws[:, :, FIRST] + draws[:, :, TIE] / 2.0, draws.sum(axis=2), start=point, penalty=penalty
    )
    scores = _with_reference(point[:scored], reference)
    samples = np.insert(resampled[:, :scored], reference, 0.0, axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(samples, [tail, 1.0 - tail], axis=0)
    elo_low, elo_high = ELO_BASE + ELO_SCALE * low, ELO_BASE + ELO_SCALE * high
    ranks = 1 + (elo_low[None, :] > elo_high[:, None]).sum(axis=1)
    position = resampled[:, scored:].reshape(rounds, -1)[:, :1] if first_position else np.zeros((rounds, 1))
    position_low, position_high = np.quantile(position[:, 0], [tail, 1.0 - tail])
    return Leaderboard(
        reference=reference,
        scores=scores,
        elo=ELO_BASE + ELO_SCALE * scores,
        low=elo_low,
        high=elo_high,
        ranks=ranks.astype(np.intp),
        first_advantage=float(point[scored]) if first_position else 0.0,
        first_advantage_interval=(float(position_low), float(position_high)),
        battles=cells.battles,
        rounds=rounds,
    )


def _with_reference(others: npt.NDArray[np.float64], reference: int) -> npt.NDArray[np.float64]:
    return np.insert(others, reference, 0.0)


# --- length and style control -----------------------------------------------------------------------

# What a response's style is measured by, in `markdown_style`'s order (Chatbot Arena's style control
# uses the same four): its length, and its markdown headers, list items and bold spans.
STYLE_FEATURES = ("characters", "markdown_headers", "markdown_list_items", "markdown_bold")
STYLE_LABELS = ("length", "headers", "list items", "bold")
_FENCE = re.compile(r"^ {0,3}(```|~~~).*?(^ {0,3}\1[^\n]*$|\Z)", re.MULTILINE | re.DOTALL)
_HEADER = re.compile(r"^ {0,3}#{1,6}(?:[ \t]|$)", re.MULTILINE)
_LIST_ITEM = re.compile(r"^[ \t]*(?:[-*+]|\d{1,9}[.)])[ \t]+\S", re.MULTILINE)
_BOLD = re.compile(r"\*\*(?=\S)(?:[^*\n]|\*(?!\*))+?\*\*|__(?=\S)[^_\n]+?__")


def markdown_style(text: str) -> tuple[int, int, int, int]:
    """A response's characters, and its markdown headers, list items and bold spans outside fenced code
    (code is content, not formatting)."""
    prose = _FENCE.sub("", text)
    return (
        len(text),
        len(_HEADER.findall(prose)),
        len(_LIST_ITEM.findall(prose)),
        len(_BOLD.findall(prose)),
    )


def style_differences(first: npt.ArrayLike, second: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Per battle and feature (columns: length in characters, headers, list items, bold spans, …), the
    normalised difference (first − second) / (first + second), 0 where both are 0: what Chatbot Arena's
    style control regresses on, bounded in [−1, 1] whatever the scale of the feature."""
    first, second = np.asarray(first), np.asarray(second)
    if first.shape != second.shape:
        raise ValueError("first and second must have the same shape (battles × features)")
    if first.ndim < 2:
        first, second = first.reshape(-1, 1), second.reshape(-1, 1)
        return _normalised(first[:, 0], second[:, 0]).reshape(-1)
    result = np.empty(first.shape, dtype=np.float64)
    for column in range(first.shape[1]):  # a column at a time: a million battles stay a few MB apart
        result[:, column] = _normalised(first[:, column], second[:, column])
    return result


def _normalised(first: npt.NDArray[Any], second: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    first, second = first.astype(np.float64), second.astype(np.float64)
    total = first + second
    first -= second
    return np.divide(first, total, out=np.zeros_like(total), where=total > 0)


@dataclass(frozen=True)
class ControlledFit:
    """Scores in logits with the style covariates held fixed (reference at 0), on the Elo-like scale with
    95% intervals and ranks that respect them, the first-position term, and each covariate's coefficient
    (the log-odds a battle gains per unit of normalised difference) with its interval."""

    reference: int
    scores: npt.NDArray[np.float64]
    low: npt.NDArray[np.float64]  # Elo scale
    high: npt.NDArray[np.float64]
    ranks: npt.NDArray[np.intp]
    first_advantage: float
    first_advantage_interval: tuple[float, float]
    coefficients: npt.NDArray[np.float64]
    coefficients_low: npt.NDArray[np.float64]
    coefficients_high: npt.NDArray[np.float64]
    battles: int
    rounds: int

    @property
    def elo(self) -> npt.NDArray[np.float64]:
        return ELO_BASE + ELO_SCALE * self.scores


def bradley_terry_controlled(
    first: npt.ArrayLike,
    second: npt.ArrayLike,
    outcome: npt.ArrayLike,
    covariates: npt.ArrayLike,
    *,
    checkpoints: int,
    reference: int = 0,
    rounds: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    prior: float | None = PRIOR_SCALE,
) -> ControlledFit:
    """The Bradley–Terry fit with per-battle covariates (battles × features, e.g. `style_differences`):
    P(first wins) = σ(s_first − s_second + δ + β·x), ties half a win each.

    The fit. Covariates vary per battle, so it reads every battle; but a battle's design is its cell's
    (first, second, outcome: at most 3·k² of them) plus its covariates, so each Newton step costs
    O(battles × features), never a battles × parameters matrix. Covariates are standardised first (well
    conditioned); coefficients are reported per unit of the covariate as given.

    The intervals: a linearised bootstrap. A refit of a resampled set of battles is, to first order,
    θ̂ + H⁻¹·g, where H is the Hessian at the fit and g the sum of the resampled battles' scores (each
    battle's gradient at θ̂). The battles' counts per cell are drawn exactly (a multinomial, as the raw
    fit's bootstrap does); within a cell, the sum of the drawn battles' scores (a residual and its
    covariate products: 1 + features numbers) is drawn from its normal limit, whose mean and covariance
    are the cell's. So a round costs O(cells × features²) whatever the number of battles. The tests hold
    it to the coverage the raw fit's exact bootstrap has, and `bench/leaderboard.py` to the intervals of a
    refit-every-round bootstrap on the same data."""
    first, second, outcome = (
        np.asarray(array, dtype=np.intp).reshape(-1) for array in (first, second, outcome)
    )
    covariates = np.asarray(covariates, dtype=np.float64).reshape(len(first), -1)
    battle_cells(first, second, outcome, checkpoints=checkpoints)  # the same checks
    if not 0 <= reference < checkpoints:
        raise ValueError(f"the reference must be a checkpoint index in [0, {checkpoints})")
    if len(first) == 0:
        raise ValueError("no battles to fit")
    if not np.isfinite(covariates).all():
        raise ValueError("covariates must be finite")
    features = covariates.shape[1]
    spread = covariates.std(axis=0)
    spread[spread == 0] = 1.0
    centre = covariates.mean(axis=0)
    z = covariates.copy()  # standardised in place: one battles × features array, not three
    z -= centre
    z /= spread

    key = (first * checkpoints + second) * 3 + outcome
    # Cells numbered by counting (keys are small: 3·k² of them), not by sorting every battle.
    present = np.bincount(key, minlength=checkpoints * checkpoints * 3) > 0
    cell_keys = np.flatnonzero(present)
    numbering = np.cumsum(present) - 1
    cell = numbering[key]
    del key, numbering
    cells = len(cell_keys)
    cell_first, cell_second = cell_keys // 3 // checkpoints, cell_keys // 3 % checkpoints
    cell_outcome = cell_keys % 3
    cell_y = np.where(cell_outcome == FIRST, 1.0, np.where(cell_outcome == TIE, 0.5, 0.0))
    rows = np.arange(cells)
    design = np.zeros((cells, checkpoints + 1))
    design[rows, cell_first] = 1.0
    design[rows, cell_second] = -1.0
    design[:, checkpoints] = 1.0
    design = np.delete(design, reference, axis=1)  # cells × (scores + position)
    fixed = design.shape[1]
    parameters = fixed + features
    scored_parameters = checkpoints - 1
    y = cell_y[cell]

    def per_cell(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.bincount(cell, weights=values, minlength=cells).astype(np.float64)

    # The prior: on the scores (logits) and on the coefficients of the standardised covariates, not on
    # the position term.
    precision = np.zeros(parameters)
    if prior is not None:
        precision[:scored_parameters] = 1.0 / prior**2
        precision[fixed:] = 1.0 / prior**2
    theta = np.zeros(parameters)
    residual = np.zeros(len(first))
    hessian = np.eye(parameters)
    for _ in range(NEWTON_STEPS):
        eta = (design @ theta[:fixed])[cell] + z @ theta[fixed:]
        p = expit(eta)
        residual = y - p
        weight = p * (1.0 - p)
        gradient = np.concatenate((design.T @ per_cell(residual), z.T @ residual)) - theta * precision
        cell_weight = per_cell(weight)
        cross = np.stack([per_cell(weight * z[:, f]) for f in range(features)], axis=1)  # cells × F
        hessian = np.empty((parameters, parameters))
        hessian[:fixed, :fixed] = design.T @ (cell_weight[:, None] * design)
        hessian[:fixed, fixed:] = design.T @ cross
        hessian[fixed:, :fixed] = hessian[:fixed, fixed:].T
        for feature in range(features):  # a column at a time: no battles × features temporary
            hessian[fixed + feature, fixed:] = (weight * z[:, feature]) @ z
        hessian += np.diag(RIDGE + precision)
        step = np.linalg.solve(hessian, gradient)
        step /= max(1.0, float(np.abs(step).max()) / MAX_STEP)
        theta += step
        if np.abs(step).max() < NEWTON_TOLERANCE:
            break
    scored = checkpoints - 1

    # Each battle's score is its residual r times its design row (the cell's, then z): per cell, the
    # vector (r, r·z) carries all of it. Its per-cell count, mean and covariance (its columns made one at
    # a time, not as a battles × (1 + F) array):
    width = 1 + features

    def part(column: int) -> npt.NDArray[np.float64]:
        return residual if column == 0 else residual * z[:, column - 1]

    count = np.bincount(cell, minlength=cells).astype(np.float64)
    mean = np.stack([per_cell(part(j)) for j in range(width)], axis=1) / count[:, None]
    second_moment = np.empty((cells, width, width))
    for i in range(width):
        left = part(i)
        for j in range(i, width):
            second_moment[:, i, j] = second_moment[:, j, i] = per_cell(left * part(j))
    covariance = second_moment / count[:, None, None] - mean[:, :, None] * mean[:, None, :]
    values, vectors = np.linalg.eigh(covariance)
    root = vectors * np.sqrt(values.clip(0.0))[:, None, :]  # root @ rootᵀ = covariance

    generator = np.random.default_rng(seed)
    samples = np.empty((rounds, parameters))
    for start in range(0, rounds, BOOTSTRAP_CHUNK):  # bounded memory: chunk × cells × (1 + F) at a time
        size = min(BOOTSTRAP_CHUNK, rounds - start)
        drawn = generator.multinomial(len(first), count / count.sum(), size=size).astype(np.float64)
        noise = generator.standard_normal((size, cells, width))
        sums = drawn[:, :, None] * mean[None, :, :] + np.sqrt(drawn)[:, :, None] * np.einsum(
            "cij,rcj->rci", root, noise
        )
        # The penalised objective's gradient at the fit for this resample (zero for the data itself).
        gradient = np.concatenate((sums[:, :, 0] @ design, sums[:, :, 1:].sum(axis=1)), axis=1)
        gradient -= precision * theta
        samples[start : start + size] = theta[None, :] + np.linalg.solve(hessian, gradient.T).T

    tail = (1.0 - confidence) / 2.0
    score_samples = np.insert(samples[:, :scored], reference, 0.0, axis=1)
    low, high = np.quantile(score_samples, [tail, 1.0 - tail], axis=0)
    elo_low, elo_high = ELO_BASE + ELO_SCALE * low, ELO_BASE + ELO_SCALE * high
    ranks = 1 + (elo_low[None, :] > elo_high[:, None]).sum(axis=1)
    # Centring moved the covariates' mean effect into the position term; put it back where it belongs.
    position_samples = samples[:, scored] - (samples[:, fixed:] * centre / spread).sum(axis=1)
    position_low, position_high = np.quantile(position_samples, [tail, 1.0 - tail])
    coefficient_low, coefficient_high = np.quantile(samples[:, fixed:] / spread, [tail, 1.0 - tail], axis=0)
    return ControlledFit(
        reference=reference,
        scores=_with_reference(theta[:scored], reference),
        low=elo_low,
        high=elo_high,
        ranks=ranks.astype(np.intp),
        first_advantage=float(theta[scored] - (theta[fixed:] * centre / spread).sum()),
        first_advantage_interval=(float(position_low), float(position_high)),
        coefficients=theta[fixed:] / spread,
        coefficients_low=np.atleast_1d(coefficient_low),
        coefficients_high=np.atleast_1d(coefficient_high),
        battles=len(first),
        rounds=rounds,
    )


# --- head to head -------------------------------------------------------------------------------------


def battles_needed(wins: int, losses: int) -> int | None:
    """About how many more decisive battles at the observed share of wins would put its Wilson interval
    clear of one half: 0 when it already is, None when the share is exactly one half (or nothing was
    decided), where no number would."""
    share = wilson(wins, wins + losses)
    if share.low is None or share.high is None:
        return None
    if not share.low <= 0.5 <= share.high:
        return 0
    observed = wins / (wins + losses)
    if observed == 0.5:
        return None
    z = NormalDist().inv_cdf(0.5 + CONFIDENCE / 2)
    total = z * z * observed * (1.0 - observed) / (observed - 0.5) ** 2
    return max(math.ceil(total) - (wins + losses), 1)
