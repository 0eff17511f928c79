"""Bradley–Terry scores: recovered from synthetic battles of known strengths, held equal to an
independent fit (choix's Luce spectral ranking), with bootstrap intervals that cover the truth."""

from __future__ import annotations

import choix
import numpy as np
import pytest
from scipy.stats import spearmanr

from feedback.quality.leaderboard import (
    ELO_BASE,
    ELO_SCALE,
    FIRST,
    SECOND,
    TIE,
    battle_cells,
    bradley_terry,
    bradley_terry_controlled,
    head_to_head,
    markdown_style,
    style_differences,
)


def battles(seed: int, *, checkpoints: int = 20, count: int = 50_000, first_advantage: float = 0.2, ties=0.0):
    """Random pairs shown in random order; the first wins with σ(s_first − s_second + δ); a share of
    `ties` of the battles are ties."""
    rng = np.random.default_rng(seed)
    truth = rng.normal(0.0, 1.0, size=checkpoints)
    first = rng.integers(0, checkpoints, size=count)
    second = (first + rng.integers(1, checkpoints, size=count)) % checkpoints
    p = 1.0 / (1.0 + np.exp(-(truth[first] - truth[second] + first_advantage)))
    outcome = np.where(rng.random(count) < p, FIRST, SECOND)
    outcome[rng.random(count) < ties] = TIE
    return truth, first, second, outcome


def test_scores_are_recovered_from_battles_of_known_strengths():
    truth, first, second, outcome = battles(1, ties=0.1)
    board = bradley_terry(battle_cells(first, second, outcome, checkpoints=20), reference=3, rounds=200)
    assert board.scores[3] == 0.0
    assert board.elo[3] == ELO_BASE
    assert spearmanr(board.scores, truth).statistic >= 0.95
    # Ties pull scores together but keep their order; the first-position term is found.
    assert 0.1 < board.first_advantage < 0.3
    low, high = board.first_advantage_interval
    assert low < board.first_advantage < high


def test_scores_equal_an_independent_fit():
    # Without ties and without a first-position advantage, the model is plain Bradley–Terry: choix's
    # spectral algorithm (ILSR, no regularisation) reaches the same maximum likelihood by another road.
    _, first, second, outcome = battles(2, checkpoints=8, count=20_000, first_advantage=0.0)
    winners = np.where(outcome == FIRST, first, second)
    losers = np.where(outcome == FIRST, second, first)
    reference = choix.ilsr_pairwise(8, list(zip(winners.tolist(), losers.tolist(), strict=True)), tol=1e-12)
    reference = reference - reference[0]
    # Our fit has the first-position term too; shown in random order it is near zero, not zero, so the
    # comparison fits without it: the same cells with the order of each battle forgotten.
    swapped = battle_cells(
        np.minimum(winners, losers),
        np.maximum(winners, losers),
        np.where(winners < losers, FIRST, SECOND),
        checkpoints=8,
    )
    board = bradley_terry(swapped, reference=0, rounds=1, first_position=False)
    assert board.scores == pytest.approx(reference, abs=1e-6)


def test_the_intervals_cover_the_true_scores_about_95_percent_of_the_time():
    covered = total = 0
    for seed in range(100):
        truth, first, second, outcome = battles(100 + seed, checkpoints=20, count=50_000)
        board = bradley_terry(battle_cells(first, second, outcome, checkpoints=20), rounds=1000, seed=seed)
        true_elo = ELO_BASE + ELO_SCALE * (truth - truth[0])
        others = np.arange(1, 20)  # the reference's interval is a point
        covered += int(
            ((board.low[others] <= true_elo[others]) & (true_elo[others] <= board.high[others])).sum()
        )
        total += len(others)
    print(f"coverage {covered}/{total} = {covered / total:.3f}")
    assert 0.90 <= covered / total <= 0.99, covered / total


def test_ranks_respect_the_intervals_and_the_bootstrap_is_reproducible():
    _, first, second, outcome = battles(5, checkpoints=6, count=3_000)
    cells = battle_cells(first, second, outcome, checkpoints=6)
    board = bradley_terry(cells, rounds=300, seed=11)
    again = bradley_terry(cells, rounds=300, seed=11)
    assert np.array_equal(board.low, again.low)
    assert np.array_equal(board.high, again.high)
    for index in range(6):
        above = sum(board.low[other] > board.high[index] for other in range(6))
        assert board.ranks[index] == 1 + above
    assert board.ranks.min() == 1


