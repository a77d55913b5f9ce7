"""Every notebook: clean when committed, strict params per profile, and a full tiny run.

A new ``notebooks/NN_name.ipynb`` is covered automatically. To check its headline numbers by
name, add glob patterns of its ``metrics.json`` keys to ``EXPECTED_METRICS``; without an entry a
notebook must write at least one metric.
"""

from __future__ import annotations

import fnmatch
import math
from pathlib import Path

import nbformat
import pytest

from eta import notebook_params, report, tracking
from eta import reproduce as rp
from eta.config import params_dir

NOTEBOOKS = rp.discover(Path(__file__).resolve().parent.parent / "notebooks")
PROFILES = ("tiny", "local", "paper")
SECRET = "sk-test-SECRET123"

# notebook name -> fnmatch patterns every one of which must match a key of its metrics.json
EXPECTED_METRICS: dict[str, list[str]] = {
    "01_clip_threshold_roc": ["*/auc", "*/tau_pre", "*/tpr_at_tau_pre", "*/fpr_at_tau_pre",
                              "*/tpr_at_paper_tau_pre", "*/fpr_at_paper_tau_pre", "*/best_threshold",
                              "*/best_youden_j", "*/n_unsafe", "*/n_safe"],
    "02_harmlessness": ["embedded-harm/usr/eta", "embedded-harm/invalid_rate/eta", "embedded-harm/asr/vanilla",
                        "embedded-harm/asr/ecso", "embedded-harm/asr/eta", "advbench-embedded/asr/eta"],
    "03_helpfulness_winties": ["embedded-help/win_tie/vanilla", "embedded-help/win_tie/ecso",
                               "embedded-help/invalid_rate/vanilla", "embedded-help/helpful_score/eta"],
    "04_general_ability": ["mme/perception/vanilla", "mme/cognition/eta", "mmbench/accuracy/eta",
                           "scienceqa-img/accuracy/eta", "textvqa/accuracy/eta", "vqav2/accuracy/eta",
                           "mmmu-pro-standard/accuracy/eta", "*/false_alignment_rate/eta"],
    "05_ablations": ["embedded-harm/asr/eta-N=*", "embedded-harm/asr/eta-tau_pre=*", "embedded-harm/asr/eta-tau_post=*",
                     "embedded-harm/asr/eta-deep-only", "embedded-harm/asr/eta-rule-either",
                     "embedded-help/helpfulness/eta", "embedded-harm/helpful_score/eta"],
    "06_efficiency": ["embedded-harm/seconds_per_response/vanilla", "embedded-harm/seconds_per_response/ecso",
                      "embedded-help/tokens_per_s/eta", "process/peak_memory_mb"],
}

ids = [p.stem for p in NOTEBOOKS]


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks/NN_*.ipynb found"
    names = [p.name for p in NOTEBOOKS]
    assert len({n[:2] for n in names}) == len(names), f"two notebooks share a number: {names}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=ids)
def test_committed_notebook_is_clean(notebook):
    nb = nbformat.read(str(notebook), as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{notebook.name}: {len(tagged)} cells tagged 'parameters', want exactly one"
    assert not any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{notebook.name}: cells {dirty} hold outputs; clear them before committing"
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    declared = notebook_params.notebook_parameters(notebook)
    assert set(notebook_params.SET_BY_REPRODUCE) <= set(declared), f"{notebook.name} lacks {notebook_params.SET_BY_REPRODUCE}"
    assert declared["profile"]["default"].strip("'\"") == "tiny", "defaults are sized for a small run"


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=ids)
def test_params_file_keys_are_notebook_parameters(notebook, profile):
    path = notebook_params.params_file(profile, notebook)
    assert path.is_file(), f"missing {path}"
    notebook_params.load_params(profile, notebook)  # strict: an unknown key or a wrong type raises, naming both


@pytest.mark.parametrize("profile", PROFILES)
def test_no_params_file_without_its_notebook(profile):
    stems = {p.stem for p in NOTEBOOKS}
    orphans = [p.name for p in (params_dir() / profile).glob("*.yaml") if p.stem not in stems | {"profile"}]
    assert not orphans, f"params/{profile}/ has files for no notebook: {orphans}"


