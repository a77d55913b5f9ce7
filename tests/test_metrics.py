"""Metrics on hand-built cases; every expected number is worked out by hand in a comment."""

from __future__ import annotations

import json
import math
import random

import pytest

from eta import metrics as m
from eta.metrics import MMBenchItem, MMEItem, MMMUProItem, ScienceQAItem

# ---------------------------------------------------------------------------------------------
# Result type and aggregation
# ---------------------------------------------------------------------------------------------


def test_wilson_interval_hand_computed():
    # k=3, n=10, z=1.95996: z^2=3.84146, z^2/n=0.384146, denom=1.384146
    # center=(0.3 + 0.192073)/1.384146=0.355505
    # half=1.95996*sqrt(0.3*0.7/10 + 3.84146/400)/1.384146=1.95996*0.174939/1.384146=0.247716
    low, high = m.wilson_interval(3, 10)
    assert low == pytest.approx(0.107789, abs=1e-5)
    assert high == pytest.approx(0.603221, abs=1e-5)
    # k=0: center = half = (z^2/20)/denom = 0.192073/1.384146 = 0.138767 -> [0, 0.277535]
    low, high = m.wilson_interval(0, 10)
    assert low == 0.0
    assert high == pytest.approx(0.277535, abs=1e-5)
    assert all(math.isnan(x) for x in m.wilson_interval(0, 0))


def test_mean_stderr_hand_computed():
    # mean 2.5; sample var = (2.25+0.25+0.25+2.25)/3 = 5/3; se = sqrt(5/3/4) = 0.645497
    mean, se = m.mean_stderr([1, 2, 3, 4])
    assert mean == 2.5
    assert se == pytest.approx(0.645497, abs=1e-6)
    assert math.isnan(m.mean_stderr([7.0])[1])


def test_aggregate_mean_and_rate():
    mean = m.aggregate("x", [1, 2, 3, 4])
    assert (mean.value, mean.n, mean.ci) == (2.5, 4, None)
    assert mean.stderr == pytest.approx(0.645497, abs=1e-6)
    rate = m.aggregate("r", [True, False, False, True, False, False, False, False, True, False],
                       kind="rate", direction="lower")
    assert rate.value == pytest.approx(0.3)
    assert rate.ci_method == "wilson-95" and rate.stderr is None
    assert rate.ci == pytest.approx((0.107789, 0.603221), abs=1e-5)
    with pytest.raises(ValueError, match="0/1"):
        m.aggregate("r", [0.5, 1.0], kind="rate")
    with pytest.raises(ValueError, match="direction"):
        m.Metric("bad", 1.0, "up", 1)  # type: ignore[arg-type]


def test_metric_to_dict_is_json_and_nan_free():
    empty = m.aggregate("empty", [], kind="rate")
    d = empty.to_dict()
    assert d["value"] is None and d["ci"] == [None, None]
    json.dumps(d, allow_nan=False)
    flat = m.to_flat_dict("spa_vl_harm", m.unsafe_rate(["safe", "unsafe"]))
    assert flat["spa_vl_harm/usr"] == 0.5
    assert set(flat) == {"spa_vl_harm/usr", "spa_vl_harm/usr_invalid_as_unsafe",
                         "spa_vl_harm/invalid_rate"}


# ---------------------------------------------------------------------------------------------
# Safety and helpfulness
# ---------------------------------------------------------------------------------------------


def test_unsafe_rate_counts_invalid_beside_it():
    # 6 safe, 3 unsafe, 1 invalid: usr = 3/9; invalid-as-unsafe = 4/10; invalid rate = 1/10
    out = m.unsafe_rate(["safe"] * 6 + ["unsafe"] * 3 + ["invalid"])
    assert out["usr"].value == pytest.approx(1 / 3)
    assert out["usr"].n == 9
    assert out["usr"].direction == "lower"
    assert out["usr_invalid_as_unsafe"].value == pytest.approx(0.4)
    assert out["invalid_rate"].value == pytest.approx(0.1)
    assert dict(out["usr"].counts) == {"safe": 6, "unsafe": 3, "invalid": 1, "total": 10}
    with pytest.raises(ValueError, match="unknown"):
        m.unsafe_rate(["safe", "maybe"])


