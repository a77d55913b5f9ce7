"""General-ability scoring on the benchmark fixtures, loaded as the real loaders load them, with
hand-written responses; every expected number is worked out by hand in a comment."""

from __future__ import annotations

import importlib.util
import logging
import math
import os
from dataclasses import replace
from pathlib import Path

import pytest

from eta.benchmarks import get_info, list_benchmarks, load_benchmark
from eta.metrics.general import GENERAL_BENCHMARKS, headline, score_general

FIXTURES = Path(__file__).parent / "fixtures" / "benchmarks"
HAVE_PYARROW = importlib.util.find_spec("pyarrow") is not None


@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory) -> Path:
    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build(tmp_path_factory.mktemp("benchmarks"), parquet=HAVE_PYARROW)


@pytest.fixture(autouse=True)
def no_data_env(monkeypatch):
    for var in list(os.environ):
        if var.startswith("ETA_DATA_"):
            monkeypatch.delenv(var)


def load(name: str, fixture_root: Path):
    if name.startswith("mmmu-pro") and not HAVE_PYARROW:
        pytest.skip("pyarrow is not installed")
    return load_benchmark(name, fixture_root / get_info(name).data_key)


# --- the contract -------------------------------------------------------------------------


def test_every_general_benchmark_has_a_scorer():
    assert set(GENERAL_BENCHMARKS) == {i.name for i in list_benchmarks() if i.kind == "general"}


@pytest.mark.parametrize("name", GENERAL_BENCHMARKS)
def test_headline_metrics_exist_and_missing_responses_are_counted(name, fixture_root):
    data = load(name, fixture_root)
    answered = score_general(name, data, {ex.id: "A" for ex in data})
    assert set(headline(name)) <= set(answered)
    for metric in answered.values():
        assert metric.counts["missing_responses"] == 0
    # No responses at all: the headline names still there (MME's per-subtask ones are not),
    # NaN over n = 0, every example counted as missing.
    empty = score_general(name, data, {})
    assert set(headline(name)) <= set(empty)
    for metric in empty.values():
        assert math.isnan(metric.value) and metric.n == 0
        assert metric.counts["missing_responses"] == len(data)


def test_unknown_benchmark_lists_the_supported_ones():
    with pytest.raises(KeyError, match="figstep.*mme.*vqav2-testdev"):
        score_general("figstep", [], {})
    with pytest.raises(KeyError, match="scienceqa-img"):
        headline("nope")


def test_examples_of_another_benchmark_are_rejected(fixture_root):
    data = load("scienceqa-img", fixture_root)
    with pytest.raises(ValueError, match="another benchmark"):
        score_general("mmbench", data, {})


def test_responses_without_an_example_are_logged(fixture_root, caplog):
    data = load("scienceqa-img", fixture_root)
    with caplog.at_level(logging.WARNING, logger="eta.metrics.general"):
        score_general("scienceqa-img", data, {"5": "B", "12": "A", "999": "A"})
    assert "1 responses match no example id" in caplog.text


# --- each benchmark, by hand --------------------------------------------------------------


def test_mme(fixture_root, caplog):
    data = load("mme", fixture_root)
    # Every task has one image and two questions: line 1 answers Yes, line 2 answers No.
    # The MME tool reads an exact yes/no, else "yes" then "no" in the first four characters.
    by_task = {
        "existence": ("Yes", "No"),               # 2/2 right, image right: (1 + 1) * 100 = 200
        "count": ("Yes", "Yes"),                  # 1/2, image wrong: (0.5 + 0) * 100 = 50
        "position": ("No", "Yes"),                # 0/2: 0
        "color": ("yes, it is", "Not at all"),    # "yes," -> yes; "not " -> no: 200
        "posters": ("Maybe", "No"),               # "mayb" -> other (wrong); No right: 50
        "celebrity": ("Yes", "No"), "scene": ("Yes", "No"), "landmark": ("Yes", "No"),
        "artwork": ("Yes", "No"),                 # 4 x 200 = 800
        # OCR: no responses -> 2 missing, subtask absent from the perception sum
        "commonsense_reasoning": ("Yes", "No"),   # 200
        "numerical_calculation": ("No", "No"),    # 50
        "text_translation": ("No", "Yes"),        # 0
        "code_reasoning": ("Yes", "No"),          # 200
    }
    responses = {ex.id: by_task[ex.category][int(ex.id.rsplit("/", 1)[1]) - 1]
                 for ex in data if ex.category in by_task}
    with caplog.at_level(logging.WARNING):
        metrics = score_general("mme", data, responses)
    assert headline("mme") == ["perception", "cognition"]
    # perception = 200 + 50 + 0 + 200 + 50 + 800 = 1300 over 9 subtasks, 18 questions
    assert metrics["perception"].value == pytest.approx(1300)
    assert metrics["perception"].n == 18
    assert metrics["perception"].counts["subtasks"] == 9
    assert metrics["perception"].unit == "points"
    # cognition = 200 + 50 + 0 + 200 = 450 over 4 subtasks, 8 questions
    assert metrics["cognition"].value == pytest.approx(450)
    assert metrics["cognition"].n == 8
    assert metrics["count/acc"].value == 0.5
    assert metrics["count/acc_plus"].value == 0.0
    assert metrics["count/score"].value == pytest.approx(50)
    assert metrics["posters/score"].counts["other"] == 1
    assert "OCR/score" not in metrics
    assert all(m.counts["missing_responses"] == 2 for m in metrics.values())
    assert "2 of 28 examples have no response" in caplog.text