def test_bad_battles_are_refused():
    with pytest.raises(ValueError, match="itself"):
        battle_cells([0], [0], [FIRST], checkpoints=2)
    with pytest.raises(ValueError, match="indexes"):
        battle_cells([0], [2], [FIRST], checkpoints=2)
    with pytest.raises(ValueError, match="outcomes"):
        battle_cells([0], [1], [3], checkpoints=2)
    with pytest.raises(ValueError, match="no battles"):
        bradley_terry(battle_cells([], [], [], checkpoints=2))


def test_length_control_removes_a_planted_length_bias():
    """Six checkpoints of equal quality but for 0 and 1 (0 a little better); 5 writes twice as long as
    the others, and the annotators prefer the longer answer whatever its quality. The raw fit puts 5 far
    ahead; the length-controlled fit finds it equal to the others and the length coefficient large."""
    rng = np.random.default_rng(7)
    checkpoints, count = 6, 40_000
    quality = np.array([0.3, 0.0, 0.0, 0.0, 0.0, 0.0])
    mean_length = np.array([600.0, 600.0, 600.0, 600.0, 600.0, 1200.0])
    first = rng.integers(0, checkpoints, size=count)
    second = (first + rng.integers(1, checkpoints, size=count)) % checkpoints
    lengths = rng.normal(mean_length[np.stack([first, second], axis=1)], 150.0).clip(50.0)
    longer = style_differences(lengths[:, :1], lengths[:, 1:])[:, 0]
    p = 1.0 / (1.0 + np.exp(-(quality[first] - quality[second] + 2.0 * longer)))
    outcome = np.where(rng.random(count) < p, FIRST, SECOND)

    raw = bradley_terry(battle_cells(first, second, outcome, checkpoints=checkpoints), reference=1, rounds=1)
    controlled = bradley_terry_controlled(
        first, second, outcome, longer[:, None], checkpoints=checkpoints, reference=1
    )
    assert raw.scores[5] > 0.5  # "better" that is only "longer"
    assert abs(controlled.scores[5]) < 0.05
    assert controlled.scores[0] == pytest.approx(0.3, abs=0.06)  # real quality survives the control
    assert controlled.coefficients[0] == pytest.approx(2.0, abs=0.15)
    assert abs(controlled.first_advantage) < 0.05


def test_style_differences_are_normalised_and_zero_without_either():
    differences = style_differences([[300, 0, 2], [100, 0, 0]], [[100, 0, 2], [300, 0, 1]])
    assert differences.tolist() == [[0.5, 0.0, 0.0], [-0.5, 0.0, -1.0]]


def test_head_to_head_counts_both_orders_and_says_how_many_more_battles_would_separate_them():
    # Checkpoint 0 against 1: shown first, 0 won 20, lost 12, tied 3; shown second, 0 won 10, lost 8.
    first = [0] * 35 + [1] * 18
    second = [1] * 35 + [0] * 18
    outcome = [FIRST] * 20 + [SECOND] * 12 + [TIE] * 3 + [SECOND] * 10 + [FIRST] * 8
    cells = battle_cells(first, second, outcome, checkpoints=2)
    board = bradley_terry(cells, rounds=1)
    duel = head_to_head(cells, board.scores, 0, 1, both_bad=4)
    assert (duel.wins, duel.losses, duel.ties, duel.both_bad) == (30, 20, 3, 4)
    assert duel.decisive_share.share == 0.6
    assert duel.decisive_share.low < 0.5 < duel.decisive_share.high  # 30 of 50 does not separate them
    # At 0.6, about 1.96² · 0.24 / 0.01 = 92.2 decisive battles would: 43 more than the 50 there are.
    assert duel.needed == 43
    assert duel.predicted == pytest.approx(1 / (1 + np.exp(-(board.scores[0] - board.scores[1]))))
    assert 0.55 < duel.predicted < 0.65
    reverse = head_to_head(cells, board.scores, 1, 0)
    assert (reverse.wins, reverse.losses) == (20, 30)
    assert reverse.predicted == pytest.approx(1 - duel.predicted)
    # Clear apart: nothing more needed; exactly even: no number would do.
    clear = battle_cells([0] * 100, [1] * 100, [FIRST] * 80 + [SECOND] * 20, checkpoints=2)
    assert head_to_head(clear, np.zeros(2), 0, 1).needed == 0
    even = battle_cells([0] * 10, [1] * 10, [FIRST] * 5 + [SECOND] * 5, checkpoints=2)
    assert head_to_head(even, np.zeros(2), 0, 1).needed is None