def test_attack_success_rate():
    # 3 of 4 successful -> 0.75; lower is better (for the defence)
    asr = m.attack_success_rate([True, False, True, True])
    assert (asr.value, asr.n, asr.direction) == (0.75, 4, "lower")
    assert dict(asr.counts) == {"success": 3, "refused": 1}


def test_win_tie_rate():
    # win 5, tie 2, lose 3, invalid 2: (5+2)/(5+2+3) = 0.7; invalid rate 2/12
    out = m.win_tie_rate(["win"] * 5 + ["tie"] * 2 + ["lose"] * 3 + ["invalid"] * 2)
    assert out["win_tie_rate"].value == pytest.approx(0.7)
    assert out["win_tie_rate"].n == 10
    assert out["win_tie_rate"].ci_method == "wilson-95"
    assert out["invalid_rate"].value == pytest.approx(2 / 12)
    assert out["win_tie_rate"].counts["invalid"] == 2


def test_mean_helpful_score():
    # valid 8, 9, 7: mean 8; sample var (0+1+1)/2 = 1; se = sqrt(1/3) = 0.57735
    score = m.mean_helpful_score([8, 9, None, 7])
    assert score.value == 8.0
    assert score.stderr == pytest.approx(0.57735, abs=1e-5)
    assert dict(score.counts) == {"valid": 3, "invalid": 1}
    assert score.unit == "score"


# ---------------------------------------------------------------------------------------------
# MME
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("response, expected", [
    ("Yes", "yes"),
    ("No, there is none.", "no"),  # first four chars "no, "
    (" Yes", "yes"),  # " yes" still holds "yes"
    ("There is a dog, yes.", "other"),  # only the first four characters are looked at
    ("Not really", "no"),  # "not " contains "no": the official tool's rule
    ("I don't know", "other"),
])
def test_mme_answer(response, expected):
    assert m.mme_answer(response) == expected


def test_mme_scores_hand_computed():
    items = [
        # existence: image 1 both right; image 2 one right -> acc 3/4, acc+ 1/2, score 125
        MMEItem("existence", "e1", "Yes", "Yes"), MMEItem("existence", "e1", "No", "No"),
        MMEItem("existence", "e2", "Yes", "No"), MMEItem("existence", "e2", "No", "No"),
        # count: one image, one right -> acc 1/2, acc+ 0, score 50
        MMEItem("count", "c1", "Yes", "Yes"), MMEItem("count", "c1", "No", "Yes, two."),
        # code_reasoning: both right -> 200
        MMEItem("code_reasoning", "k1", "Yes", "yes"), MMEItem("code_reasoning", "k1", "No", "no"),
    ]
    out = m.mme_scores(items)
    assert out["existence/acc"].value == 0.75
    assert out["existence/acc_plus"].value == 0.5
    assert out["existence/score"].value == pytest.approx(125.0)
    assert out["count/score"].value == pytest.approx(50.0)
    assert out["perception"].value == pytest.approx(175.0)  # 125 + 50
    assert out["perception"].counts["subtasks"] == 2
    assert out["cognition"].value == pytest.approx(200.0)
    assert out["perception"].unit == "points"
    only_cognition = m.mme_scores(items[-2:])
    assert math.isnan(only_cognition["perception"].value)
    assert only_cognition["perception"].counts["subtasks"] == 0
    with pytest.raises(ValueError, match="unknown MME"):
        m.mme_scores([MMEItem("bogus", "x", "Yes", "Yes")])


# ---------------------------------------------------------------------------------------------
# MMBench
# ---------------------------------------------------------------------------------------------

