"""feedback.quality.proportions (Wilson intervals, the binomial test of position bias) and
feedback.quality.gold (verdicts by label, stored by response id, and grading judgments against them)."""

from __future__ import annotations

import pytest

from feedback.quality.gold import (
    VerdictInvalid,
    gold_correct,
    labels_from_text,
    verdict_from_labels,
    verdict_labels,
)
from feedback.quality.proportions import position_bias, wilson


def test_wilson_interval_of_8_of_10():
    # (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n), z = 1.959964
    proportion = wilson(8, 10)
    assert proportion.share == 0.8
    assert proportion.low == pytest.approx(0.4902, abs=1e-4)
    assert proportion.high == pytest.approx(0.9433, abs=1e-4)


def test_wilson_interval_stays_inside_zero_and_one_and_is_none_without_trials():
    assert wilson(0, 5).low == 0.0
    assert wilson(5, 5).high == pytest.approx(1.0)
    assert wilson(0, 0) == wilson(0, 0).__class__(successes=0, trials=0, share=None, low=None, high=None)
    with pytest.raises(ValueError, match="successes"):
        wilson(3, 2)


def test_position_bias_is_the_exact_two_sided_binomial_test():
    bias = position_bias(9, 10)
    assert bias.share == 0.9
    assert bias.p_value == pytest.approx(22 / 1024)  # P(X >= 9) + P(X <= 1), X ~ Bin(10, 1/2)
    assert position_bias(5, 10).p_value == 1.0
    # k-wise: first place by chance 1 time in 3.
    assert position_bias(10, 30, expected=1 / 3).p_value == pytest.approx(1.0)
    assert position_bias(0, 0).p_value is None


PAIR = [101, 202]  # response ids in the order the labels name them: A = 101, B = 202


@pytest.mark.parametrize(
    ("expected", "stored", "readable"),
    [
        ("A", {"accepted": ["101"]}, "A"),
        ("b", {"accepted": ["202"]}, "B"),
        (["A", "tie"], {"accepted": ["101", "tie"]}, "A or tie"),
        (["both_bad"], {"accepted": ["both_bad"]}, "both bad"),
    ],
)
def test_pairwise_verdicts_are_stored_by_response_id(expected, stored, readable):
    verdict = verdict_from_labels(expected, response_ids=PAIR, is_ranking=False, allows_tie=True)
    assert verdict == stored
    assert verdict_labels(verdict, response_ids=PAIR) == readable
    # Shown the other way round, the same verdict names the other label.
    if stored == {"accepted": ["101"]}:
        assert verdict_labels(verdict, response_ids=PAIR[::-1]) == "B"


@pytest.mark.parametrize(
    ("expected", "allows_tie", "message"),
    [
        ("C", True, "'C' is not a response here; use one of A, B"),
        ([], True, "a label such as"),
        (["A", "A"], True, "accepted twice"),
        (["A", "B"], True, "no test"),
        (["tie"], False, "does not allow ties"),
        (3, True, "a label such as"),
    ],
)
def test_bad_pairwise_verdicts_say_why(expected, allows_tie, message):
    with pytest.raises(VerdictInvalid, match=message):
        verdict_from_labels(expected, response_ids=PAIR, is_ranking=False, allows_tie=allows_tie)


@pytest.mark.parametrize(
    ("choice", "ranking", "shown", "correct"),
    [
        ("a", [1, 2], PAIR, True),  # A shown first is 101: right
        ("a", [1, 2], PAIR[::-1], False),  # shown swapped, A is 202: wrong
        ("b", [2, 1], PAIR[::-1], True),
        ("tie", [1, 1], PAIR, True),
        ("both_bad", [1, 1], PAIR, False),
    ],
)
def test_pairwise_grading_follows_the_response_not_the_position(choice, ranking, shown, correct):
    verdict = verdict_from_labels(["A", "tie"], response_ids=PAIR, is_ranking=False, allows_tie=True)
    assert gold_correct(verdict, choice=choice, ranking=ranking, response_ids=shown) is correct


RANKED = [11, 22, 33]


