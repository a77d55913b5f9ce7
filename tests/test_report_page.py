"""The run folder a person looks at: invalid-verdict warnings, incomplete runs, reruns into a run id,
and index.html with each notebook's headline figure, checked in a real (headless) browser."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from eta import report
from eta import reproduce as rp
from eta.config import params_dir
from tests.conftest import write_parameterised_notebook

PARAMETERS = '''profile = "tiny"
invalid = 0.9  # the judge's invalid-verdict rate this notebook reports for eta
sleep_s = 0.0  # seconds to wait after the first metrics (a run to kill)
output_dir = "out"
wandb_group = None'''

BODY = [
    '''from pathlib import Path
import time
from eta import report, tracking
from eta.config import load_profile
run = tracking.start_run(NAME, load_profile(profile), {"invalid": invalid}, group=wandb_group, stand_in=True,
                         model_names={"clip": "tiny-clip"})''',
    '''import matplotlib
matplotlib.use("module://matplotlib_inline.backend_inline")
import matplotlib.pyplot as plt
fig, ax = plt.subplots(figsize=(3, 2))
ax.bar(["vanilla", "eta"], [0.5, 0.2], color="tab:red")
ax.set_title(NAME + " headline")
plt.show()''',
    '''Path(output_dir).mkdir(parents=True, exist_ok=True)
(Path(output_dir) / "started").write_text("yes")
time.sleep(sleep_s)''',
    '''metrics = {"harm/usr/eta": 0.3, "harm/invalid_rate/eta": invalid, "harm/asr/eta": 0.25,
           "harm/usr/vanilla": 0.6, "harm/invalid_rate/vanilla": 0.05}
report.write_metrics(output_dir, metrics, notebook=NAME, profile=profile, stand_in=True,
                     paper_reference={"harm/usr/eta": 0.17})
tracking.log_summary(run, metrics)
tracking.finish_run(run)''',
]


def make_notebook(path: Path) -> Path:
    return write_parameterised_notebook(path, PARAMETERS, BODY, needs=[])


@pytest.fixture
def suite(tmp_path, monkeypatch) -> Path:
    """Two small notebooks that log to W&B offline, draw a figure and report an invalid rate."""
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    for name in ("01_first", "02_second"):
        make_notebook(notebooks / f"{name}.ipynb")
    params = tmp_path / "params"
    for profile in params_dir().glob("*/profile.yaml"):
        (params / profile.parent.name).mkdir(parents=True)
        shutil.copy(profile, params / profile.parent.name / "profile.yaml")
    (params / "tiny" / "02_second.yaml").write_text("invalid: 0.1\n")
    monkeypatch.setenv("ETA_PARAMS", str(params))
    monkeypatch.setenv("ETA_NOTEBOOKS", str(notebooks))
    for var in ("ETA_RUN_ID", "WANDB_API_KEY", "WANDB_DIR", "ETA_DATA_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    return tmp_path


def offline_runs(run_dir: Path) -> list[Path]:
    return sorted(run_dir.glob("*/wandb/offline-run-*")) + sorted(run_dir.glob("wandb/offline-run-*"))


# ------------------------------------------------------------------ 4: invalid-verdict warnings


def test_invalid_flags_mark_the_judged_metrics_of_that_method():
    entry = {"metrics": {"harm/usr/eta": 0.3, "harm/invalid_rate/eta": 0.9, "harm/asr/eta": 0.25,
                         "harm/usr/vanilla": 0.6, "harm/invalid_rate/vanilla": 0.05}}
    flags = report.invalid_flags(entry, threshold=0.2)
    assert set(flags) == {"harm/usr/eta", "harm/invalid_rate/eta"}
    assert "90% of the judge's verdicts were invalid" in flags["harm/usr/eta"]
    assert report.invalid_flags(entry, threshold=0.95) == {}


def test_reproduce_warns_per_metric_and_the_index_shows_it(suite, capsys):
    results = suite / "results"
    code = rp.main(["reproduce", "--profile", "tiny", "--notebooks", "01", "--results-root", str(results),
                    "--run-id", "r1", "--max-invalid-rate", "0.5"])
    assert code == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "01_first: harm/invalid_rate/eta = 0.90 is above 0.5" in warnings[0]
    page = (results / "r1" / "index.html").read_text()
    row = re.search(r"<tr><td>harm/usr/eta</td>.*?</tr>", page).group(0)
    assert "&#9888;" in row and "90% of the judge" in row
    assert "&#9888;" not in re.search(r"<tr><td>harm/asr/eta</td>.*?</tr>", page).group(0)
    assert json.loads((results / "r1" / report.STATUS_FILE).read_text())["state"] == "complete"


# ------------------------------------------------------ 10: killed runs and reruns into a run id


def test_a_killed_run_is_marked_incomplete_and_a_rerun_replaces_it(suite):
    results = suite / "results"
    run_dir = results / "r2"
    (suite / "params" / "tiny" / "02_second.yaml").write_text("invalid: 0.1\nsleep_s: 600\n")
    proc = subprocess.Popen([sys.executable, "-m", "eta", "reproduce", "--profile", "tiny", "--results-root",
                             str(results), "--run-id", "r2"], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    try:
        deadline = time.monotonic() + 240
        while not (run_dir / "02_second" / "started").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    status = report.read_status(run_dir)
    assert status["state"] == "running" and not report.is_complete(status)
    assert [n["name"] for n in status["notebooks"]] == ["01_first"]
    stale = offline_runs(run_dir)
    assert len(stale) == 2  # the finished run of 01 and the killed one of 02

    frame = report.compare_runs(["r2"], results_root=results)
    assert frame.attrs["runs"]["r2"] == {"path": str(run_dir), "profiles": ["tiny"], "stand_in": True,
                                         "complete": False}
    out = subprocess.run([sys.executable, "-m", "eta", "compare", "r2", "--results-root", str(results)],
                         capture_output=True, text=True, timeout=120)
    assert "r2: profile tiny" in out.stdout and "INCOMPLETE" in out.stdout
    page = report.build_index(run_dir).read_text()
    assert "did NOT finish" in page and "incomplete" in page

    (suite / "params" / "tiny" / "02_second.yaml").write_text("invalid: 0.1\n")
    assert rp.main(["reproduce", "--profile", "tiny", "--results-root", str(results), "--run-id", "r2"]) == 0
    fresh = offline_runs(run_dir)
    assert len(fresh) == 2 and not set(fresh) & set(stale)  # one W&B run per notebook, none stale
    assert [p.parent.parent.name for p in fresh] == ["01_first", "02_second"]
    status = report.read_status(run_dir)
    assert status["state"] == "complete" and [n["name"] for n in status["notebooks"]] == ["01_first", "02_second"]
    assert "did NOT finish" not in (run_dir / "index.html").read_text()


# --------------------------------------------------------------------- 13: the index page


def png_bytes(color: str = "tab:blue") -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1], [0, 1], color=color)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def fake_run(root: Path, names=("01_roc", "02_harm", "03_winties")) -> Path:
    """A run folder as reproduce leaves it: executed notebooks with figures, metrics, status."""
    root.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        cells = [new_code_cell("x = 1"), new_code_cell(f"fig = plot_{i}()  # headline", outputs=[new_output(
            "display_data", data={"image/png": base64.b64encode(png_bytes()).decode(), "text/plain": "<Figure>"})])]
        nbformat.write(new_notebook(cells=cells), str(root / f"{name}.ipynb"))
        report.write_metrics(root / name, {"bench/usr/eta": 0.1 * (i + 1), "bench/invalid_rate/eta": 0.5},
                             notebook=name, profile="tiny", stand_in=True, paper_reference={"bench/usr/eta": 0.17})
    status = {"run_id": root.name, "profile": "tiny", "stand_in": True, "state": "complete", "elapsed_s": 3.0,
              "notebooks": [{"name": n, "status": "ok", "elapsed_s": 1.0} for n in names]}
    (root / report.STATUS_FILE).write_text(json.dumps(status))
    return report.build_index(root)


def test_index_embeds_each_headline_figure_beside_paper_numbers(tmp_path):
    page = fake_run(tmp_path / "run").read_text()
    images = re.findall(r"<img [^>]*src='data:image/png;base64,([^']+)'", page)
    assert len(images) == 3
    assert all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    assert "STAND-IN" in page and "<td>0.17</td>" in page
    assert page.count("class='warn'") >= 3
    assert "src='http" not in page and "href='http" not in page  # readable offline, nothing fetched


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")
def test_index_loads_in_headless_chromium_with_every_figure(tmp_path):
    index = fake_run(tmp_path / "run")
    profile = tmp_path / "chromium-profile"
    command = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               f"--user-data-dir={profile}", "--virtual-time-budget=10000", "--dump-dom", index.as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    assert "ETA reproduction" in dom and "STAND-IN" in dom
    assert dom.count('data-state="loaded"') == 3 and 'data-state="broken"' not in dom
    shot = tmp_path / "page.png"
    subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    f"--user-data-dir={profile}", "--window-size=1200,2400", f"--screenshot={shot}",
                    index.as_uri()], capture_output=True, timeout=180, check=True)
    from PIL import Image

    colors = Image.open(shot).convert("RGB").getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 50  # text, tables and plots, not a blank page


def test_reproduce_refuses_a_damaged_store_before_any_notebook(suite, capsys):
    import yaml

    damaged = suite / "store.sqlite"
    damaged.write_text("not a database\n")
    path = suite / "params" / "tiny" / "profile.yaml"
    profile = yaml.safe_load(path.read_text())
    profile.setdefault("engine", {})["store"] = str(damaged)
    path.write_text(yaml.safe_dump(profile))
    code = rp.main(["reproduce", "--profile", "tiny", "--results-root", str(suite / "results"), "--run-id", "r3"])
    err = capsys.readouterr().err
    assert code == 2 and f"{damaged}: is not an SQLite results store" in err and "nothing was changed" in err
    assert not (suite / "results" / "r3").exists() and damaged.read_text() == "not a database\n"
