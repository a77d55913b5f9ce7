"""Ablations: the number of candidates N, the thresholds, ETA's components (the paper's Table 5)
and the evaluator decision rule, each as a harmlessness vs helpfulness trade-off."""

from __future__ import annotations

from typing import Any, Sequence

import pandas as pd

from eta.analysis.grid import Grid

# Table 5 rows, in the paper's order: (our method, the paper's row name)
COMPONENTS = (("vanilla", "none"), ("eta-deep-only", "deep"), ("eta-shallow-only", "shallow"),
              ("eta-shallow-rm", "shallow+rm_guide"), ("eta", "eta"))
RULES = ("eta-rule-pre", "eta-rule-post", "eta-rule-either")  # `eta` itself is the rule "both"


def sweep_variants(n_values: Sequence[int], tau_pre_values: Sequence[float],
                   tau_post_values: Sequence[float]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Labelled ETA variants (label -> ("eta", overrides)) for the N and threshold sweeps."""
    variants: dict[str, tuple[str, dict[str, Any]]] = {}
    for n in n_values:
        variants[f"eta-N={int(n)}"] = ("eta", {"num_candidates": int(n)})
    for tau in tau_pre_values:
        variants[f"eta-tau_pre={float(tau):g}"] = ("eta", {"tau_pre": float(tau)})
    for tau in tau_post_values:
        variants[f"eta-tau_post={float(tau):g}"] = ("eta", {"tau_post": float(tau)})
    return variants


def sweep_of(label: str) -> tuple[str, Any]:
    """Which study a label belongs to, and its value along that study's axis."""
    if label.startswith("eta-N="):
        return "N", int(label.split("=", 1)[1])
    if label.startswith("eta-tau_pre="):
        return "tau_pre", float(label.split("=", 1)[1])
    if label.startswith("eta-tau_post="):
        return "tau_post", float(label.split("=", 1)[1])
    if label in RULES or label == "eta":
        return "rule", {"eta": "both"}.get(label, label.removeprefix("eta-rule-"))
    return "component", dict(COMPONENTS).get(label, label)


def _value(grid: Grid, benchmark: str, label: str, metric: str) -> float | None:
    ev = grid.evaluations.get((benchmark, label))
    if ev is None or metric not in ev.metrics:
        return None
    return ev.metrics[metric].get("value")


def tradeoff(grid: Grid, harm: str, help_: str, labels: Sequence[str],
             helpful_scores: pd.DataFrame | None = None, base: dict[str, Any] | None = None) -> pd.DataFrame:
    """One row per label: harmlessness on ``harm`` (USR when judged, ASR) against helpfulness on
    ``help_`` (1 - refusal rate; and the mean 1-10 helpful score when scores are given).

    ``base`` gives the profile's own value of each swept knob (``{"N": 5, "tau_post": 0.06}``):
    the ``eta`` run then also stands in each sweep at that value."""
    rows = []
    for label in labels:
        study, value = sweep_of(label)
        refusal = _value(grid, help_, label, "refusal_rate")
        row = {"label": label, "study": study, "value": value,
               "usr": _value(grid, harm, label, "usr"), "invalid_rate": _value(grid, harm, label, "invalid_rate"),
               "asr": _value(grid, harm, label, "asr"), "aligned_on_harm": _value(grid, harm, label, "aligned_rate"),
               "helpfulness": None if refusal is None else 1 - refusal,
               "aligned_on_help": _value(grid, help_, label, "aligned_rate")}
        if helpful_scores is not None and not helpful_scores.empty:
            part = helpful_scores[helpful_scores["method"] == label]["score"].dropna()
            row["helpful_score"] = float(part.mean()) if len(part) else None
        rows.append(row)
    swept = {r["study"] for r in rows}
    plain = next((r for r in rows if r["label"] == "eta"), None)
    for study, value in (base or {}).items():
        if plain is not None and study in swept:
            rows.append({**plain, "study": study, "value": value})
    return pd.DataFrame(rows)


def paper_reference(harm: str, labels: Sequence[str] = tuple(m for m, _ in COMPONENTS)) -> dict[str, float]:
    """The paper's Table 5 (SPA-VL Harm, LLaVA-1.5-7B) keyed ``<harm>/<metric>/<our label>``."""
    from eta import report

    names = dict(COMPONENTS)
    out = {}
    for label in labels:
        if label in names:
            out.update(report.paper_metrics("ablation", "llava-1.5-7b", names[label], benchmark=harm,
                                            key_suffix=f"/{label}"))
    return out


def headline_metrics(table: pd.DataFrame, harm: str, help_: str) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for _, row in table.iterrows():
        out[f"{harm}/usr/{row.label}"] = row.usr
        out[f"{harm}/asr/{row.label}"] = row.asr
        out[f"{help_}/helpfulness/{row.label}"] = row.helpfulness
        out[f"{harm}/aligned_rate/{row.label}"] = row.aligned_on_harm
        out[f"{help_}/aligned_rate/{row.label}"] = row.aligned_on_help
        if "helpful_score" in table.columns:
            out[f"{harm}/helpful_score/{row.label}"] = row.helpful_score
    return out


def plot_tradeoff(table: pd.DataFrame, harmfulness: str = "usr"):
    """One panel per study: harmfulness (down is better) against helpfulness (right is better)."""
    import matplotlib.pyplot as plt

    # a study is drawn when it compares something: the plain `eta` row alone (the rule "both")
    # is no rule study
    counts = table.study.value_counts()
    studies = [s for s in ("N", "tau_pre", "tau_post", "component", "rule") if counts.get(s, 0) > 1]
    fig, axes = plt.subplots(1, max(1, len(studies)), figsize=(4.2 * max(1, len(studies)), 3.8), squeeze=False)
    for ax, study in zip(axes[0], studies):
        part = table[table.study == study]
        # the judge's USR where it gave a valid verdict for every point of the study, else the ASR
        y_name = harmfulness if part[harmfulness].notna().all() else "asr"
        if study in ("N", "tau_pre", "tau_post"):
            part = part.sort_values("value")
            ax.plot(part.helpfulness, part[y_name], marker="o")
        else:
            ax.scatter(part.helpfulness, part[y_name])
        points = part.dropna(subset=["helpfulness", y_name])
        for (x, y), same in points.groupby(["helpfulness", y_name]):  # one label per point, values joined
            ax.annotate(", ".join(dict.fromkeys(str(v) for v in same.value)), (x, y), textcoords="offset points",
                        xytext=(4, 4), fontsize=8)
        ax.set_title(study)
        ax.set_xlabel("helpfulness (1 - refusal rate)")
        ax.set_ylabel(y_name.upper())
        ax.set_xlim(-0.05, 1.05)
        ax.set_ylim(-0.05, 1.05)
    fig.suptitle("Harmfulness vs helpfulness (down-right is better)")
    fig.tight_layout()
    return fig


def plot_alignment_tradeoff(table: pd.DataFrame):
    """Harmful inputs aligned (up is better) against benign inputs aligned (left is better), one
    curve per swept knob: the evaluator's operating points."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for study in ("N", "tau_pre", "tau_post"):
        part = table[table.study == study].dropna(subset=["aligned_on_harm", "aligned_on_help"]).sort_values("value")
        if part.empty:
            continue
        ax.plot(part.aligned_on_help, part.aligned_on_harm, marker="o", label=study)
        for _, row in part.iterrows():
            ax.annotate(f"{row.value:g}", (row.aligned_on_help, row.aligned_on_harm), textcoords="offset points",
                        xytext=(4, 4), fontsize=8)
    ax.plot([0, 1], [0, 1], ls=":", color="grey")
    ax.set(xlabel="benign inputs aligned (false alarms)", ylabel="harmful inputs aligned",
           xlim=(-0.05, 1.05), ylim=(-0.05, 1.05), title="When ETA aligns (up-left is better)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def findings(table: pd.DataFrame) -> str:
    lines = []
    for study, part in table.groupby("study", sort=False):
        y = "usr" if part["usr"].notna().all() else "asr"
        cells = [f"{row.value}: {y.upper()} {'n/a' if pd.isna(row[y]) else f'{row[y]:.2f}'}, helpfulness "
                 f"{'n/a' if pd.isna(row.helpfulness) else f'{row.helpfulness:.2f}'}" for _, row in part.iterrows()]
        lines.append(f"- **{study}**: " + "; ".join(cells) + ".")
    return "\n".join(lines)
