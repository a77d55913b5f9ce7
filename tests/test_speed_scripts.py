"""The speed scripts run end to end on the tiny twins and print the JSON their results files hold."""

import json
import sys
from pathlib import Path

import pytest

SPEED = Path(__file__).resolve().parent.parent / "speed"


@pytest.fixture()
def speed_scripts(monkeypatch):
    monkeypatch.syspath_prepend(str(SPEED))
    yield
    for name in ("throughput", "decoding"):
        sys.modules.pop(name, None)


def test_throughput_script_on_twins(speed_scripts, capsys):
    import throughput

    assert throughput.main(["--model", "tiny", "--device", "cpu", "--inputs", "3", "--batch-size", "2", "--tokens", "4",
                            "--max-sentence-tokens", "2", "--official-inputs", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["variants"]) == {"vanilla", "eta_per_input", "eta_batched", "official_loop"}
    assert result["aligned_share"] == 1.0 and result["vanilla_answers_equal"]
    assert result["throughput_batched_vs_per_input"] > 0 and result["batched_cost_vs_vanilla"] > 0


def test_decoding_script_on_twins(speed_scripts, capsys):
    import decoding

    assert decoding.main(["--model", "tiny", "--device", "cpu", "--tokens", "4", "--repeats", "1",
                          "--max-sentence-tokens", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["tokens"]) == {"vanilla", "eta", "sequential"} and result["setup"]["model"] == "tiny"
    assert result["tokens_per_s_eta"] > 0 and result["cost_vs_vanilla"] > 0