def test_ranking_best_verdict_needs_that_response_alone_in_first_place():
    verdict = verdict_from_labels("c", response_ids=RANKED, is_ranking=True, allows_tie=True)
    assert verdict == {"best": "33"}
    assert verdict_labels(verdict, response_ids=RANKED) == "C best"
    assert gold_correct(verdict, choice="ranked", ranking=[2, 3, 1], response_ids=RANKED)
    assert not gold_correct(verdict, choice="ranked", ranking=[1, 2, 1], response_ids=RANKED)
    assert gold_correct(verdict, choice="ranked", ranking=[1, 2, 3], response_ids=[33, 11, 22])


def test_ranking_order_verdict_needs_the_exact_order_with_its_ties():
    verdict = verdict_from_labels(
        {"order": [["A", "C"], "B"]}, response_ids=RANKED, is_ranking=True, allows_tie=True
    )
    assert verdict == {"ranks": {"11": 1, "33": 1, "22": 2}}
    assert verdict_labels(verdict, response_ids=RANKED) == "A = C > B"
    assert gold_correct(verdict, choice="ranked", ranking=[1, 2, 1], response_ids=RANKED)
    assert not gold_correct(verdict, choice="ranked", ranking=[1, 2, 3], response_ids=RANKED)


@pytest.mark.parametrize(
    ("expected", "allows_tie", "message"),
    [
        ({"order": ["A", "B"]}, True, "missing: C"),
        ({"order": ["A", "B", "A"]}, True, "placed twice"),
        ({"order": [["A", "B"], "C"]}, False, "does not allow ties"),
        ({"best": "A"}, True, "the best label"),
        ("D", True, "not a response here"),
    ],
)
def test_bad_ranking_verdicts_say_why(expected, allows_tie, message):
    with pytest.raises(VerdictInvalid, match=message):
        verdict_from_labels(expected, response_ids=RANKED, is_ranking=True, allows_tie=allows_tie)


@pytest.mark.parametrize(
    ("text", "is_ranking", "expected", "readable"),
    [
        ("A", False, "A", "A"),
        (" b ", False, "b", "B"),
        ("A, tie", False, ["A", "tie"], "A or tie"),
        ("B or Both bad", False, ["B", "both_bad"], "B or both bad"),
        ("both_bad,TIE", False, ["both_bad", "tie"], "both bad or tie"),
        ("C", True, "C", "C best"),
        ("c best", True, "c", "C best"),
        ("C > A > B", True, {"order": ["C", "A", "B"]}, "C > A > B"),
        ("A = C > B", True, {"order": [["A", "C"], "B"]}, "A = C > B"),
        ("A=C>B", True, {"order": [["A", "C"], "B"]}, "A = C > B"),
    ],
)
def test_a_verdict_written_as_text_reads_as_labels_and_back(text, is_ranking, expected, readable):
    assert labels_from_text(text, is_ranking=is_ranking) == expected
    response_ids = RANKED if is_ranking else PAIR
    verdict = verdict_from_labels(expected, response_ids=response_ids, is_ranking=is_ranking, allows_tie=True)
    assert verdict_labels(verdict, response_ids=response_ids) == readable
    # What the page shows reads back as the same verdict.
    again = labels_from_text(readable, is_ranking=is_ranking)
    assert (
        verdict_from_labels(again, response_ids=response_ids, is_ranking=is_ranking, allows_tie=True)
        == verdict
    )


@pytest.mark.parametrize(
    ("text", "is_ranking", "message"),
    [
        ("  ", False, 'Write the expected verdict, such as "A" or "A, tie".'),
        ("", True, 'Write the expected verdict, such as "C" or "C > A = B".'),
        ("A,,tie", False, "'A,,tie' has an empty outcome between its separators."),
        ("A > > B", True, "'A > > B' has an empty place: write labels between > and =."),
        ("C > A =", True, "'C > A =' has an empty place: write labels between > and =."),
    ],
)
def test_a_verdict_text_that_cannot_be_read_says_why(text, is_ranking, message):
    with pytest.raises(VerdictInvalid) as error:
        labels_from_text(text, is_ranking=is_ranking)
    assert str(error.value) == message
