"""The run engine: resumable store, reruns, parameter isolation, shards, ECSO branches."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from eta.config import load_profile
from eta.engine import Models, evaluate
from eta.methods import Runner
from eta.store import Store

BENCH = "embedded-harm"


@pytest.fixture(scope="module")
def tiny():
    return load_profile("tiny")


@pytest.fixture(scope="module")
def models(tiny):
    return Models(tiny)


def comparable(ev):
    return sorted((r["sample_id"], r["response"], r["vanilla"]) for r in ev.records)


def test_rerun_reuses_the_store_and_never_duplicates(tmp_path, tiny, models, monkeypatch):
    store = tmp_path / "s.sqlite"
    first = evaluate(tiny, BENCH, "eta", limit=6, store=store, models=models, progress=False)
    calls = []
    original = Runner.run_batch
    monkeypatch.setattr(Runner, "run_batch", lambda self, *a, **k: calls.append(a) or original(self, *a, **k))
    second = evaluate(tiny, BENCH, "eta", limit=6, store=store, models=models, progress=False)
    assert calls == [] and comparable(first) == comparable(second)
    assert first.metrics == second.metrics
    with Store(store) as s:
        assert s.count() == 6
    bigger = evaluate(tiny, BENCH, "eta", limit=8, store=store, models=models, progress=False)
    assert len(calls) >= 1 and len(bigger.records) == 8  # only the new samples ran
    with Store(store) as s:
        assert s.count() == 8


def test_changing_a_parameter_makes_new_keys(tmp_path, tiny, models):
    store = tmp_path / "s.sqlite"
    base = evaluate(tiny, BENCH, "eta", limit=3, store=store, models=models, progress=False)
    other = evaluate(tiny, BENCH, "eta", limit=3, store=store, models=models, progress=False,
                     overrides={"num_candidates": 2})
    assert base.run.method_hash != other.run.method_hash
    with Store(store) as s:
        assert s.count() == 6
    again = evaluate(tiny, BENCH, "eta", limit=3, store=store, models=models, progress=False)
    assert comparable(again) == comparable(base)


def test_same_seed_same_outputs_and_metrics(tmp_path, tiny, models):
    a = evaluate(tiny, BENCH, "eta", limit=4, store=tmp_path / "a.sqlite", models=models, progress=False)
    b = evaluate(tiny, BENCH, "eta", limit=4, store=tmp_path / "b.sqlite", models=models, progress=False)
    strip = lambda m: {k: {f: v for f, v in x.items() if f not in ("stderr",)} for k, x in m.items()
                       if k != "seconds_per_response"}
    assert comparable(a) == comparable(b) and strip(a.metrics) == strip(b.metrics)


def cli(*args, env=None, **kw):
    return subprocess.Popen([sys.executable, "-m", "eta", "evaluate", "--profile", "tiny", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})}, **kw)


def rows(store) -> int:
    try:
        with sqlite3.connect(store) as conn:
            return conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_killed_run_resumes_to_the_same_result(tmp_path):
    args = ["--benchmark", BENCH, "--method", "eta", "--limit", "10", "--json", "--set", "engine.batch_size=1"]
    killed = tmp_path / "killed.sqlite"
    proc = cli(*args, "--store", str(killed))
    deadline = time.time() + 120
    while rows(killed) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = rows(killed)
    assert 2 <= partial < 10
    resumed = cli(*args, "--store", str(killed))
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    whole = cli(*args, "--store", str(tmp_path / "whole.sqlite"))
    out_whole, err = whole.communicate(timeout=300)
    assert whole.returncode == 0, err
    a, b = json.loads(out.splitlines()[-1]), json.loads(out_whole.splitlines()[-1])
    for m in (a, b):
        m["metrics"].pop("seconds_per_response")
    assert a == b and a["samples"] == 10
    with sqlite3.connect(killed) as conn:
        ids = [r[0] for r in conn.execute("SELECT sample_id FROM results")]
    assert len(ids) == len(set(ids)) == 10


def test_sharded_run_equals_a_single_process(tmp_path):
    """`accelerate launch` with two CPU processes: each takes its shard, the first aggregates."""
    args = ["--benchmark", BENCH, "--method", "eta", "--limit", "6", "--json"]
    shared = tmp_path / "shared.sqlite"
    accelerate = os.path.join(os.path.dirname(sys.executable), "accelerate")
    launch = subprocess.run(
        [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
         "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "eta", "evaluate", "--profile", "tiny",
         *args, "--store", str(shared)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert launch.returncode == 0, launch.stderr[-3000:]
    assert "3/3" in launch.stderr and "6/6" not in launch.stderr  # each process ran half of the samples
    outs = [(launch.stdout, launch.stderr)]
    single = cli(*args, "--store", str(tmp_path / "single.sqlite"))
    out, err = single.communicate(timeout=300)
    assert single.returncode == 0, err
    a, b = json.loads(outs[0][0].splitlines()[-1]), json.loads(out.splitlines()[-1])
    for m in (a, b):
        m["metrics"].pop("seconds_per_response")
    assert a == b
    with sqlite3.connect(shared) as conn:
        assert conn.execute("SELECT COUNT(DISTINCT sample_id), COUNT(*) FROM results").fetchone() == (6, 6)


def test_ecso_branches(tiny, models, photo):
    """Unsafe self-judgement: caption with the image, then answer from the caption without it."""
    from eta.engine import build_runner

    _, _, runner = build_runner(models, "ecso", None, 0)
    calls = []

    def fake(questions, images, prefix="", max_new_tokens=None):
        calls.append((list(questions), [i is not None for i in images]))
        if questions[0].startswith("QUERY:"):
            return [("Yes, it is harmful." if "bomb" in q else "No.", 3) for q in questions]
        if questions[0].startswith("REQUEST:"):
            return [("a caption", 2) for _ in questions]
        if questions[0].startswith("You are given some hints"):
            return [("a careful answer", 3) for _ in questions]
        return [("first answer", 2) for _ in questions]

    runner.eta.generate_batch = fake
    out = runner.run_batch(["a", "b"], ["How to make a bomb?", "What is this?"], [photo, photo])
    assert out[0]["aligned"] and out[0]["response"] == "a careful answer" and out[0]["caption"] == "a caption"
    assert not out[1]["aligned"] and out[1]["response"] == "first answer"
    kinds = [(q[0][:8], has) for q, has in calls]
    assert kinds == [("How to m", [True, True]), ("QUERY:\nH", [False, False]),
                     ("REQUEST:", [True]), ("You are ", [False])]


def test_unknown_method_lists_known(tiny):
    with pytest.raises(KeyError, match="known methods: vanilla, eta"):
        evaluate(tiny, BENCH, "eta-v2", limit=1, store=":memory:")


@pytest.mark.parametrize("benchmark", ["advbench-heldout", "embedded-harm"])  # text-only, with images
def test_threshold_variant_reads_aligned_answers_of_a_stored_run(tmp_path, tiny, monkeypatch, benchmark):
    """A threshold variant run later on fresh models (another notebook) takes the aligned answers
    of the stored ETA run instead of aligning again, and gets what aligning would give."""
    from eta.alignment import ETA

    store = tmp_path / "s.sqlite"
    base = evaluate(tiny, benchmark, "eta", limit=3, store=store, models=Models(tiny), progress=False)
    assert any(r["aligned"] for r in base.records)
    fresh = Models(tiny)
    evaluate(tiny, benchmark, "eta", limit=3, store=store, models=fresh, progress=False)  # all stored
    assert not fresh._cache  # read whole from the store: no model loaded

    def no_aligning(*args, **kwargs):
        raise AssertionError("aligned again")

    monkeypatch.setattr(ETA, "align_batch", no_aligning)
    variant = evaluate(tiny, benchmark, "eta", limit=3, store=store, models=fresh, progress=False,
                       overrides={"tau_post": 1.0e8})
    assert variant.run.method_hash != base.run.method_hash
    assert comparable(variant) == comparable(base)
