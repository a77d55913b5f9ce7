"""General ability (MME, MMBench, ScienceQA-IMG, TextVQA, VQAv2, MMMU-Pro) and false alignment.

ETA should leave benign inputs alone: its accuracy on these benchmarks should equal vanilla's,
and its evaluators should rarely fire on them (the false alignment rate).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from eta.analysis.grid import Grid, new_figure
from eta.analysis.grid import paper_reference as grid_paper_reference
from eta.cache import build_once, cache_dir

GENERAL_BENCHMARKS = ("mme", "mmbench", "scienceqa-img", "textvqa", "vqav2", "mmmu-pro-standard")
FIXTURES_SCRIPT = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "benchmarks" / "make_fixtures.py"
# Our metric names that the paper reports under another name.
RENAMED = {"vqa_accuracy": "accuracy"}
# The paper's VQAv2 number is on test-dev (answers held by the evaluation server); ours is
# scored where answers are public, so the paper's figure stands beside our ``vqav2`` row.
PAPER_BENCHMARK = {"vqav2-testdev": "vqav2"}


def format_fixtures() -> Path:
    """A tree of every release format with a few placeholder rows (the test fixtures), built
    once in the cache: what the notebook runs on when no real benchmark data is at hand."""
    if not FIXTURES_SCRIPT.is_file():
        raise FileNotFoundError(f"{FIXTURES_SCRIPT} is missing; point data_dir at real benchmark releases")

    def build(directory: Path) -> None:
        spec = importlib.util.spec_from_file_location("eta_make_fixtures", FIXTURES_SCRIPT)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.build(directory)

    version = hashlib.sha256(FIXTURES_SCRIPT.read_bytes()).hexdigest()[:12]
    return build_once(cache_dir() / "benchmarks" / f"format-fixtures-{version}", build)


def use_data_dir(data_dir: str | os.PathLike | None, fixtures: bool, store: str | os.PathLike) -> tuple[str, Path]:
    """Point the benchmark loaders at ``data_dir`` (or at the format fixtures).

    Returns a note saying where the data came from and the store to use: results on fixtures
    go to a store of their own, so they can never stand in for results on the real releases
    (store keys name the benchmark, not the data directory)."""
    store = Path(store)
    if fixtures:
        root = format_fixtures()
        os.environ["ETA_DATA_DIR"] = str(root)
        note = (f"**Data: release-format fixtures** (`{root}`): a few generated rows per benchmark with "
                "solid-colour images. The scores below show that loading, answering and scoring work; "
                "they measure nothing.")
        return note, store.with_name(f"{store.stem}-format-fixtures{store.suffix}")
    if data_dir:
        os.environ["ETA_DATA_DIR"] = str(Path(data_dir).expanduser())
        return f"Data: benchmark releases under `{data_dir}`.", store
    return "Data: benchmark releases from `$ETA_DATA_<NAME>` / `$ETA_DATA_DIR`.", store


SKIPPED_METRICS = ("aligned_rate", "response_tokens", "seconds_per_response", "refusal_rate")


def accuracy_frame(grid: Grid) -> pd.DataFrame:
    """One row per (benchmark, metric, method) of the general-ability scores, with intervals."""
    from eta.metrics.general import GENERAL_BENCHMARKS as SCORED

    rows = []
    for (benchmark, label), ev in grid.evaluations.items():
        if benchmark not in SCORED:
            continue
        for name, metric in ev.metrics.items():
            if name in SKIPPED_METRICS:
                continue
            ci = metric.get("ci") or [None, None]
            rows.append({"benchmark": benchmark, "metric": RENAMED.get(name, name), "method": label,
                         "value": metric.get("value"), "ci_low": ci[0], "ci_high": ci[1], "n": metric.get("n"),
                         "unit": metric.get("unit")})
    return pd.DataFrame(rows)


def accuracy_metrics(frame: pd.DataFrame) -> dict[str, float | None]:
    """``{"<benchmark>/<metric>/<method>": value}`` of the headline scores (no per-subtask rows)."""
    if frame.empty:
        return {}
    headline = frame[~frame.metric.str.contains("/")]
    return {f"{r.benchmark}/{r.metric}/{r.method}": r.value for r in headline.itertuples()}


def accuracy_table(frame: pd.DataFrame) -> pd.DataFrame:
    """benchmark x metric rows, one column per method."""
    if frame.empty:
        return frame
    return frame.pivot_table(index=["benchmark", "metric"], columns="method", values="value", dropna=False)


def paper_reference(methods: Sequence[str]) -> dict[str, float]:
    """The paper's general-ability numbers (LLaVA-1.5-7B), keyed like ``accuracy_metrics``."""
    out = {}
    for key, value in grid_paper_reference("general_ability", methods).items():
        benchmark, rest = key.split("/", 1)
        out[f"{PAPER_BENCHMARK.get(benchmark, benchmark)}/{rest}"] = value
    return out


