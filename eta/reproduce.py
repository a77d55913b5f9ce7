"""Run the analysis notebooks headlessly: ``python -m eta reproduce --profile local``.

For a profile, every ``notebooks/NN_*.ipynb`` (or a selection by number) is executed with
papermill into ``results/<run-id>/<notebook>.ipynb`` with the parameters of
``params/<profile>/<notebook>.yaml`` (strict: a key the notebook's ``parameters`` cell does not
define is an error; ``eta.notebook_params``), exported to HTML, and expected to write ``results/<run-id>/<notebook>/metrics.json``.
A failed notebook is recorded and the others still run; the index page is built in any case.
The run folder's ``reproduce.json`` says ``"state": "running"`` until the last notebook is done,
so a folder left by a killed run reads as incomplete in ``compare`` and on the index page.
Rerunning a notebook into an existing run id first removes that notebook's earlier outputs and
its offline W&B run (each notebook's W&B files live in its own output folder). A metric whose
judge gave invalid verdicts for more than ``--max-invalid-rate`` of the samples is reported as a
warning line, and marked on the index page.

Before anything runs, the preflight (``eta.preflight``) lists every checkpoint, data directory or
credential the selected notebooks need and that is missing, with where to get it, and stops; a
damaged or unwritable results store stops the run too. A notebook says which models it needs in
its metadata (``metadata.eta.needs``: dotted profile keys such as ``["models.clip"]``; default:
every model and judge of the profile). The benchmarks it reads are its ``benchmark`` /
``benchmarks`` parameters.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from eta.config import ConfigError, Profile, environment, load_profile, profile_value
from eta.notebook_params import SET_BY_REPRODUCE, load_params
from eta.preflight import PreflightError, check_store_of, format_missing, preflight

log = logging.getLogger(__name__)

NOTEBOOK_PATTERN = re.compile(r"^(\d{2})_[A-Za-z0-9_-]+\.ipynb$")
DEFAULT_NEEDS = ("models.vlm", "models.reward_model", "models.clip", "judges.safety", "judges.helpfulness")
SAMPLE_KEYS = ("limit", "num_samples", "samples", "sample_size", "per_class")


class ReproduceFailed(RuntimeError):
    """At least one notebook failed; the index was still written."""

    def __init__(self, results_dir: Path, failed: list[str]):
        self.results_dir = results_dir
        self.failed = failed
        super().__init__(f"{len(failed)} notebook(s) failed: {', '.join(failed)} (see {results_dir / 'index.html'})")


# --------------------------------------------------------------------------------- notebooks


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def default_notebooks_dir() -> Path:
    """``$ETA_NOTEBOOKS`` or the ``notebooks/`` folder beside the package."""
    env = os.environ.get("ETA_NOTEBOOKS")
    return Path(env) if env else repo_root() / "notebooks"


def discover(notebooks_dir: str | os.PathLike | None = None) -> list[Path]:
    """Every ``NN_name.ipynb`` of the folder, in number order."""
    root = Path(notebooks_dir) if notebooks_dir else default_notebooks_dir()
    return sorted(p for p in root.glob("*.ipynb") if NOTEBOOK_PATTERN.match(p.name))


def select(notebooks: Sequence[Path], selection: Sequence[str] | None) -> list[Path]:
    """Notebooks chosen by number (``"02"``, ``"2"``) or name (``"02_harmlessness"``); None: all."""
    if not selection:
        return list(notebooks)
    chosen = []
    for wanted in selection:
        wanted = wanted.strip().removesuffix(".ipynb")
        matches = [p for p in notebooks if p.stem == wanted
                   or (wanted.isdigit() and int(p.name[:2]) == int(wanted))]
        if not matches:
            known = ", ".join(p.stem for p in notebooks) or "none"
            raise ConfigError(f"no notebook {wanted!r}; known notebooks: {known}")
        chosen.extend(m for m in matches if m not in chosen)
    return sorted(chosen)


def parse_selection(text: str | None) -> list[str] | None:
    """``"02,05"`` or ``"02 05"`` -> ``["02", "05"]``."""
    if not text:
        return None
    return [part for part in re.split(r"[,\s]+", text) if part]


def notebook_needs(path: Path) -> list[str]:
    """Dotted profile keys of the models a notebook loads (``metadata.eta.needs``)."""
    import nbformat

    meta = nbformat.read(str(path), as_version=4).metadata.get("eta", {})
    needs = meta.get("needs")
    return list(DEFAULT_NEEDS if needs is None else needs)


# --------------------------------------------------------------------------------------- plan


@dataclass
class NotebookPlan:
    name: str
    path: Path
    parameters: dict[str, Any]
    needs: list[str]
    models: dict[str, str] = field(default_factory=dict)

    @property
    def benchmarks(self) -> list[str]:
        found = []
        for key in ("benchmark", "benchmarks", "harm_benchmark", "help_benchmark", "benign_benchmarks"):
            value = self.parameters.get(key)
            found.extend([value] if isinstance(value, str) else list(value or []))
        return list(dict.fromkeys(found))

    @property
    def methods(self) -> list[str]:
        found = []
        for key in ("method", "methods", "candidate", "baselines"):
            value = self.parameters.get(key)
            found.extend([value] if isinstance(value, str) else list(value or []))
        return list(dict.fromkeys(found))

    @property
    def samples(self) -> dict[str, Any]:
        return {k: v for k, v in self.parameters.items() if any(s in k for s in SAMPLE_KEYS)}


def make_plan(profile: Profile, notebooks: Sequence[Path], params_root: str | os.PathLike | None = None) -> list[NotebookPlan]:
    plans = []
    for path in notebooks:
        needs = notebook_needs(path)
        models = {need: str(profile_value(profile, need)) for need in needs if profile_value(profile, need) is not None}
        plans.append(NotebookPlan(path.stem, path, load_params(profile.name, path, params_root), needs, models))
    return plans


def format_plan(profile: Profile, plans: Sequence[NotebookPlan], run_dir: Path) -> str:
    lines = [f"Plan: profile {profile.name!r} ({profile.description or 'no description'})"
             + ("  [STAND-IN models, not the paper's]" if profile.stand_in else ""),
             f"  results -> {run_dir}"]
    for plan in plans:
        lines.append(f"  {plan.name}")
        lines.append(f"    benchmarks: {', '.join(plan.benchmarks) or '-'}")
        lines.append(f"    methods:    {', '.join(plan.methods) or '-'}")
        samples = ", ".join(f"{k}={v}" for k, v in plan.samples.items()) or "-"
        lines.append(f"    samples:    {samples}")
        lines.append(f"    models:     {', '.join(f'{k}={v}' for k, v in plan.models.items()) or '-'}")
        shown = {k: v for k, v in plan.parameters.items() if k not in SET_BY_REPRODUCE}
        lines.append(f"    parameters: {json.dumps(shown, default=str)}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- execution


@dataclass
class NotebookResult:
    name: str
    status: str  # ok | failed
    elapsed_s: float
    error: str | None = None
    executed: str | None = None
    html: str | None = None
    metrics: str | None = None



def export_html(notebook: Path) -> Path:
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_filename(str(notebook))
    out = notebook.with_suffix(".html")
    out.write_text(body, encoding="utf-8")
    return out


def execution_error(exc: BaseException) -> str:
    ename, evalue = getattr(exc, "ename", None), getattr(exc, "evalue", None)
    if ename:
        cell = getattr(exc, "exec_count", None)
        return f"{ename}: {evalue}" + (f" (cell [{cell}])" if cell is not None else "")
    return f"{type(exc).__name__}: {exc}"


def execute(plan: NotebookPlan, run_dir: Path, profile: str, run_id: str, position: str = "") -> NotebookResult:
    """Execute one notebook into ``run_dir`` and export it; failures are returned, not raised."""
    import papermill

    output_dir = (run_dir / plan.name).resolve()
    executed = run_dir / f"{plan.name}.ipynb"
    parameters = {**plan.parameters, "profile": profile, "output_dir": str(output_dir), "wandb_group": run_id}
    log.info("%s %s: running (%s)", position, plan.name, plan.path)
    start = time.perf_counter()
    status, error = "ok", None
    try:
        with environment(ETA_EXECUTED_NOTEBOOK=str(executed.resolve())):
            papermill.execute_notebook(str(plan.path), str(executed), parameters=parameters,
                                       progress_bar={"desc": plan.name}, cwd=str(plan.path.parent),
                                       stderr_file=sys.stderr)  # the cells' own progress bars, live
    except Exception as exc:  # papermill raises many kinds; the failure is recorded and the run goes on
        status, error = "failed", execution_error(exc)
    metrics = output_dir / "metrics.json"
    if status == "ok" and not metrics.is_file():
        status, error = "failed", f"the notebook wrote no {metrics}"
    html = None
    if executed.is_file():
        try:
            html = str(export_html(executed))
        except Exception as exc:  # an export failure must not hide the notebook's own result
            log.warning("%s: HTML export failed: %s", plan.name, exc)
    elapsed = time.perf_counter() - start
    log_line = log.info if status == "ok" else log.error
    log_line("%s %s: %s in %.1f s%s", position, plan.name, status, elapsed, f" ({error})" if error else "")
    return NotebookResult(plan.name, status, round(elapsed, 2), error,
                          str(executed) if executed.is_file() else None, html,
                          str(metrics) if metrics.is_file() else None)


def write_status(run_dir: Path, payload: dict[str, Any]) -> None:
    """The run's status file, replaced atomically (a kill never leaves half a file)."""
    from eta.report import STATUS_FILE

    tmp = run_dir / f".{STATUS_FILE}.tmp"
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(run_dir / STATUS_FILE)