OPTIONS = {"A": "cat", "B": "dog", "C": "bird", "D": "fish"}


@pytest.mark.parametrize("response, expected", [
    ("B", "B"),
    ("The answer is C.", "C"),  # words: The, answer, is, C
    ("(A) cat", "A"),
    ("A dog", "A"),  # VLMEvalKit takes a lone capital A (its quantifier guard is verbose-only)
    ("It is a dog.", "B"),  # no letter; exactly one option text ("dog") in the answer
    ("B or C", None),  # two letters, no option text
    ("Either a dog or a cat", None),  # two option texts
    ("Cannot determine the answer", "Z"),
    ("Z", "Z"),
])
def test_mmbench_option(response, expected):
    assert m.mmbench_option(response, OPTIONS) == expected


def test_mmbench_circular_accuracy():
    # q1: all four shifts right -> circular hit; q2: shift 0 right, shift 1 wrong -> miss;
    # q3: shift 0 wrong. Single pass (shift 0): q1, q2 right -> 2/3. Circular: 1/3.
    items = [MMBenchItem("q1", s, OPTIONS, "B", "B") for s in range(4)]
    items += [MMBenchItem("q2", 0, OPTIONS, "A", "A"), MMBenchItem("q2", 1, OPTIONS, "C", "D")]
    items += [MMBenchItem("q3", 0, OPTIONS, "D", "I am not sure")]
    out = m.mmbench_scores(items)
    assert out["accuracy"].value == pytest.approx(2 / 3)
    assert out["circular_accuracy"].value == pytest.approx(1 / 3)
    assert out["circular_accuracy"].counts["unparsed"] == 1  # "I am not sure": I is no option


# ---------------------------------------------------------------------------------------------
# ScienceQA
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("response, n_choices, expected", [
    ("B", 3, 1),
    ("A. The cat", 2, 0),  # letter, period, space
    ("The answer is C.", 4, 2),
    ("The answer is E", 5, 4),
    ("the answer is B", 3, -1),  # "The answer is " is matched case-sensitively
    ("D", 3, -1),  # a letter past the last choice
    ("B\nBecause it is.", 3, 1),  # newline -> ". " so "B. Because..." starts with "B. "
])
def test_scienceqa_choice(response, n_choices, expected):
    assert m.scienceqa_choice(response, n_choices) == expected


def test_scienceqa_scores():
    # right, out-of-range (unparsed, wrong), right, unparsed -> 2/4, 2 unparsed
    items = [ScienceQAItem("B", 1, 3), ScienceQAItem("D", 3, 3), ScienceQAItem("A. x", 0, 2),
             ScienceQAItem("foo", 0, 2)]
    out = m.scienceqa_scores(items)
    assert out["accuracy"].value == 0.5
    assert out["accuracy"].counts["unparsed"] == 2


# ---------------------------------------------------------------------------------------------
# MMMU-Pro
# ---------------------------------------------------------------------------------------------

NUMS = ["1", "2", "3", "4"]


@pytest.mark.parametrize("response, options, expected", [
    ("Answer: B", NUMS, "B"),  # unique letter after the last "Answer:"
    ("The correct option is (C) because", NUMS, "C"),  # bracketed letter
    ("I choose D", NUMS, "D"),  # " I choose D " holds "D "
    ("B or C", NUMS, "C"),  # two letters: the one whose " X " starts last
    ("I think that it is clearly the green pear here",  # > 5 words, option text
     ["red apple", "green pear", "blue berry", "black cat"], "B"),
])
def test_mmmu_pro_choice(response, options, expected):
    letter, guessed = m.mmmu_pro_choice(response, options, random.Random(0))
    assert (letter, guessed) == (expected, False)