def styled_battles(seed: int, *, checkpoints: int = 20, count: int = 50_000, length_effect: float = 1.0):
    """Battles whose outcome depends on quality and on the normalised difference in length (each
    checkpoint writes at its own mean length): the truth the controlled fit should find."""
    rng = np.random.default_rng(seed)
    truth = rng.normal(0.0, 1.0, size=checkpoints)
    mean_length = rng.uniform(300.0, 1200.0, size=checkpoints)
    first = rng.integers(0, checkpoints, size=count)
    second = (first + rng.integers(1, checkpoints, size=count)) % checkpoints
    lengths = rng.normal(mean_length[np.stack([first, second], axis=1)], 100.0).clip(20.0)
    longer = style_differences(lengths[:, :1], lengths[:, 1:])
    p = 1.0 / (1.0 + np.exp(-(truth[first] - truth[second] + 0.1 + length_effect * longer[:, 0])))
    outcome = np.where(rng.random(count) < p, FIRST, SECOND)
    return truth, first, second, outcome, longer


def test_the_controlled_intervals_cover_the_true_scores_about_95_percent_of_the_time():
    covered = total = coefficient_covered = 0
    for seed in range(100):
        truth, first, second, outcome, longer = styled_battles(300 + seed)
        fit = bradley_terry_controlled(first, second, outcome, longer, checkpoints=20, rounds=1000, seed=seed)
        true_elo = ELO_BASE + ELO_SCALE * (truth - truth[0])
        others = np.arange(1, 20)
        covered += int(((fit.low[others] <= true_elo[others]) & (true_elo[others] <= fit.high[others])).sum())
        total += len(others)
        coefficient_covered += int(fit.coefficients_low[0] <= 1.0 <= fit.coefficients_high[0])
    print(f"coverage {covered}/{total} = {covered / total:.3f}; length coefficient {coefficient_covered}/100")
    assert 0.90 <= covered / total <= 0.99, covered / total
    assert 88 <= coefficient_covered <= 100


def test_the_controlled_intervals_match_a_bootstrap_that_refits_every_round():
    """The linearised bootstrap against the slow, exact one (resample the battles row by row, refit):
    on 6 checkpoints and 4,000 battles the interval ends agree to 8% of the interval's width (each
    bootstrap's own Monte Carlo error is about 2% of it with these numbers of rounds; measured with 3,000
    refits and 20,000 rounds the ends differ by at most 4%)."""
    _, first, second, outcome, longer = styled_battles(9, checkpoints=6, count=4_000)
    fit = bradley_terry_controlled(first, second, outcome, longer, checkpoints=6, rounds=4000, seed=1)
    rng = np.random.default_rng(2)
    refits = []
    for _ in range(1500):
        rows = rng.integers(0, len(first), size=len(first))
        again = bradley_terry_controlled(
            first[rows], second[rows], outcome[rows], longer[rows], checkpoints=6, rounds=1
        )
        refits.append(again.elo)
    low, high = np.quantile(np.array(refits), [0.025, 0.975], axis=0)
    width = high - low
    assert (np.abs(fit.low - low)[1:] < 0.08 * width[1:]).all(), (fit.low - low, width)
    assert (np.abs(fit.high - high)[1:] < 0.08 * width[1:]).all(), (fit.high - high, width)
    # The point estimate is the fit's, refits scatter around it.
    assert np.median(np.array(refits), axis=0)[1:] == pytest.approx(fit.elo[1:], abs=0.05 * width.max())


def test_markdown_style_counts_headers_list_items_and_bold_outside_code():
    text = (
        "# Plan\n\nSome **bold** words and __more__.\n\n"
        "1. first\n2) second\n- third\n  * nested\n\n"
        "```python\n# not a header\n- not an item\n**not bold**\n```\n"
        "#hashtag is no header; ** spaced ** is no bold; -dash is no item\n"
    )
    assert markdown_style(text) == (len(text), 1, 4, 2)
    assert markdown_style("") == (0, 0, 0, 0)
    # An unclosed fence runs to the end, as markdown renders it.
    assert markdown_style("## Title\n```\n# inside\n") == (len("## Title\n```\n# inside\n"), 1, 0, 0)