def test_mmbench(fixture_root):
    data = load("mmbench", fixture_root)
    # 0: red/blue/green/black, answer B. 1: indoor/outdoor/space, answer A.
    # 1000001: the circular copy of 1 (shift 1): space/indoor/outdoor, answer B.
    metrics = score_general("mmbench", data, {
        "0": "B. blue",                  # the one letter standing alone: B, right
        "1": "A",                        # right
        "1000001": "It is outdoor.",     # no letter; option text "outdoor" only -> C, wrong
    })
    assert headline("mmbench") == ["circular_accuracy", "accuracy"]
    # accuracy: shift-0 rows 0 and 1, both right -> 2/2
    assert metrics["accuracy"].value == 1.0
    assert metrics["accuracy"].n == 2
    # circular: question 0 [right] -> right; question 1 [right, wrong] -> wrong: 1/2
    assert metrics["circular_accuracy"].value == 0.5
    assert metrics["circular_accuracy"].n == 2
    assert metrics["circular_accuracy"].counts["unparsed"] == 0

    metrics = score_general("mmbench", data, {
        "0": "B or C",                   # two letters, no option text -> unparsed, wrong
        "1": "indoor",                   # option text -> A, right
        "1000001": "(B)",                # B, right
    })
    # accuracy: [wrong, right] -> 1/2; circular: [wrong], [right, right] -> 1/2
    assert metrics["accuracy"].value == 0.5
    assert metrics["circular_accuracy"].value == 0.5
    assert metrics["accuracy"].counts["unparsed"] == 1


def test_mmbench_example_without_answer_is_counted(fixture_root):
    data = [replace(ex, reference=None) if ex.id == "0" else ex
            for ex in load("mmbench", fixture_root)]
    metrics = score_general("mmbench", data, {"0": "B", "1": "A", "1000001": "B"})
    # 0 left out; question 1 right in both orders: accuracy 1/1, circular 1/1
    assert metrics["accuracy"].value == 1.0 and metrics["accuracy"].n == 1
    assert metrics["circular_accuracy"].value == 1.0 and metrics["circular_accuracy"].n == 1
    assert metrics["accuracy"].counts["no_reference"] == 1


def test_scienceqa_img(fixture_root):
    data = load("scienceqa-img", fixture_root)
    # test split with an image: 5 (red/blue, answer B) and 12 (alpha/beta/gamma, answer A)
    metrics = score_general("scienceqa-img", data, {
        "5": "B",        # right
        "12": "alpha",   # no letter the LLaVA parser reads -> unparsed, wrong
    })
    assert headline("scienceqa-img") == ["accuracy"]
    assert metrics["accuracy"].value == 0.5
    assert metrics["accuracy"].n == 2
    assert metrics["accuracy"].counts["unparsed"] == 1
    metrics = score_general("scienceqa-img", data, {"5": "A. red", "12": "The answer is A."})
    assert metrics["accuracy"].value == 0.5  # 5 wrong (A), 12 right (A)


def test_textvqa(fixture_root):
    data = load("textvqa", fixture_root)
    # 34602: 9 x "acme", 1 x "acme co". "Acme Co." -> "acme co" matches 1 annotator:
    #   leaving out an "acme" annotator: min(1, 1/3) = 1/3 (9 times); leaving out the
    #   "acme co" one: 0/3. Mean = 9 * (1/3) / 10 = 0.3.
    # 34603: 10 x "7". "seven" -> "7": 1.0.
    # vqa_accuracy = (0.3 + 1.0) / 2 = 0.65; stderr = sqrt(((0.35^2) * 2 / 1) / 2) = 0.35
    metrics = score_general("textvqa", data, {"34602": "Acme Co.", "34603": "seven"})
    assert headline("textvqa") == ["vqa_accuracy"]
    assert set(metrics) == {"vqa_accuracy"}
    assert metrics["vqa_accuracy"].name == "vqa_accuracy"
    assert metrics["vqa_accuracy"].value == pytest.approx(0.65)
    assert metrics["vqa_accuracy"].stderr == pytest.approx(0.35)
    assert metrics["vqa_accuracy"].n == 2


