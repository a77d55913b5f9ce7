"""GPU-hours projection: costs read from a speed result, hours from a plan, by hand."""

import json
from types import SimpleNamespace

import pytest

from eta.projection import ALIGNED_SHARE, ANSWER_TOKENS, Costs, costs_from, format_projection, load_costs, project


def plan(name, **parameters):
    return SimpleNamespace(name=name, parameters=parameters,
                           benchmarks=parameters.get("benchmarks", []), methods=parameters.get("methods", []))


def test_hours_by_hand():
    costs = Costs(vanilla_s_per_token=0.02, aligned_s_per_token=0.03, eval_overhead=0.1, source="hand")
    rows = project([plan("02", benchmarks=["spa-vl-harm", "figstep"], methods=["vanilla", "eta", "ecso"], limit=None),
                    plan("06", benchmarks=["mmbench"], methods=["eta"], limit=200)], costs)
    t, s = ANSWER_TOKENS["harmful"], ALIGNED_SHARE["harmful"]
    vanilla = t * 0.02
    per_sample = vanilla + (vanilla * 1.1 + s * t * 0.03) + vanilla * (1 + 2 * s)
    assert rows[0] == ("02", pytest.approx((265 + 500) * per_sample / 3600), 3 * (265 + 500))
    g, gs = ANSWER_TOKENS["general"], ALIGNED_SHARE["general"]
    assert rows[1] == ("06", pytest.approx(200 * (g * 0.02 * 1.1 + gs * g * 0.03) / 3600), 200)


def test_costs_come_from_gpu_results_only(tmp_path):
    gpu = {"tokens_per_s_vanilla": 40.0, "tokens_per_s_eta": 20.0, "eval_overhead": 0.05,
           "setup": {"device_name": "NVIDIA X", "vlm": "v", "dtype": "bf16"}}
    (tmp_path / "decoding-gpu.json").write_text(json.dumps(gpu))
    (tmp_path / "decoding-cpu.json").write_text(json.dumps({**gpu, "setup": {"device_name": "cpu"}}))
    costs = load_costs(tmp_path)
    assert costs.vanilla_s_per_token == 1 / 40 and costs.aligned_s_per_token == 1 / 20
    assert costs_from(tmp_path / "decoding-cpu.json") is None
    throughput = {"variants": {"vanilla": {"seconds_per_sample": 2.0}, "eta_batched": {"seconds_per_sample": 5.0}},
                  "aligned_share": 0.5, "setup": {"device_name": "NVIDIA X", "tokens": 100, "inputs": 64}}
    (tmp_path / "throughput-gpu.json").write_text(json.dumps(throughput))
    costs = load_costs(tmp_path)  # batched throughput preferred
    assert costs.vanilla_s_per_token == pytest.approx(0.02) and costs.aligned_s_per_token == pytest.approx(0.06)
    profile = SimpleNamespace(stand_in=False)
    text = format_projection(profile, [plan("02", benchmarks=["vlsafe"], methods=["vanilla"], limit=None)], tmp_path)
    assert "total" in text and "assuming mean answer tokens" in text and "throughput-gpu.json" in text
    assert "no GPU result" in format_projection(profile, [], tmp_path / "none")
    assert "stand-ins" in format_projection(SimpleNamespace(stand_in=True), [], tmp_path)