def expected_keys_present(name: str, keys: list[str]) -> list[str]:
    """The expected patterns that no key matches."""
    patterns = EXPECTED_METRICS.get(name)
    if patterns is None:
        return [] if keys else ["(at least one metric)"]
    return [p for p in patterns if not fnmatch.filter(keys, p)]


def files_with(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def asr_from_store(samples: Path, benchmark: str, method: str) -> float:
    """Attack success rate read straight from the SQLite store (SQL and a mean, no eta code):
    the notebook's samples file says which result keys the run used."""
    import json
    import sqlite3

    from eta.config import load_profile

    keys = [r["key"] for r in map(json.loads, samples.read_text().splitlines())
            if r["benchmark"] == benchmark and r["method"] == method]
    with sqlite3.connect(f"file:{load_profile('tiny').engine.store}?mode=ro", uri=True) as conn:
        rows = conn.execute(f"SELECT payload FROM verdicts WHERE judge = 'refusal' AND result_key IN "
                            f"({','.join('?' * len(keys))})", keys).fetchall()
    assert keys and len(rows) == len(keys)
    return sum(json.loads(payload)["attack_success"] for (payload,) in rows) / len(rows)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=ids)
def test_notebook_runs_with_tiny_profile(notebook, tmp_path, monkeypatch):
    wandb_dir = tmp_path / "wandb-files"
    for var in ("WANDB_API_KEY", "WANDB_BASE_URL", "ETA_NOTEBOOKS", "ETA_PARAMS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(wandb_dir))
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("ETA_RUN_ID", f"test-{notebook.stem}")
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    results = tmp_path / "results"
    try:
        run_dir = rp.reproduce("tiny", [notebook.stem], results_root=results, run_id=f"test-{notebook.stem}")
    except rp.ReproduceFailed as exc:
        status = report.read_status(exc.results_dir)
        pytest.fail(f"{notebook.name} failed under papermill: {status['notebooks'][0]['error']}")

    entry = report.read_metrics(run_dir / notebook.stem)
    keys = list(entry["metrics"])
    assert entry["profile"] == "tiny" and entry["stand_in"] is True
    assert entry["notebook"] == notebook.stem
    assert not expected_keys_present(notebook.stem, keys), f"missing metrics: {expected_keys_present(notebook.stem, keys)}"
    assert all("/" in k for k in keys), "metric keys look like benchmark/metric"
    assert set(entry["paper"]) <= set(keys)
    assert (run_dir / f"{notebook.stem}.html").is_file() and (run_dir / "index.html").is_file()

    runs = tracking.offline_runs(wandb_dir)
    assert len(runs) == 1, f"one W&B run per notebook, found {runs}"
    data = tracking.read_offline_run(runs[0])
    assert data["state"] == "finished"
    for key, value in entry["metrics"].items():
        if value is None or math.isnan(value):
            continue  # logged as NaN (e.g. a USR with no valid verdict): the read-back drops non-finite values
        assert key in data["summary"], f"W&B summary lacks {key}"
        assert data["summary"][key] == pytest.approx(value)
    config = data["config"]
    assert config["profile"]["name"] == "tiny"
    assert config["run_id"] == f"test-{notebook.stem}"
    assert config["params"]["profile"] == "tiny"
    expected = notebook_params.load_params("tiny", notebook)
    missing = sorted(set(expected) - set(config["params"]))
    assert not missing, f"the W&B config must hold every notebook parameter; missing {missing}"
    assert all(config["params"][k] == v for k, v in expected.items()
               if k not in notebook_params.SET_BY_REPRODUCE and not isinstance(v, notebook_params.Expression))
    assert "tiny" in data["tags"] and "stand-in" in data["tags"]
    logged = b"".join(p.read_bytes() for p in runs[0].glob("*.wandb"))
    assert b"executed-notebook" in logged, "the executed notebook is logged as an artifact"
    assert "NOT the paper's models" in data["notes"]

    if notebook.stem == "02_harmlessness":  # a headline value recomputed from the store itself
        assert entry["metrics"]["embedded-harm/asr/eta"] == pytest.approx(
            asr_from_store(run_dir / notebook.stem / "samples.jsonl", "embedded-harm", "eta"))

    secret = SECRET.encode()
    assert not files_with(results, secret), "the secret leaked into the results"
    assert not files_with(wandb_dir, secret), "the secret leaked into the W&B files"
