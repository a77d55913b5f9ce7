"""Efficiency (the paper's Table 4): seconds per response, split into generation, evaluation and
aligning, tokens per second and peak memory."""

from __future__ import annotations

import resource
import sys

import pandas as pd
import torch

from eta.analysis import grid
from eta.analysis.grid import Grid, new_figure

PHASES = ("generate", "evaluate", "align")


def reset_peak_memory(device: torch.device | str) -> None:
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device | str) -> tuple[float, str]:
    """Peak accelerator memory since the last reset, or on CPU the process's peak resident size."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "peak CUDA memory allocated"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 2**10), "peak resident memory of the process"


def timing_table(grid: Grid) -> pd.DataFrame:
    """Per benchmark and method: mean seconds per response and per phase, tokens per second."""
    rows = []
    for (benchmark, label), ev in grid.evaluations.items():
        records = ev.records
        if not records:
            continue
        total = sum(r.get("timings", {}).get("total", 0.0) for r in records)
        tokens = sum(r.get("response_tokens", 0) for r in records)
        row = {"benchmark": benchmark, "method": label, "n": len(records),
               "seconds_per_response": total / len(records),
               "tokens_per_s": tokens / total if total > 0 else None,
               "aligned_rate": sum(bool(r.get("aligned")) for r in records) / len(records)}
        for phase in PHASES:
            row[phase] = sum(r.get("timings", {}).get(phase, 0.0) for r in records) / len(records)
        rows.append(row)
    return pd.DataFrame(rows)


def headline_metrics(table: pd.DataFrame, peak_mb: float) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for _, row in table.iterrows():
        out[f"{row.benchmark}/seconds_per_response/{row.method}"] = row.seconds_per_response
        out[f"{row.benchmark}/tokens_per_s/{row.method}"] = row.tokens_per_s
    out["process/peak_memory_mb"] = peak_mb
    return out


def paper_reference(benchmarks: dict[str, str], methods: list[str]) -> dict[str, float]:
    """Table 4 (seconds per response, LLaVA-1.5-7B, one A6000), keyed like ``headline_metrics``.

    ``benchmarks`` maps the paper's benchmark (``mmbench``, ``scienceqa-img``) to the one run here.
    """
    reference = grid.paper_reference("efficiency", methods)
    beside = grid.paper_beside(reference, list(benchmarks.values()), {ours: theirs for theirs, ours in benchmarks.items()})
    return {key: value for key, value in beside.items() if key.split("/")[1] == "seconds_per_response"}


def plot_timings(table: pd.DataFrame):
    """Stacked bars: where the seconds of one response go, per benchmark and method."""
    fig, ax = new_figure(max(5, 1.3 * len(table) + 2), 4.2, table.empty, "no runs")
    if table.empty:
        return fig
    names = [f"{b}\n{m}" for b, m in zip(table.benchmark, table.method)]
    bottom = [0.0] * len(table)
    for phase, colour in zip(PHASES, ("#457b9d", "#e9c46a", "#e76f51")):
        values = table[phase].fillna(0).tolist()
        ax.bar(names, values, bottom=bottom, label=phase, color=colour)
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.set_ylabel("seconds per response")
    ax.tick_params(axis="x", labelrotation=30)
    ax.legend(frameon=False)
    ax.set_title("Where the time goes (lower is better)")
    fig.tight_layout()
    return fig


def findings(table: pd.DataFrame) -> str:
    lines = []
    for benchmark, part in table.groupby("benchmark", sort=False):
        base = part[part.method == "vanilla"].seconds_per_response
        base = float(base.iloc[0]) if len(base) else None
        cells = []
        for _, row in part.iterrows():
            ratio = f" ({row.seconds_per_response / base:.1f}x vanilla)" if base and row.method != "vanilla" else ""
            cells.append(f"{row.method} {row.seconds_per_response:.2f} s{ratio}, aligned {row.aligned_rate:.0%}")
        lines.append(f"- **{benchmark}**: " + "; ".join(cells) + ".")
    return "\n".join(lines) or "No runs."
