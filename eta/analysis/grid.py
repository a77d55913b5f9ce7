"""Benchmarks x methods through the run engine, as tables and plots for the notebooks.

Every generation comes from (and goes to) the run engine's store, so notebooks never recompute
what another notebook (or an earlier run) already made with the same parameters.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from eta.config import Profile
from eta.engine import Evaluation, Models, evaluate
from eta.store import Store, write_jsonl

log = logging.getLogger(__name__)


@dataclass
class Grid:
    profile: Profile
    evaluations: dict[tuple[str, str], Evaluation] = field(default_factory=dict)  # (benchmark, label) -> run


def run_grid(profile: Profile, benchmarks: Sequence[str], methods: Sequence[str], *, limit: int | None,
             seed: int, store: str | Path | None = None, models: Models | None = None,
             variants: dict[str, tuple[str, dict[str, Any]]] | None = None,
             data_root: str | Path | None = None, judge: bool = True) -> Grid:
    """Evaluate every benchmark with every method (and every named variant: label -> (method,
    ETA overrides)), sharing loaded models and the store."""
    models = models or Models(profile)
    runs = [(m, m, None) for m in methods] + [(label, m, o) for label, (m, o) in (variants or {}).items()]
    grid = Grid(profile)
    with Store(store or profile.engine.store) as db:
        for benchmark in benchmarks:
            for label, method, overrides in runs:
                ev = evaluate(profile, benchmark, method, limit=limit, seed=seed, store=db, overrides=overrides,
                              models=models, data_root=data_root, judge=judge)
                grid.evaluations[(benchmark, label)] = ev
    return grid


def metrics_frame(grid: Grid, names: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per (benchmark, method, metric): value, interval, stderr, n and counts."""
    rows = []
    for (benchmark, label), ev in grid.evaluations.items():
        for name, m in ev.metrics.items():
            if names is not None and name not in names:
                continue
            ci = m.get("ci") or [None, None]
            rows.append({"benchmark": benchmark, "method": label, "metric": name, "value": m.get("value"),
                         "ci_low": ci[0], "ci_high": ci[1], "stderr": m.get("stderr"), "n": m.get("n"),
                         "direction": m.get("direction"), "counts": m.get("counts") or {}})
    return pd.DataFrame(rows)


