"""Notebook helpers on hand-built runs: sweeps, trade-off tables, paper keys, timings, findings."""

import math

import pandas as pd
import pytest

from eta.analysis import ablations, efficiency, general, grid
from eta.config import load_profile
from eta.engine import Evaluation
from eta.store import RunKey


def run(benchmark, method, metrics, records=()):
    key = RunKey(model="m", method=method, method_hash="h", benchmark=benchmark, seed=0)
    return Evaluation(run=key, records=list(records), metrics={k: {"value": v, "n": 4} for k, v in metrics.items()})


def test_sweep_labels_round_trip():
    variants = ablations.sweep_variants([1, 3], [0.16], [0.06])
    assert variants == {"eta-N=1": ("eta", {"num_candidates": 1}), "eta-N=3": ("eta", {"num_candidates": 3}),
                        "eta-tau_pre=0.16": ("eta", {"tau_pre": 0.16}),
                        "eta-tau_post=0.06": ("eta", {"tau_post": 0.06})}
    assert [ablations.sweep_of(label) for label in variants] == [("N", 1), ("N", 3), ("tau_pre", 0.16),
                                                                ("tau_post", 0.06)]
    assert ablations.sweep_of("eta") == ("rule", "both")
    assert ablations.sweep_of("eta-rule-either") == ("rule", "either")
    assert ablations.sweep_of("eta-shallow-rm") == ("component", "shallow+rm_guide")


def test_tradeoff_rows_and_base_points():
    g = grid.Grid(load_profile("tiny"), {
        ("harm", "eta"): run("harm", "eta", {"usr": 0.2, "asr": 0.3, "invalid_rate": 0.0}),
        ("help", "eta"): run("help", "eta", {"refusal_rate": 0.1}),
        ("harm", "eta-N=1"): run("harm", "eta", {"usr": None, "asr": 0.5}),
        ("help", "eta-N=1"): run("help", "eta", {"refusal_rate": 0.0}),
    })
    table = ablations.tradeoff(g, "harm", "help", ["eta", "eta-N=1"], base={"N": 5, "tau_post": 0.06})
    n = table[table.study == "N"].set_index("value")
    assert n.loc[5, "usr"] == 0.2 and n.loc[5, "helpfulness"] == pytest.approx(0.9)
    assert n.loc[1, "asr"] == 0.5 and n.loc[1, "helpfulness"] == 1.0
    assert "tau_post" not in set(table.study)  # no tau_post sweep ran: no lone base point
    assert "N: 1: ASR 0.50" in ablations.findings(table).replace("**", "")  # a missing USR falls back to ASR
    metrics = ablations.headline_metrics(table, "harm", "help")
    assert metrics["harm/usr/eta"] == 0.2 and metrics["help/helpfulness/eta-N=1"] == 1.0


def test_paper_numbers_are_rekeyed_onto_our_benchmarks():
    reference = grid.paper_reference("usr", ["vanilla", "eta"])
    assert reference["figstep/usr/eta"] == pytest.approx(0.078)
    beside = grid.paper_beside(reference, ["embedded-harm", "spa-vl-harm"], {"embedded-harm": "figstep"})
    assert beside["embedded-harm/usr/eta"] == pytest.approx(0.078)
    assert beside["spa-vl-harm/usr/vanilla"] == pytest.approx(0.4604)
    assert not [k for k in beside if k.startswith("figstep/")]
    table5 = ablations.paper_reference("embedded-harm")
    assert table5["embedded-harm/usr/eta-shallow-rm"] == pytest.approx(0.166)
    assert table5["embedded-harm/helpful_score/vanilla"] == pytest.approx(7.64)
    assert general.paper_reference(["eta"])["vqav2/accuracy/eta"] == pytest.approx(0.7851)


def test_general_scores_use_the_papers_metric_names():
    g = grid.Grid(load_profile("tiny"), {
        ("textvqa", "eta"): run("textvqa", "eta", {"vqa_accuracy": 0.5, "aligned_rate": 0.25}),
        ("mme", "vanilla"): run("mme", "vanilla", {"perception": 1200.0, "perception/OCR": 100.0}),
        ("embedded-help", "eta"): run("embedded-help", "eta", {"refusal_rate": 0.0}),
    })
    frame = general.accuracy_frame(g)
    assert general.accuracy_metrics(frame) == {"textvqa/accuracy/eta": 0.5, "mme/perception/vanilla": 1200.0}
    assert "mme/perception/OCR" in set(frame.benchmark + "/" + frame.metric)  # subtasks stay in the table