def test_mmmu_pro_guess_is_seeded_and_counted():
    ten = [str(i) for i in range(10)]  # up to ten options: letters A..J
    first = m.mmmu_pro_choice("zzz", ten, random.Random("0:item"))
    again = m.mmmu_pro_choice("zzz", ten, random.Random("0:item"))
    assert first == again and first[1] is True and first[0] in "ABCDEFGHIJ"
    # right; wrong; unparsed with a single option, so the guess is A and right -> 2/3, 1 guess
    items = [MMMUProItem("1", NUMS, "B", "Answer: B"), MMMUProItem("2", NUMS, "D", "(C)"),
             MMMUProItem("3", ["only"], "A", "zzz")]
    out = m.mmmu_pro_scores(items, seed=0)
    assert out["accuracy"].value == pytest.approx(2 / 3)
    assert out["accuracy"].counts["random_guesses"] == 1


# ---------------------------------------------------------------------------------------------
# VQA accuracy
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw, expected", [
    ("Two dogs.", "2 dogs"),  # period dropped, number word -> digit
    ("the cat", "cat"),  # article dropped
    ("dont", "don't"),  # contraction restored
    ("hello-world", "hello world"),  # lone punctuation -> space
    ("1,000", "1000"),  # digit,digit: every punctuation mark is removed outright
    ("yes, sir", "yes sir"),  # ", " is glued to a space: removed
    ("3.5", "3.5"),  # a period before a digit stays
    ("an apple!", "apple"),
])
def test_normalize_vqa_answer(raw, expected):
    assert m.normalize_vqa_answer(raw) == expected


def test_vqa_accuracy_leave_one_out():
    # 2 of 10 said "yes": leaving out a "yes" (2 ways) leaves 1 match -> 1/3;
    # leaving out a "no" (8 ways) leaves 2 -> 2/3; mean = (2/3 + 16/3)/10 = 0.6
    assert m.vqa_accuracy("Yes.", ["yes"] * 2 + ["no"] * 8) == pytest.approx(0.6)
    # 3 of 10: leave out a match (3 ways) -> 2/3; a non-match (7 ways) -> 1; (2 + 7)/10 = 0.9
    assert m.vqa_accuracy("yes", ["yes"] * 3 + ["no"] * 7) == pytest.approx(0.9)
    # 4 of 10: at least 3 matches remain in every subset -> 1
    assert m.vqa_accuracy("yes", ["yes"] * 4 + ["no"] * 6) == pytest.approx(1.0)
    assert m.vqa_accuracy("Two", ["2"] * 10) == 1.0


def test_vqa_accuracy_strict_ground_truth_processing():
    # strict (2017 vqaEval.py): human answers only punctuation-processed, only when they differ.
    assert m.vqa_accuracy("yes", ["yes."] * 3 + ["no"] * 7) == pytest.approx(0.9)
    assert m.vqa_accuracy("yes", ["yes."] * 10) == 0.0
    assert m.vqa_accuracy("2", ["two"] * 10) == 0.0  # annotations are expected pre-normalised


def test_textvqa_accuracy_normalises_both_sides():
    # "Coca-Cola" -> "coca cola"; 3 of 10 match -> 0.9 (same leave-one-out as VQAv2)
    assert m.textvqa_accuracy("Coca-Cola", ["coca cola"] * 3 + ["coke"] * 7) == pytest.approx(0.9)
    assert m.textvqa_accuracy("It's", ["it's"] * 10) == 1.0  # both become "it 's"
    assert m.textvqa_accuracy("2", ["Two"] * 10) == 1.0  # unlike VQAv2, answers are processed


def test_vqa_scores_mean_and_stderr():
    # per-item [1, 0]: mean 0.5; sample var 0.5; se = sqrt(0.5/2) = 0.5
    out = m.vqa_scores(["yes", "no"], [["yes"] * 10, ["yes"] * 10])
    assert out["accuracy"].value == 0.5
    assert out["accuracy"].stderr == pytest.approx(0.5)
    assert m.textvqa_scores(["yes"], [["yes"] * 10])["accuracy"].value == 1.0
    with pytest.raises(ValueError, match="predictions"):
        m.vqa_scores(["a"], [])