def false_alignment(grid: Grid, methods: Sequence[str] = ("eta",)) -> pd.DataFrame:
    """On benign inputs: how often each evaluator fires and how often ETA aligns."""
    rows = []
    for (benchmark, label), ev in grid.evaluations.items():
        if label not in methods:
            continue
        aligned = ev.metrics.get("aligned_rate", {})
        ci_low, ci_high = aligned.get("ci") or (None, None)
        rows.append({"benchmark": benchmark, "method": label, "n": len(ev.records),
                     "pre_fires": _share(ev.records, "pre_unsafe"), "post_fires": _share(ev.records, "post_unsafe"),
                     "false_alignment_rate": aligned.get("value"), "ci_low": ci_low, "ci_high": ci_high})
    return pd.DataFrame(rows)


def _share(records: list[dict[str, Any]], flag: str) -> float | None:
    """Share of records whose ``flag`` is true, among those where it was decided (not None)."""
    decided = [bool(r[flag]) for r in records if r.get(flag) is not None]
    return sum(decided) / len(decided) if decided else None


def false_alignment_metrics(frame: pd.DataFrame) -> dict[str, float | None]:
    out = {}
    for _, row in frame.iterrows():
        out[f"{row.benchmark}/false_alignment_rate/{row.method}"] = row.false_alignment_rate
        out[f"{row.benchmark}/pre_evaluator_fires/{row.method}"] = row.pre_fires
        out[f"{row.benchmark}/post_evaluator_fires/{row.method}"] = row.post_fires
    return out


def plot_false_alignment(frame: pd.DataFrame):
    fig, ax = new_figure(max(5, 1.2 * len(frame) + 2), 3.4, frame.empty, "no ETA runs")
    if frame.empty:
        return fig
    long = frame.melt(id_vars=["benchmark", "method"], value_vars=["pre_fires", "post_fires", "false_alignment_rate"],
                      var_name="what", value_name="rate").dropna(subset=["rate"])
    import seaborn as sns

    sns.barplot(data=long, x="benchmark", y="rate", hue="what", ax=ax)
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of benign inputs")
    ax.set_title("Evaluators firing on benign inputs (lower is better)")
    fig.tight_layout()
    return fig


def findings(scores: pd.DataFrame, fa: pd.DataFrame) -> str:
    lines = []
    if not scores.empty and {"vanilla", "eta"} <= set(scores.method):
        table = accuracy_table(scores[~scores.metric.str.contains("/")])
        for (benchmark, metric), row in table.iterrows():
            if pd.isna(row.get("vanilla")) or pd.isna(row.get("eta")):
                lines.append(f"- {benchmark} {metric}: no score.")
                continue
            delta = row["eta"] - row["vanilla"]
            lines.append(f"- {benchmark} {metric}: vanilla {row['vanilla']:.3f}, ETA {row['eta']:.3f} "
                         f"(difference {delta:+.3f}).")
    for _, row in fa.iterrows():
        rate = row.false_alignment_rate
        lines.append(f"- {row.benchmark}: {row.method} aligned {'n/a' if pd.isna(rate) else f'{rate:.0%}'} "
                     f"of {row.n} benign inputs.")
    return "\n".join(lines) or "No results."
