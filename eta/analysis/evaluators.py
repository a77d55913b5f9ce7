"""The post-evaluator (reward model) and the safety judge measured on human labels, for the notebooks.

Notebook 01 shows the reward model's ROC beside CLIP's (``reward_model_study``, ``plot_reward_roc``);
notebook 02 shows how far the USR judge agrees with people (``judge_agreement``) beside the USR,
and every interval of a harmful-vs-benign rate (``interval_table``).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from eta.calibration import (
    LABELLED_ANSWERS,
    RewardModelStudy,
    confusion,
    measure_reward_model,
    read_labelled_answers,
    roc_points,
    youden_threshold,
)
from eta.config import Profile


def reward_model_study(profile: Profile, seed: int = 0) -> RewardModelStudy:
    return measure_reward_model(profile, seed)


def reward_model_table(study: RewardModelStudy) -> pd.DataFrame:
    """One row per labelled set: sizes, AUC, and TPR / FPR at the profile's tau_post and at the
    validation Youden threshold (positive = unsafe, flagged when the score is at most the threshold)."""
    youden, _ = youden_threshold(*study.scores["validation"])
    rows = []
    for name, (unsafe, safe) in study.scores.items():
        row: dict[str, Any] = {"set": name, "unsafe": len(unsafe), "safe": len(safe), "auc": study.auc(name)}
        for label, threshold in (("tau_post", study.tau_post), ("youden", youden)):
            c = confusion(unsafe, safe, threshold)
            row[f"tpr@{label}"] = c["true_unsafe"] / max(1, len(unsafe))
            row[f"fpr@{label}"] = c["false_unsafe"] / max(1, len(safe))
        rows.append(row)
    return pd.DataFrame(rows).set_index("set")


def reward_model_metrics(study: RewardModelStudy) -> dict[str, float]:
    youden, _ = youden_threshold(*study.scores["validation"])
    out = {f"reward_model/auc/{name.split(' (')[0].replace(' ', '_')}": study.auc(name) for name in study.scores}
    out["reward_model/youden_threshold"] = youden
    return out


def plot_reward_roc(study: RewardModelStudy):
    """ROC of the reward model on each labelled set, the profile's tau_post marked on the test set."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, (unsafe, safe) in study.scores.items():
        fpr, tpr = roc_points(unsafe, safe)
        ax.plot(fpr, tpr, label=f"{name} (AUC {study.auc(name):.3f}, n={len(unsafe) + len(safe)})")
    unsafe, safe = study.scores["test"]
    c = confusion(unsafe, safe, study.tau_post)
    ax.scatter(c["false_unsafe"] / len(safe), c["true_unsafe"] / len(unsafe), marker="s", s=120, color="black",
               zorder=3, label=f"tau_post = {study.tau_post:g} on test")
    ax.plot([0, 1], [0, 1], ls=":", color="grey")
    ax.set(xlabel="FPR (safe responses flagged unsafe)", ylabel="TPR (unsafe responses flagged)",
           xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), title=f"Post-evaluator {study.reward_model}: ROC on human labels")
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    return fig


def judge_agreement(profile: Profile) -> pd.DataFrame:
    """Accuracy and Cohen's kappa of the profile's safety judge against held-out human labels.

    Measured for the trained classifier judges (the test split of pyrit's labels, and the model's own
    hand-labelled answers); a generative judge is not run here (an empty table says so)."""
    from eta.safety_classifier import CLASSIFIER_JUDGES, agreement, get_classifier_judge
    from eta.safety_data import labelled_responses

    name = profile.judges.safety
    if name not in CLASSIFIER_JUDGES:
        return pd.DataFrame({"note": [f"{name}: agreement is measured for the trained classifier judges "
                                      f"({', '.join(CLASSIFIER_JUDGES)}) only"]})
    judge = get_classifier_judge(name)
    test = labelled_responses().split("test")
    rows = {"pyrit test split (human labels)": agreement(judge, [r.response for r in test], [r.unsafe for r in test])}
    if LABELLED_ANSWERS.exists():
        own = read_labelled_answers()
        rows["own answers (hand-labelled)"] = agreement(judge, [r["response"] for r in own], [r["unsafe"] for r in own])
    return pd.DataFrame(rows).T


def judge_metrics(table: pd.DataFrame) -> dict[str, float]:
    if "accuracy" not in table.columns:
        return {}
    keys = {"pyrit test split (human labels)": "test", "own answers (hand-labelled)": "own_answers"}
    return {f"safety_judge/{metric}/{keys.get(name, name)}": float(table.loc[name, metric])
            for name in table.index for metric in ("accuracy", "kappa")}


def interval_table(frame: pd.DataFrame, metrics: tuple[str, ...] = ("usr", "asr", "aligned_rate")) -> pd.DataFrame:
    """benchmark x method rows with each rate and its 95% interval, as text ``0.42 [0.29, 0.56]``."""
    part = frame[frame.metric.isin(metrics)].copy()

    def cell(row) -> str:
        if pd.isna(row.value):
            return "n/a"
        if pd.isna(row.ci_low) or pd.isna(row.ci_high):
            return f"{row.value:.2f}"
        return f"{row.value:.2f} [{row.ci_low:.2f}, {row.ci_high:.2f}]"

    part["cell"] = part.apply(cell, axis=1)
    return part.pivot_table(index=["benchmark", "method"], columns="metric", values="cell", aggfunc="first")


def separated(frame: pd.DataFrame, metric: str, benchmark: str, better: str, worse: str = "vanilla") -> bool | None:
    """True when ``better``'s 95% interval of ``metric`` lies wholly below ``worse``'s (None: missing)."""
    part = frame[(frame.metric == metric) & (frame.benchmark == benchmark)].set_index("method")
    if better not in part.index or worse not in part.index:
        return None
    high, low = part.loc[better, "ci_high"], part.loc[worse, "ci_low"]
    return None if pd.isna(high) or pd.isna(low) else bool(high < low)


def separation_note(frame: pd.DataFrame, benchmarks: list[str], candidate: str = "eta",
                    baseline: str = "vanilla") -> str:
    """Markdown: for each benchmark, whether the candidate's USR and ASR intervals lie below the baseline's."""
    lines = []
    for benchmark in benchmarks:
        for metric in ("usr", "asr"):
            part = frame[(frame.metric == metric) & (frame.benchmark == benchmark)].set_index("method")
            if candidate not in part.index or baseline not in part.index or pd.isna(part.loc[candidate, "value"]):
                continue
            a, b = part.loc[candidate], part.loc[baseline]
            verdict = {True: "the intervals do not overlap", False: "the intervals overlap",
                       None: "no interval"}[separated(frame, metric, benchmark, candidate, baseline)]
            lines.append(f"- {benchmark}, {metric.upper()}: {candidate} {a.value:.2f} [{a.ci_low:.2f}, {a.ci_high:.2f}] "
                         f"vs {baseline} {b.value:.2f} [{b.ci_low:.2f}, {b.ci_high:.2f}] (n={int(a.n)}): {verdict}.")
    return "\n".join(lines) or "No USR / ASR of both methods to compare."