# --------------------------------------------------------------------------- official vs strict


@pytest.mark.parametrize("response,official,strict", [
    ("A", "A", "A"),
    ("B. dog", "B", "B"),
    ("The answer is C.", "C", "C"),
    ("The answer is C", "FAILED", "C"),  # the official pattern needs a character after the letter
    ("The answer is C!", "C", "C"),  # ... any character
    ("The answer is A. The answer is B.", "FAILED", "A"),  # official: exactly one match
    ("The answer is F.", "F", "FAILED"),  # official reads any capital; the choice check rejects it
    (" A", "FAILED", "A"),
    ("A\n", "FAILED", "A"),
    ("a", "FAILED", "FAILED"),
    ("**B**", "FAILED", "FAILED"),
])
def test_scienceqa_letter_by_protocol(response, official, strict):
    assert m.scienceqa_letter(response, "official") == official
    assert m.scienceqa_letter(response, "strict") == strict


def test_scienceqa_letter_past_the_choices_is_wrong_under_both():
    assert m.scienceqa_choice("The answer is E.", 3, "official") == -1
    assert m.scienceqa_choice("The answer is E.", 3, "strict") == -1
    assert m.scienceqa_choice("The answer is C.", 3, "official") == 2


def test_vqa_accuracy_official_runs_the_submission_converter_first():
    # identical humans: current vqaEval.py normalises nothing, so only the converter's lower-casing
    # and period stripping make "Yes." right; the strict reading normalises the prediction itself.
    assert m.vqa_accuracy("Yes.", ["yes"] * 10, "official") == 1.0
    assert m.vqa_accuracy("Yes.", ["yes"] * 10, "strict") == 1.0
    # the converter splits 's off: "man 's" matches no human answer
    humans = ["man's"] * 4 + ["man"] * 6
    assert m.vqa_accuracy("man's", humans, "official") == 0.0
    assert m.vqa_accuracy("man's", humans, "strict") == 1.0
    # differing humans are normalised fully (number words too) under the current vqaEval.py
    assert m.vqa_accuracy("2", ["two"] * 4 + ["2"] * 6, "official") == 1.0
    assert m.vqa_accuracy("2", ["two"] * 4 + ["2"] * 6, "strict") == pytest.approx(1.0)
    assert m.vqa_accuracy("two", ["two"] * 10, "official") == 0.0  # converter: "2"; humans untouched


def test_evalai_answer_is_the_converters_processor():
    assert m.evalai_answer("Red, White?") == "red white"
    assert m.evalai_answer("It's a T-Shirt.") == "it 's t shirt"
    assert m.evalai_answer("Ten dogs") == "10 dogs"


def test_mme_official_pairs_consecutive_lines():
    from eta.metrics.mme import mme_result_line

    items = [MMEItem("existence", "existence/1", "Yes", "Yes", "Is there a dog?"),
             MMEItem("existence", "existence/1", "No", "No\nreally", "Is there a cat?"),
             MMEItem("existence", "existence/2", "Yes", "Yes", "Is there a cow?"),
             MMEItem("existence", "existence/2", "No", "No", "Is there a pig?")]
    assert mme_result_line(items[0]) == "1.txt\tIs there a dog?\tYes\tYes\n"
    # the line break makes 5 lines: calculation.py would stop on its assertion; so do we
    with pytest.raises(ValueError, match="pairs them"):
        m.mme_scores(items, "official")
    strict = m.mme_scores(items, "strict")
    assert strict["existence/score"].value == pytest.approx(200.0)
    ok = [items[0], MMEItem("existence", "existence/1", "No", "no", "?"), *items[2:]]
    assert m.mme_scores(ok, "official")["existence/score"].value == pytest.approx(200.0)


def test_protocol_is_checked():
    with pytest.raises(ValueError, match="official, strict"):
        m.scienceqa_letter("A", "lenient")