def wide(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """benchmark x method table of one metric."""
    part = frame[frame.metric == metric]
    return part.pivot(index="benchmark", columns="method", values="value")


def flat_metrics(grid: Grid, names: Sequence[str]) -> dict[str, float | None]:
    """``{"<benchmark>/<metric>/<method>": value}`` (the shape of the paper references' keys)."""
    out = {}
    for (benchmark, label), ev in grid.evaluations.items():
        for name in names:
            if name in ev.metrics:
                out[f"{benchmark}/{name}/{label}"] = ev.metrics[name].get("value")
    return out


def samples_frame(grid: Grid) -> pd.DataFrame:
    """Every sample of every run: inputs, both answers, scores, decision, verdicts."""
    frames = []
    for (benchmark, label), ev in grid.evaluations.items():
        frame = ev.frame().drop(columns=["benchmark", "label"], errors="ignore")
        frame.insert(0, "benchmark", benchmark)
        frame.insert(1, "label", label)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def table_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """The columns a reader wants in a per-sample table (those present)."""
    wanted = ["benchmark", "label", "sample_id", "category", "image", "question", "vanilla", "response",
              "s_pre", "s_post", "aligned", "branch"]
    verdicts = [c for c in frame.columns if c.startswith("verdict/") and c.split("/")[-1] in
                ("label", "attack_success", "refusal")]
    return frame[[c for c in wanted if c in frame.columns] + verdicts]


def category_frame(grid: Grid, verdict_column: str = "verdict/refusal/attack_success") -> pd.DataFrame:
    """Attack success rate per benchmark, category and method."""
    frame = samples_frame(grid)
    if frame.empty or verdict_column not in frame.columns:
        return pd.DataFrame()
    frame = frame.assign(category=frame["category"].fillna("(none)"))
    table = frame.groupby(["benchmark", "category", "label"])[verdict_column].mean().unstack("label")
    return table.rename_axis(columns=None)


def branch_frame(grid: Grid) -> pd.DataFrame:
    """How often each method took each branch (vanilla kept, shallow, deep, ECSO caption...)."""
    frame = samples_frame(grid)
    if frame.empty:
        return frame
    return frame.groupby(["benchmark", "label", "branch"]).size().unstack("branch", fill_value=0)


def export_samples(grid: Grid, output_dir: str | Path, name: str = "samples.jsonl") -> Path:
    """All per-sample records of the grid as JSON lines (for artifacts)."""
    return write_jsonl(Path(output_dir) / name, (r for ev in grid.evaluations.values() for r in ev.records))


def new_figure(width: float, height: float, empty: bool = False, message: str = "no data"):
    """(figure, axes); an empty figure says ``message`` instead of plotting nothing silently."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height))
    if empty:
        ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)
    return fig, ax


def plot_metric(frame: pd.DataFrame, metric: str, title: str):
    """Grouped bars of one metric (benchmark on x, one bar per method) with its 95% interval."""
    part = frame[frame.metric == metric]
    benchmarks = list(dict.fromkeys(part.benchmark))
    methods = list(dict.fromkeys(part.method))
    empty = part.empty or part.value.isna().all()
    fig, ax = new_figure(max(5, 1.6 * len(benchmarks) + 2), 3.6, empty, f"no valid {metric} values")
    if empty:
        return fig
    width = 0.8 / len(methods)
    for j, method in enumerate(methods):
        rows = part[part.method == method].set_index("benchmark").reindex(benchmarks)
        xs = [i + (j - (len(methods) - 1) / 2) * width for i in range(len(benchmarks))]
        values = rows.value.astype(float)
        ax.bar(xs, values.fillna(0), width, label=method)
        low = (values - rows.ci_low.astype(float)).clip(lower=0)
        high = (rows.ci_high.astype(float) - values).clip(lower=0)
        has = values.notna() & rows.ci_low.notna() & rows.ci_high.notna()
        if has.any():
            ax.errorbar([x for x, h in zip(xs, has) if h], values[has], yerr=[low[has], high[has]], fmt="none",
                        ecolor="black", elinewidth=1, capsize=2)
    ax.set_xticks(range(len(benchmarks)), benchmarks)
    ax.set_title(title)
    ax.set_ylabel(metric)
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig


def notice(profile: Profile) -> str:
    """A visible banner for results of stand-in models."""
    if not profile.stand_in:
        return f"Profile `{profile.name}`: {profile.description}."
    return (f"**Stand-in models (profile `{profile.name}`), not the paper's.** {profile.description}. "
            "These numbers show that the pipeline works end to end; they say nothing about the paper's models.")


PAPER_MODEL = "llava-1.5-7b"  # the paper's main backbone: its numbers stand beside stand-in runs too


def paper_model(profile: Profile) -> str:
    """Whose row of the paper stands beside a run: the profile's VLM where Table 1 has it
    (``params/paper-<model>/``), else the main backbone's."""
    from eta import report

    return profile.models.vlm if profile.models.vlm in report.PAPER_REFERENCE["usr"] else PAPER_MODEL


def paper_reference(section: str, labels: Sequence[str], model: str = PAPER_MODEL) -> dict[str, float]:
    """The paper's numbers for these methods, keyed ``benchmark/metric/method`` like ``flat_metrics``."""
    from eta import report

    out: dict[str, float] = {}
    for label in labels:
        try:
            out.update(report.paper_metrics(section, model, label, key_suffix=f"/{label}"))
        except KeyError:
            log.debug("no paper number for %s / %s / %s", section, model, label)
    return out


def paper_beside(reference: dict[str, float], benchmarks: Sequence[str],
                 counterparts: dict[str, str] | None = None) -> dict[str, float]:
    """The paper's numbers re-keyed onto the benchmarks run here.

    ``counterparts`` maps a benchmark of ours to the paper's benchmark whose numbers stand beside
    it (e.g. ``embedded-harm`` -> ``figstep``: both are typographic attacks); a benchmark without
    an entry is matched by name."""
    mapping = {b: (counterparts or {}).get(b, b) for b in benchmarks}
    out = {}
    for key, value in reference.items():
        paper_benchmark, rest = key.split("/", 1)
        for ours, theirs in mapping.items():
            if theirs == paper_benchmark:
                out[f"{ours}/{rest}"] = value
    return out


def side_by_side(ours: dict[str, float | None], paper: dict[str, float]) -> pd.DataFrame:
    """Our numbers beside the paper's, one row per key present in either."""
    keys = sorted(set(ours) | set(paper))
    return pd.DataFrame({"ours": [ours.get(k) for k in keys], "paper": [paper.get(k) for k in keys]},
                        index=pd.Index(keys, name="benchmark/metric/method"))


def plot_heatmap(table: pd.DataFrame, title: str):
    """A rows x methods heatmap of rates in [0, 1] (e.g. ASR per category)."""
    import seaborn as sns

    fig, ax = new_figure(1.4 * max(2, table.shape[1]) + 3, 0.35 * max(3, len(table)) + 1.2, table.empty)
    if table.empty:
        return fig
    labels = ["/".join(map(str, i)) if isinstance(i, tuple) else str(i) for i in table.index]
    sns.heatmap(table.astype(float).set_axis(labels), vmin=0, vmax=1, annot=True, fmt=".2f", cmap="rocket_r",
                cbar_kws={"label": "rate"}, ax=ax)
    ax.set_title(title)
    ax.set_ylabel("")
    fig.tight_layout()
    return fig


def _fmt(value) -> str:
    return "n/a" if value is None or pd.isna(value) else f"{value:.3f}"


def findings(frame: pd.DataFrame, metrics: Sequence[str], baseline: str = "vanilla") -> str:
    """Plain sentences on how each method compares with ``baseline`` (lower-is-better rates)."""
    lines = []
    for metric in metrics:
        table = wide(frame, metric) if not frame.empty else pd.DataFrame()
        if table.empty or baseline not in table.columns:
            lines.append(f"- {metric}: no values.")
            continue
        for benchmark, row in table.iterrows():
            base = row[baseline]
            parts = []
            for method, value in row.items():
                if method == baseline:
                    continue
                if pd.isna(value) or pd.isna(base):
                    parts.append(f"{method} {_fmt(value)}")
                else:
                    verdict = "lower" if value < base else ("equal" if value == base else "higher")
                    parts.append(f"{method} {_fmt(value)} ({verdict})")
            lines.append(f"- **{benchmark}**, {metric}: {baseline} {_fmt(base)}; " + ", ".join(parts) + ".")
    n = frame["n"].dropna()
    if len(n) and n.max() < 30:
        lines.append(f"- At most {int(n.max())} samples per cell: the intervals are wide; differences this size "
                     "may be noise.")
    return "\n".join(lines)