def clear_outputs(run_dir: Path, name: str) -> list[Path]:
    """Remove what an earlier run of notebook ``name`` left in ``run_dir`` (its output folder with
    its metrics and offline W&B run, the executed notebook and its HTML); return what was removed."""
    import shutil

    removed = []
    for path in (run_dir / name, run_dir / f"{name}.ipynb", run_dir / f"{name}.html"):
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        removed.append(path)
    return removed


def new_run_id(profile: str) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{profile}"


def reproduce(profile: str, notebooks: list[str] | None = None, *, results_root: str | os.PathLike = "results",
              run_id: str | None = None, dry_run: bool = False, notebooks_dir: str | os.PathLike | None = None,
              params_root: str | os.PathLike | None = None, max_invalid_rate: float = 0.2) -> Path:
    """Run the selected notebooks for ``profile``; return ``results/<run-id>``.

    Raises ``PreflightError`` (nothing run) when something needed is missing, and
    ``ReproduceFailed`` after writing the index when any notebook failed.
    """
    started = time.perf_counter()
    cfg = load_profile(profile)
    selected = select(discover(notebooks_dir), notebooks)
    if not selected:
        raise ConfigError(f"no notebooks found in {notebooks_dir or default_notebooks_dir()}")
    run_id = run_id or os.environ.get("ETA_RUN_ID") or new_run_id(cfg.name)
    run_dir = Path(results_root) / run_id
    plans = make_plan(cfg, selected, params_root)
    missing = preflight(cfg, plans)
    if dry_run:
        from eta.projection import format_projection

        text = format_plan(cfg, plans, run_dir) + "\n" + format_projection(cfg, plans)
        text += "\n" + (format_missing(missing, cfg.name) if missing else "preflight: everything needed is here")
        print(text)
        return run_dir
    if missing:
        raise PreflightError(missing, cfg.name)
    if not 0.0 <= max_invalid_rate <= 1.0:
        raise ConfigError(f"max_invalid_rate must lie in [0, 1], got {max_invalid_rate}")
    check_store_of(cfg)
    return run_plans(cfg, plans, run_dir, run_id, started, max_invalid_rate=max_invalid_rate)