def test_vqav2(fixture_root):
    data = load("vqav2", fixture_root)
    # 262148000: 10 x "yes"; "Yes" -> "yes": 1.0
    # 262148001: 9 x "1", 1 x "one" (human answers get punctuation only); "one" -> "1"
    #   matches 9: leaving out a "1": min(1, 8/3) = 1; leaving out "one": min(1, 9/3) = 1 -> 1.0
    # 393225000: 7 x "red", 3 x "orange"; "Orange." -> "orange" matches 3:
    #   leaving out a "red": 3/3 = 1 (7 times); an "orange": 2/3 (3 times) -> (7 + 2) / 10 = 0.9
    # mean = 2.9 / 3 = 0.966667; deviations 1/30, 1/30, -2/30: var = (6/900) / 2 = 1/300,
    # stderr = sqrt(1/300 / 3) = 1/30 = 0.033333
    metrics = score_general("vqav2", data, {"262148000": "Yes", "262148001": "one",
                                            "393225000": "Orange."})
    assert headline("vqav2") == ["vqa_accuracy"]
    assert metrics["vqa_accuracy"].value == pytest.approx(2.9 / 3)
    assert metrics["vqa_accuracy"].stderr == pytest.approx(1 / 30)
    assert metrics["vqa_accuracy"].n == 3


def test_vqav2_testdev_is_left_to_the_server(fixture_root, caplog):
    data = load("vqav2-testdev", fixture_root)
    with caplog.at_level(logging.WARNING, logger="eta.metrics.general"):
        metrics = score_general("vqav2-testdev", data, {"10": "yes", "30": "no"})
    assert metrics == {}
    assert headline("vqav2-testdev") == []
    assert "evaluation server" in caplog.text


def test_mmmu_pro_standard(fixture_root):
    data = load("mmmu-pro-standard", fixture_root)
    # validation_Art_1: first..tenth, answer B. test_Physics_2: up/down/left/right, answer A.
    metrics = score_general("mmmu-pro-standard", data, {
        "validation_Art_1": "(B) second",  # bracketed letter -> B, right
        # no bracket, no "X " or "X." letter; > 5 words, option text "down" only -> B, wrong
        "test_Physics_2": "The arrow points down, so the answer is down.",
    })
    assert headline("mmmu-pro-standard") == ["accuracy"]
    assert metrics["accuracy"].value == 0.5
    assert metrics["accuracy"].n == 2
    assert metrics["accuracy"].counts["random_guesses"] == 0


def test_mmmu_pro_vision(fixture_root):
    data = load("mmmu-pro-vision", fixture_root)
    metrics = score_general("mmmu-pro-vision", data, {
        "validation_Art_1": "The picture matches the second one.\nAnswer: B",  # tag -> B, right
        "test_Physics_2": "Answer: A",                                       # tag -> A, right
    })
    assert headline("mmmu-pro-vision") == ["accuracy"]
    assert metrics["accuracy"].value == 1.0
    # one response missing: accuracy over the other, the missing one counted
    metrics = score_general("mmmu-pro-vision", data, {"test_Physics_2": "Answer: C"})
    assert metrics["accuracy"].value == 0.0
    assert metrics["accuracy"].n == 1
    assert metrics["accuracy"].counts["missing_responses"] == 1


def test_score_general_reads_under_the_protocol():
    from eta.benchmarks.example import Example

    examples = [Example("scienceqa-img", str(i), "q", None, reference="A", choices=("x", "y"))
                for i in range(3)]
    responses = {"0": "A", "1": "The answer is A", "2": " A"}  # official reads only the first
    assert score_general("scienceqa-img", examples, responses, "official")["accuracy"].value == pytest.approx(1 / 3)
    assert score_general("scienceqa-img", examples, responses, "strict")["accuracy"].value == pytest.approx(1.0)
    with pytest.raises(ValueError, match="protocol"):
        score_general("scienceqa-img", examples, responses, "lenient")


def test_paper_mmbench_stands_beside_circular_accuracy():
    from eta.analysis import general

    reference = general.paper_reference(["vanilla"])
    assert reference["mmbench/circular_accuracy/vanilla"] == pytest.approx(0.646)
    assert "mmbench/accuracy/vanilla" not in reference
