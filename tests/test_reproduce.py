"""`python -m eta reproduce`: selection, strict params, dry run, preflight, failures, index, compare."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from eta import reproduce as rp
from eta import report, tracking
from eta.config import ConfigError, params_dir
from eta.notebook_params import load_params
from eta.preflight import PreflightError
from tests.conftest import write_parameterised_notebook

REAL_PARAMS = params_dir()

PARAMETERS = '''profile = "tiny"
benchmark = "embedded-clip-study"
limit = 3  # images per class
threshold = 0.5
output_dir = "out"
wandb_group = None'''

WRITE_METRICS = '''from eta import report
report.write_metrics(output_dir, {benchmark + "/score": threshold, benchmark + "/limit": limit},
                     notebook=NAME, profile=profile, stand_in=True,
                     paper_reference={benchmark + "/score": 0.16})'''

FAIL_WITH_RUN = '''from eta import tracking
from eta.config import load_profile
run = tracking.start_run(NAME, load_profile(profile), {"limit": limit}, group=wandb_group, stand_in=True,
                         model_names={"clip": "tiny-clip"})'''


def make_notebook(path: Path, body: list[str], needs: list[str] | None = ()) -> Path:
    return write_parameterised_notebook(path, PARAMETERS, body, needs)


@pytest.fixture
def suite(tmp_path, monkeypatch) -> Path:
    """Three small notebooks (one fails after starting a W&B run) and a params tree beside them."""
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    make_notebook(notebooks / "01_ok.ipynb", [WRITE_METRICS])
    make_notebook(notebooks / "02_fail.ipynb", [FAIL_WITH_RUN, "raise RuntimeError('deliberate failure')"])
    make_notebook(notebooks / "03_needs_all.ipynb", [WRITE_METRICS], needs=None)
    (notebooks / "scratch.ipynb").write_text((notebooks / "01_ok.ipynb").read_text())  # not NN_: ignored
    params = tmp_path / "params"
    for profile in REAL_PARAMS.glob("*/profile.yaml"):
        (params / profile.parent.name).mkdir(parents=True)
        shutil.copy(profile, params / profile.parent.name / "profile.yaml")
    (params / "tiny" / "01_ok.yaml").write_text("limit: 2\nthreshold: 1\n")
    monkeypatch.setenv("ETA_PARAMS", str(params))
    monkeypatch.setenv("ETA_NOTEBOOKS", str(notebooks))
    for var in ("ETA_RUN_ID", "WANDB_MODE", "WANDB_API_KEY", "ETA_DATA_DIR", "ETA_DATA_CLIP_STUDY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    return tmp_path


def test_discover_and_select(suite):
    found = rp.discover()
    assert [p.stem for p in found] == ["01_ok", "02_fail", "03_needs_all"]
    assert [p.stem for p in rp.select(found, ["02"])] == ["02_fail"]
    assert [p.stem for p in rp.select(found, ["3", "01_ok", "01"])] == ["01_ok", "03_needs_all"]
    assert rp.select(found, None) == found
    with pytest.raises(ConfigError, match="known notebooks: 01_ok, 02_fail, 03_needs_all"):
        rp.select(found, ["07"])
    assert rp.parse_selection("02,05") == ["02", "05"]
    assert rp.parse_selection("02 05") == ["02", "05"]
    assert rp.parse_selection("") is None


def test_params_are_merged_strictly(suite):
    notebook = suite / "notebooks" / "01_ok.ipynb"
    values = load_params("tiny", notebook)
    assert values["limit"] == 2 and values["threshold"] == 1  # an int where a float is: accepted
    assert values["benchmark"] == "embedded-clip-study"  # the notebook's default
    path = suite / "params" / "tiny" / "01_ok.yaml"
    path.write_text("limit: 2\nlimt: 3\n")
    with pytest.raises(ConfigError, match=r"01_ok\.yaml.*unknown key 'limt'"):
        load_params("tiny", notebook)
    path.write_text("limit: two\n")
    with pytest.raises(ConfigError, match="'limit' must be int"):
        load_params("tiny", notebook)
    path.write_text("output_dir: elsewhere\n")
    with pytest.raises(ConfigError, match="set by reproduce"):
        load_params("tiny", notebook)


def test_dry_run_prints_plan_and_loads_nothing(suite, monkeypatch, capsys):
    import papermill

    import eta.evaluators
    import eta.models

    def forbidden(*args, **kwargs):
        raise AssertionError("a dry run must not load or execute anything")

    monkeypatch.setattr(papermill, "execute_notebook", forbidden)
    monkeypatch.setattr(eta.evaluators, "load_clip", forbidden)
    monkeypatch.setattr(eta.evaluators, "load_reward_model", forbidden)
    monkeypatch.setattr(eta.models, "load_vlm", forbidden, raising=False)
    run_dir = rp.reproduce("tiny", ["01", "03"], results_root=suite / "results", run_id="dry", dry_run=True)
    out = capsys.readouterr().out
    assert "01_ok" in out and "03_needs_all" in out and "02_fail" not in out
    assert "benchmarks: embedded-clip-study" in out
    assert "limit=2" in out and "limit=3" in out
    assert "models.clip=tiny-clip" in out
    assert "everything needed is here" in out
    assert not run_dir.exists()


def test_preflight_lists_missing_checkpoints_and_data_for_paper(suite, monkeypatch, capsys):
    monkeypatch.setenv("HF_HOME", str(suite / "empty-hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(suite / "home"))  # no ~/.cache/clip either
    (suite / "params" / "paper" / "03_needs_all.yaml").write_text("benchmark: clip-study\n")
    with pytest.raises(PreflightError) as caught:
        rp.reproduce("paper", ["03"], results_root=suite / "results", run_id="pf")
    message = str(caught.value)
    for expected in ("llava-hf/llava-1.5-7b-hf", "RLHFlow/ArmoRM-Llama3-8B-v0.1", "ViT-L-14-336",
                     "OpenSafetyLab/MD-Judge-v0_2-internlm2_7b", "OPENAI_API_KEY", "clip-study",
                     "ETA_DATA_CLIP_STUDY", "hf download"):
        assert expected in message, expected
    assert not (suite / "results" / "pf").exists()
    # the CLI says the same and exits 2; the real notebook 01 with the paper profile needs CLIP and the data
    monkeypatch.delenv("ETA_NOTEBOOKS")
    monkeypatch.setenv("ETA_PARAMS", str(REAL_PARAMS))
    code = rp.main(["reproduce", "--profile", "paper", "--notebooks", "01", "--results-root", str(suite / "results")])
    err = capsys.readouterr().err
    assert code == 2
    assert "timm/vit_large_patch14_clip_336.openai" in err and "ETA_DATA_CLIP_STUDY" in err
    assert "llava-hf" not in err  # notebook 01 declares it needs the CLIP only


def test_failing_notebook_still_yields_index_and_nonzero_exit(suite, capsys):
    results = suite / "results"
    code = rp.main(["reproduce", "--profile", "tiny", "--notebooks", "01,02", "--results-root", str(results),
                    "--run-id", "r1"])
    assert code == 1
    run_dir = results / "r1"
    status = json.loads((run_dir / report.STATUS_FILE).read_text())
    by_name = {n["name"]: n for n in status["notebooks"]}
    assert by_name["01_ok"]["status"] == "ok"
    assert by_name["02_fail"]["status"] == "failed"
    assert "deliberate failure" in by_name["02_fail"]["error"]
    metrics = report.read_metrics(run_dir / "01_ok")
    assert metrics["metrics"] == {"embedded-clip-study/score": 1.0, "embedded-clip-study/limit": 2.0}
    assert metrics["paper"] == {"embedded-clip-study/score": 0.16}
    assert metrics["run_id"] == "r1"
    for name in ("01_ok", "02_fail"):
        assert (run_dir / f"{name}.ipynb").is_file() and (run_dir / f"{name}.html").is_file()
    index = (run_dir / "index.html").read_text()
    assert "deliberate failure" in index and "01_ok.html" in index and "STAND-IN" in index
    assert "total" in capsys.readouterr().out
    # the failing notebook's W&B run was finished as failed by the cell that raised
    (wandb_run,) = tracking.offline_runs(suite / "wb")
    data = tracking.read_offline_run(wandb_run)
    assert data["state"] == "failed"
    assert data["config"]["run_id"] == "r1"


def test_compare_and_index_of_local_runs(tmp_path, capsys):
    for run, auc, stand_in in (("a", 0.6, True), ("b", 0.9, False)):
        report.write_metrics(tmp_path / run / "01_x", {"bench/auc": auc, "bench/n": 10},
                             notebook="01_x", profile="tiny" if stand_in else "paper", stand_in=stand_in,
                             paper_reference={"bench/auc": 0.95})
    frame = report.compare_runs(["a", str(tmp_path / "b")], results_root=tmp_path)
    assert list(frame.columns) == ["a", "b", "paper"]
    assert frame.loc[("01_x", "bench/auc"), "a"] == pytest.approx(0.6)
    assert frame.loc[("01_x", "bench/auc"), "paper"] == pytest.approx(0.95)
    assert frame.attrs["runs"]["a"]["stand_in"] and not frame.attrs["runs"]["b"]["stand_in"]
    assert rp.main(["compare", "a", "b", "--results-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "bench/auc" in out and "stand-in" in out
    assert rp.main(["compare", "nope", "--results-root", str(tmp_path)]) == 2
    assert "STAND-IN" in report.build_index(tmp_path / "a").read_text()
    assert "STAND-IN" not in report.build_index(tmp_path / "b").read_text()


def test_paper_reference_lookup():
    eta = report.paper_metrics("usr", "llava-1.5-7b", "eta")
    assert eta["figstep/usr"] == pytest.approx(0.078)
    assert eta["cross-modality-attack/usr"] == pytest.approx(0.225)
    assert report.paper_metrics("usr", "llava-1.5-7b", "vanilla", key_suffix="_vanilla")["spa-vl-harm/usr_vanilla"] \
        == pytest.approx(0.4604)
    assert report.paper_metrics("general_ability", "llava-1.5-7b", "eta")["mme/perception"] == pytest.approx(1506.13)
    assert report.paper_metrics("helpfulness", "llava-1.5-7b", "ecso") == {"spa-vl-help/win_tie": pytest.approx(0.808)}
    assert report.paper_metrics("ablation", "llava-1.5-7b", "shallow+rm_guide")["spa-vl-harm/helpful_score"] == 8.38
    assert report.paper_metrics("helpfulness", "llava-1.5-7b", "vanilla", benchmark="embedded-help") == {
        "embedded-help/win_tie": pytest.approx(0.966)}
    with pytest.raises(KeyError, match="ambiguous"):
        report.paper_metrics("usr", "llava-1.5-7b", "eta", benchmark="x")
    with pytest.raises(KeyError, match="llava-1.5-13b"):
        report.paper_metrics("usr", "llava-9b", "eta")
