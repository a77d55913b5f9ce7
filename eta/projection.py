"""Projected GPU-hours of a reproduce plan, from measured per-response costs.

``format_projection`` turns a plan (notebooks x benchmarks x methods, at the paper's sample counts
unless a ``limit`` says otherwise) into hours per notebook and in total. The costs come from the
newest GPU result of the speed benchmarks (``speed/results/*.json``): ``speed/throughput.py``
(seconds per sample, vanilla and ETA batched) or ``speed/decoding.py`` (tokens per second of one
response). The assumptions, printed with the figures:

* an answer's length (``ANSWER_TOKENS``) and the share of inputs ETA aligns (``ALIGNED_SHARE``)
  depend on the benchmark's kind; costs scale linearly with answer tokens;
* ECSO costs its vanilla answer plus, for the share it finds unsafe, a caption and a second
  answer (its 8-token self-check is neglected);
* per-response rates of one input at a time (``speed/decoding.py``) give an upper bound: batching
  inputs only lowers it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

# Assumed mean answer tokens and aligned share per benchmark kind (the paper's vanilla USR is
# 20-60 % on the harmful sets; ETA aligns almost nothing on benign and general-ability sets).
ANSWER_TOKENS = {"harmful": 256, "helpful": 256, "general": 16, "clip-study": 0}
ALIGNED_SHARE = {"harmful": 0.5, "helpful": 0.1, "general": 0.02, "clip-study": 0.0}


@dataclass
class Costs:
    """Seconds per answer token (vanilla; ETA's aligning phase) and the evaluation's relative cost."""

    vanilla_s_per_token: float
    aligned_s_per_token: float
    eval_overhead: float  # evaluation seconds / vanilla seconds
    source: str  # the file and what it measured

    def seconds(self, method_kind: str, kind: str) -> float:
        tokens, share = ANSWER_TOKENS.get(kind, 256), ALIGNED_SHARE.get(kind, 0.5)
        vanilla = tokens * self.vanilla_s_per_token
        if method_kind == "eta":
            return vanilla * (1 + self.eval_overhead) + share * tokens * self.aligned_s_per_token
        if method_kind == "ecso":
            return vanilla * (1 + 2 * share)
        return vanilla


def speed_results_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "speed" / "results"


def costs_from(path: Path) -> Costs | None:
    """Per-token costs from one speed-benchmark JSON (None for CPU results or another format)."""
    result = json.loads(path.read_text())
    setup = result.get("setup", {})
    if setup.get("device_name", "cpu") == "cpu":
        return None
    where = f"{path.name}: {setup.get('device_name')}, {setup.get('vlm')}, {setup.get('dtype')}"
    if "variants" in result:  # speed/throughput.py
        v, e = result["variants"]["vanilla"], result["variants"]["eta_batched"]
        tokens, share = setup["tokens"], max(result.get("aligned_share", 1.0), 1e-9)
        vanilla = v["seconds_per_sample"] / tokens
        aligned = (e["seconds_per_sample"] - v["seconds_per_sample"]) / (share * tokens)
        return Costs(vanilla, max(aligned, 0.0), 0.0, f"{where}, {setup['inputs']} inputs batched")
    if "tokens_per_s_vanilla" in result:  # speed/decoding.py
        return Costs(1 / result["tokens_per_s_vanilla"], 1 / result["tokens_per_s_eta"],
                     result.get("eval_overhead", 0.0), f"{where}, one response at a time (an upper bound)")
    return None


def load_costs(results_dir: Path | None = None) -> Costs | None:
    """The newest GPU costs under the speed results (batched throughput preferred)."""
    found = []
    for path in sorted((results_dir or speed_results_dir()).glob("*.json")):
        costs = costs_from(path)
        if costs is not None:
            found.append((path.name.startswith("throughput"), path.stat().st_mtime, costs))
    return max(found, key=lambda x: x[:2])[2] if found else None


def notebook_runs(plan) -> list[tuple[str, str, int]]:
    """(benchmark, method kind, samples) of every generation run a notebook makes."""
    from eta.benchmarks import get_info
    from eta.methods import get_method

    limit = plan.parameters.get("limit")
    runs = []
    methods = [get_method(m).kind for m in plan.methods if m]
    if not methods and "n_values" in plan.parameters:  # the ablation sweeps: ETA variants
        p = plan.parameters
        count = (len(p.get("n_values") or []) + len(p.get("tau_pre_values") or []) + len(p.get("tau_post_values") or [])
                 + (4 if p.get("components") else 0) + (3 if p.get("rules") else 0))
        methods = ["vanilla"] + ["eta"] * count
    for name in plan.benchmarks:
        info = get_info(name)
        size = info.sample_size or info.paper_size or 0
        samples = min(size, limit) if limit else size
        if info.kind == "clip-study":
            continue  # CLIP embeddings only: seconds, not hours
        runs += [(name, kind, samples) for kind in methods]
    return runs


def project(plans: Sequence[Any], costs: Costs) -> list[tuple[str, float, int]]:
    """(notebook, GPU-hours, samples generated) per notebook."""
    from eta.benchmarks import get_info

    out = []
    for plan in plans:
        runs = notebook_runs(plan)
        seconds = sum(samples * costs.seconds(kind, get_info(name).kind) for name, kind, samples in runs)
        out.append((plan.name, seconds / 3600, sum(s for _, _, s in runs)))
    return out


def format_projection(profile, plans: Sequence[Any], results_dir: Path | None = None) -> str:
    if profile.stand_in:
        return "GPU-hours: projected for the paper's models only (this profile runs stand-ins)"
    costs = load_costs(results_dir)
    if costs is None:
        return ("GPU-hours: no GPU result under speed/results/ to project from "
                "(run speed/throughput.py --model random-7b --device cuda --json there)")
    rows = project(plans, costs)
    lines = [f"Projected GPU-hours (from {costs.source}):"]
    lines += [f"  {name:<28}{hours:>8.1f} h   {samples} generated answers" for name, hours, samples in rows]
    lines.append(f"  {'total':<28}{sum(h for _, h, _ in rows):>8.1f} h")
    lines.append("  assuming mean answer tokens " + ", ".join(f"{k} {v}" for k, v in ANSWER_TOKENS.items() if v)
                 + "; aligned share " + ", ".join(f"{k} {v:.0%}" for k, v in ALIGNED_SHARE.items() if v)
                 + "; ECSO = vanilla x (1 + 2 x unsafe share); judges and data loading not counted")
    return "\n".join(lines)