def run_plans(cfg: Profile, plans: Sequence[NotebookPlan], run_dir: Path, run_id: str, started: float,
              max_invalid_rate: float = 0.2) -> Path:
    from eta.report import build_index, invalid_rate_warnings, read_status

    run_dir.mkdir(parents=True, exist_ok=True)
    selected = {plan.name for plan in plans}
    earlier = [n for n in read_status(run_dir).get("notebooks", []) if n.get("name") not in selected]
    for plan in plans:
        for path in clear_outputs(run_dir, plan.name):
            log.info("%s: removed the earlier run's %s", plan.name, path)
    status: dict[str, Any] = {"run_id": run_id, "profile": cfg.name, "stand_in": cfg.stand_in, "state": "running",
                              "pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                              "max_invalid_rate": max_invalid_rate, "notebooks": list(earlier), "elapsed_s": None}
    write_status(run_dir, status)  # a kill from here on leaves the folder marked as running
    own_wandb = not os.environ.get("WANDB_DIR")
    try:
        with environment(ETA_RUN_ID=run_id):
            for number, plan in enumerate(plans, 1):
                wandb_dir = str((run_dir / plan.name).resolve()) if own_wandb else os.environ["WANDB_DIR"]
                with environment(WANDB_DIR=wandb_dir):
                    result = execute(plan, run_dir, cfg.name, run_id, position=f"[{number}/{len(plans)}]")
                status["notebooks"].append(asdict(result))
                write_status(run_dir, status)
        status["state"] = "complete"
    finally:  # interrupted (Ctrl-C): the state stays "running", the index shows what there is
        status["elapsed_s"] = round(time.perf_counter() - started, 2)
        write_status(run_dir, status)
        index = build_index(run_dir)
    failed = [n["name"] for n in status["notebooks"] if n["status"] != "ok"]
    print(f"reproduce: {len(status['notebooks'])} notebook(s), {len(failed)} failed, "
          f"total {status['elapsed_s']:.1f} s -> {index}")
    for line in invalid_rate_warnings(run_dir, max_invalid_rate):
        print(f"warning: {line}", file=sys.stderr)
    if failed:
        raise ReproduceFailed(run_dir, failed)
    return run_dir


# ------------------------------------------------------------------------------------ command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eta", description="run the notebooks, compare runs")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("reproduce", help="run the analysis notebooks with papermill into results/<run-id>/")
    rep.add_argument("--profile", default="local", help="params profile (tiny, local, paper)")
    rep.add_argument("--notebooks", default=None, help="numbers or names, e.g. 02,05 (default: all)")
    rep.add_argument("--run-id", default=None, help="results/<run-id>/ (default: time stamp and profile)")
    rep.add_argument("--results-root", default="results")
    rep.add_argument("--dry-run", action="store_true", help="print the plan and the preflight; run nothing")
    rep.add_argument("--max-invalid-rate", type=float, default=0.2,
                     help="warn about a metric whose judge gave more invalid verdicts than this fraction")
    cmp_ = sub.add_parser("compare", help="headline metrics of local runs side by side")
    cmp_.add_argument("runs", nargs="+", help="run ids under --results-root, or run directories")
    cmp_.add_argument("--results-root", default="results")
    cmp_.add_argument("--csv", default=None, help="also write the table as CSV")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``reproduce ...`` or ``compare ...`` (argv without the program name)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0].startswith("-") and not {"-h", "--help"} & set(argv[:1]):
        argv = ["reproduce", *argv]
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    try:
        if args.command == "compare":
            return cmd_compare(args)
        reproduce(args.profile, parse_selection(args.notebooks), results_root=args.results_root,
                  run_id=args.run_id, dry_run=args.dry_run, max_invalid_rate=args.max_invalid_rate)
    except PreflightError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except ReproduceFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (ConfigError, OSError, LookupError) as exc:
        print(f"error: {exc.args[0] if isinstance(exc, KeyError) and exc.args else exc}", file=sys.stderr)
        return 2
    return 0


def cmd_compare(args) -> int:
    import pandas as pd

    from eta.report import compare_runs

    frame = compare_runs(args.runs, results_root=args.results_root)
    for name, info in frame.attrs.get("runs", {}).items():
        flag = "  [stand-in models]" if info["stand_in"] else ""
        if not info.get("complete", True):
            flag += "  [INCOMPLETE: the run stopped before it finished, or is still running]"
        print(f"{name}: profile {', '.join(info['profiles']) or '?'}{flag}")
    with pd.option_context("display.max_rows", None, "display.width", 200):
        print(frame.to_string() if not frame.empty else "(no metrics.json in these runs)")
    if args.csv:
        frame.to_csv(args.csv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