def test_false_alignment_counts_each_evaluator():
    records = [{"pre_unsafe": True, "post_unsafe": False, "aligned": False},
               {"pre_unsafe": True, "post_unsafe": True, "aligned": True}]
    ev = run("mme", "eta", {}, records)
    ev.metrics["aligned_rate"] = {"value": 0.5, "ci": [0.1, 0.9]}
    fa = general.false_alignment(grid.Grid(load_profile("tiny"), {("mme", "eta"): ev}))
    row = fa.iloc[0]
    assert (row.pre_fires, row.post_fires, row.false_alignment_rate) == (1.0, 0.5, 0.5)
    assert general.false_alignment_metrics(fa)["mme/post_evaluator_fires/eta"] == 0.5


def test_timing_table_splits_phases_and_rates():
    records = [{"response_tokens": 10, "aligned": True, "timings": {"generate": 1.0, "evaluate": 0.5, "align": 2.5,
                                                                    "total": 4.0}},
               {"response_tokens": 30, "aligned": False, "timings": {"generate": 1.0, "evaluate": 0.5, "total": 1.5}}]
    g = grid.Grid(load_profile("tiny"), {("b", "eta"): run("b", "eta", {}, records)})
    row = efficiency.timing_table(g).iloc[0]
    assert row.seconds_per_response == pytest.approx(2.75) and row.tokens_per_s == pytest.approx(40 / 5.5)
    assert (row["generate"], row["evaluate"], row["align"], row["aligned_rate"]) == (1.0, 0.5, 1.25, 0.5)
    metrics = efficiency.headline_metrics(efficiency.timing_table(g), 123.0)
    assert metrics["process/peak_memory_mb"] == 123.0 and math.isclose(metrics["b/seconds_per_response/eta"], 2.75)
    assert efficiency.paper_reference({"mmbench": "b"}, ["eta"]) == {"b/seconds_per_response/eta": 0.28}


def test_findings_compare_with_the_baseline():
    frame = pd.DataFrame([{"benchmark": "b", "method": m, "metric": "asr", "value": v, "n": 4}
                          for m, v in (("vanilla", 0.8), ("eta", 0.2))])
    text = grid.findings(frame, ["asr"])
    assert "eta 0.200 (lower)" in text and "intervals are wide" in text


def test_metric_plot_puts_each_interval_on_its_own_bar():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.container import BarContainer, ErrorbarContainer

    frame = pd.DataFrame([dict(benchmark=b, method=m, metric="acc", value=v, ci_low=lo, ci_high=hi, n=2)
                          for b, m, v, lo, hi in (("t", "vanilla", 0.0, 0.0, 0.6), ("t", "eta", 0.2, 0.1, 0.7),
                                                  ("m", "vanilla", 0.5, 0.1, 0.9), ("m", "eta", 0.5, None, None))])
    ax = grid.plot_metric(frame, "acc", "title").axes[0]
    bars = {c.get_label(): c for c in ax.containers if isinstance(c, BarContainer)}
    errors = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    spans = {}
    for container, method in zip(errors, ("vanilla", "eta")):
        segments = container.lines[2][0].get_segments()
        for segment in segments:
            spans[(method, round(float(segment[0][0]), 3))] = (round(float(segment[0][1]), 3),
                                                               round(float(segment[1][1]), 3))
    centre = lambda patch: round(patch.get_x() + patch.get_width() / 2, 3)  # noqa: E731
    assert spans[("vanilla", centre(bars["vanilla"].patches[0]))] == (0.0, 0.6)
    assert spans[("eta", centre(bars["eta"].patches[0]))] == (0.1, 0.7)
    assert spans[("vanilla", centre(bars["vanilla"].patches[1]))] == (0.1, 0.9)
    assert ("eta", centre(bars["eta"].patches[1])) not in spans  # no interval, no line


def test_tradeoff_plot_draws_only_studies_that_compare():
    g = grid.Grid(load_profile("tiny"), {
        ("harm", "eta"): run("harm", "eta", {"usr": 0.2, "asr": 0.3, "invalid_rate": 0.0}),
        ("help", "eta"): run("help", "eta", {"refusal_rate": 0.1}),
        ("harm", "eta-N=1"): run("harm", "eta", {"usr": 0.4, "asr": 0.5}),
        ("help", "eta-N=1"): run("help", "eta", {"refusal_rate": 0.0}),
    })
    table = ablations.tradeoff(g, "harm", "help", ["eta", "eta-N=1"], base={"N": 5})
    fig = ablations.plot_tradeoff(table)
    assert [ax.get_title() for ax in fig.axes] == ["N"]  # the lone `eta` row is no rule study
