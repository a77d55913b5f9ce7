"""How well does the CLIP pre-generation score separate harmful images from safe ones?

The paper scores 100 MM-SafetyBench images against 100 COCO images with
``s_pre = cos(E_img(image), E_txt(SAFETY_PROMPT))`` and picks ``tau_pre = 0.16`` (an image is
judged unsafe iff ``s_pre >= tau_pre``). This module scores a labelled clip-study benchmark, draws
the ROC curve (unsafe is the positive class), gives TPR/FPR at every threshold, at the profile's
``tau_pre`` and at the paper's 0.16, and the threshold that maximises Youden's J = TPR - FPR.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from eta.config import Profile
from eta.report import PAPER_REFERENCE

log = logging.getLogger(__name__)

PAPER_TAU_PRE: float = PAPER_REFERENCE["thresholds"]["tau_pre"]
STAND_IN_NOTICE = ("**No CLIP weights in reach; these numbers test the pipeline, not CLIP.** "
                   "The CLIP model `{name}` is a random twin: its scores carry no information about "
                   "the images, so an AUC near 0.5 and any threshold it suggests mean nothing.")


@dataclass
class ClipStudy:
    """Scores and threshold statistics of one clip-study run."""

    benchmark: str
    clip: str
    stand_in: bool
    tau_pre: float  # the profile's threshold
    scores: pd.DataFrame  # id, label, unsafe, s_pre, image
    roc: pd.DataFrame  # threshold, tpr, fpr, youden_j (one row per distinct score, descending)
    auc: float
    at_tau_pre: dict[str, float]
    at_paper_tau_pre: dict[str, float]
    best: dict[str, float]

    @property
    def n_unsafe(self) -> int:
        return int(self.scores["unsafe"].sum())

    @property
    def n_safe(self) -> int:
        return int((~self.scores["unsafe"]).sum())


# ------------------------------------------------------------------------------------ scoring


def clip_is_stand_in(profile: Profile) -> bool:
    """True when the profile's CLIP is a twin or stand-in (known before loading anything)."""
    from eta.model_registry import resolve

    return bool(resolve(profile.models.clip, "clip").stand_in)


def balanced_subset(examples, limit: int | None, seed: int) -> list:
    """At most ``limit`` examples of each label (seeded), in benchmark order."""
    from eta.benchmarks import select_subset

    unsafe = [e for e in examples if e.meta.get("unsafe")]
    safe = [e for e in examples if not e.meta.get("unsafe")]
    chosen = set(select_subset(unsafe, limit, seed)) | set(select_subset(safe, limit, seed))
    return [e for e in examples if e in chosen]


def score_images(clip, examples, safety_prompt: str, batch_size: int = 16) -> pd.DataFrame:
    """``s_pre`` of every example's image, one row each."""
    from eta.benchmarks import load_image

    rows: list[dict[str, Any]] = []
    batches = [examples[i: i + batch_size] for i in range(0, len(examples), batch_size)]
    for batch in tqdm(batches, desc="CLIP scores", unit="batch"):
        embeddings = clip.embed_images([load_image(e) for e in batch])
        for example, embedding in zip(batch, embeddings):
            rows.append({"id": example.id, "label": "unsafe" if example.meta.get("unsafe") else "safe",
                         "unsafe": bool(example.meta.get("unsafe")),
                         "s_pre": clip.pre_score(embedding, safety_prompt), "image": str(example.image)})
    return pd.DataFrame(rows, columns=["id", "label", "unsafe", "s_pre", "image"])


# ----------------------------------------------------------------------------------- statistics


def roc_table(unsafe: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
    """TPR and FPR of the rule ``unsafe iff s_pre >= threshold`` at every distinct score."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thresholds = roc_curve(np.asarray(unsafe, dtype=int), np.asarray(scores, dtype=float),
                                     drop_intermediate=False)
    table = pd.DataFrame({"threshold": thresholds, "tpr": tpr, "fpr": fpr})
    table = table[np.isfinite(table["threshold"])].reset_index(drop=True)  # drop sklearn's +inf sentinel
    table["youden_j"] = table["tpr"] - table["fpr"]
    return table


def rates_at(unsafe: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """TPR (unsafe images flagged) and FPR (safe images flagged) at ``threshold``."""
    unsafe = np.asarray(unsafe, dtype=bool)
    flagged = np.asarray(scores, dtype=float) >= threshold
    return {"threshold": float(threshold), "tpr": float(flagged[unsafe].mean()),
            "fpr": float(flagged[~unsafe].mean())}


def best_threshold(roc: pd.DataFrame) -> dict[str, float]:
    """The threshold with the largest Youden's J (the highest such threshold on ties)."""
    row = roc.loc[roc["youden_j"].idxmax()]
    return {"threshold": float(row["threshold"]), "tpr": float(row["tpr"]), "fpr": float(row["fpr"]),
            "youden_j": float(row["youden_j"])}


def summarize(scores: pd.DataFrame, *, benchmark: str, clip: str, stand_in: bool, tau_pre: float) -> ClipStudy:
    """ROC, AUC and the threshold statistics of scored images (both labels needed)."""
    from sklearn.metrics import roc_auc_score

    unsafe, values = scores["unsafe"].to_numpy(bool), scores["s_pre"].to_numpy(float)
    if unsafe.all() or not unsafe.any():
        raise ValueError(f"{benchmark}: the study needs unsafe and safe images; got {int(unsafe.sum())} "
                         f"unsafe and {int((~unsafe).sum())} safe")
    roc = roc_table(unsafe, values)
    return ClipStudy(benchmark=benchmark, clip=clip, stand_in=stand_in, tau_pre=tau_pre, scores=scores, roc=roc,
                     auc=float(roc_auc_score(unsafe.astype(int), values)),
                     at_tau_pre=rates_at(unsafe, values, tau_pre),
                     at_paper_tau_pre=rates_at(unsafe, values, PAPER_TAU_PRE), best=best_threshold(roc))


def run_clip_study(profile: Profile, benchmark: str = "embedded-clip-study", *, limit: int | None = None,
                   seed: int = 0, batch_size: int = 16) -> ClipStudy:
    """Load the profile's CLIP and the benchmark (``limit`` images per label), score, summarize."""
    from eta.benchmarks import get_info, load_benchmark
    from eta.evaluators import load_clip

    if get_info(benchmark).kind != "clip-study":
        raise ValueError(f"{benchmark!r} is not a clip-study benchmark (labels in meta['unsafe'])")
    examples = balanced_subset(list(load_benchmark(benchmark, seed=seed)), limit, seed)
    clip = load_clip(profile.models.clip, device=profile.models.device, dtype=profile.models.dtype)
    log.info("scoring %d images of %s with %s", len(examples), benchmark, clip.name)
    scores = score_images(clip, examples, profile.eta.prompts.safety, batch_size)
    return summarize(scores, benchmark=benchmark, clip=clip.name, stand_in=clip.stand_in or profile.stand_in,
                     tau_pre=profile.eta.tau_pre)


# ------------------------------------------------------------------------------------- outputs


def headline_metrics(study: ClipStudy) -> dict[str, float]:
    """Summary numbers keyed ``benchmark/metric``."""
    b = study.benchmark
    return {
        f"{b}/auc": study.auc,
        f"{b}/tau_pre": study.tau_pre,
        f"{b}/tpr_at_tau_pre": study.at_tau_pre["tpr"],
        f"{b}/fpr_at_tau_pre": study.at_tau_pre["fpr"],
        f"{b}/tpr_at_paper_tau_pre": study.at_paper_tau_pre["tpr"],
        f"{b}/fpr_at_paper_tau_pre": study.at_paper_tau_pre["fpr"],
        f"{b}/best_threshold": study.best["threshold"],
        f"{b}/best_tpr": study.best["tpr"],
        f"{b}/best_fpr": study.best["fpr"],
        f"{b}/best_youden_j": study.best["youden_j"],
        f"{b}/n_unsafe": float(study.n_unsafe),
        f"{b}/n_safe": float(study.n_safe),
    }


def paper_reference(study: ClipStudy) -> dict[str, float]:
    """The paper's chosen threshold beside ours (the paper reports no AUC for this study)."""
    b = study.benchmark
    return {f"{b}/tau_pre": PAPER_TAU_PRE, f"{b}/best_threshold": PAPER_TAU_PRE}


def reference_notes(study: ClipStudy) -> dict[str, str]:
    b = study.benchmark
    note = "the paper's tau_pre, chosen from 100 MM-SafetyBench vs 100 COCO images (cosine scale)"
    return {f"{b}/tau_pre": note, f"{b}/best_threshold": note}


def summary_table(study: ClipStudy) -> pd.DataFrame:
    """Thresholds and their rates: the profile's, the paper's, the best by Youden's J."""
    rows = [("profile tau_pre", study.at_tau_pre), (f"paper tau_pre ({PAPER_TAU_PRE})", study.at_paper_tau_pre),
            ("best (Youden's J)", study.best)]
    return pd.DataFrame([{"rule": name, "threshold": r["threshold"], "tpr": r["tpr"], "fpr": r["fpr"]}
                         for name, r in rows]).set_index("rule")


def save_scores(study: ClipStudy, output_dir: str | Path) -> Path:
    """Per-image scores as JSONL in the notebook's output folder."""
    path = Path(output_dir) / "scores.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    study.scores.to_json(path, orient="records", lines=True)
    return path


def notice(profile: Profile) -> str:
    """Markdown saying plainly whether the CLIP is the paper's or a stand-in."""
    if clip_is_stand_in(profile):
        return STAND_IN_NOTICE.format(name=profile.models.clip)
    return f"CLIP: `{profile.models.clip}` (profile `{profile.name}`), scores on the cosine scale."


def findings(study: ClipStudy) -> str:
    """The numbers of this run in words (markdown)."""
    lines = [f"- {study.n_unsafe} unsafe and {study.n_safe} safe images of `{study.benchmark}`, "
             f"scored by `{study.clip}`: **AUC {study.auc:.3f}** (0.5 is chance).",
             f"- At the paper's tau_pre = {PAPER_TAU_PRE}: TPR {study.at_paper_tau_pre['tpr']:.2f}, "
             f"FPR {study.at_paper_tau_pre['fpr']:.2f}.",
             f"- At this profile's tau_pre = {study.tau_pre:g}: TPR {study.at_tau_pre['tpr']:.2f}, "
             f"FPR {study.at_tau_pre['fpr']:.2f}.",
             f"- Best threshold by Youden's J: {study.best['threshold']:.4f} "
             f"(TPR {study.best['tpr']:.2f}, FPR {study.best['fpr']:.2f}, J {study.best['youden_j']:.2f})."]
    if study.stand_in:
        lines.append(f"- {STAND_IN_NOTICE.format(name=study.clip)}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------- plots


def plot_roc(study: ClipStudy):
    """ROC curve with the paper's 0.16, the profile's tau_pre and the Youden-best threshold marked."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, *study.roc["fpr"]], [0, *study.roc["tpr"]], label=f"ROC (AUC {study.auc:.3f})")
    ax.plot([0, 1], [0, 1], ls=":", color="grey", label="chance")
    marks = [(study.at_paper_tau_pre, f"paper tau_pre = {PAPER_TAU_PRE}", "*", "tab:red"),
             (study.best, f"Youden best = {study.best['threshold']:.3f}", "o", "tab:green")]
    if study.tau_pre != PAPER_TAU_PRE:
        marks.append((study.at_tau_pre, f"profile tau_pre = {study.tau_pre:g}", "s", "tab:orange"))
    for rates, label, marker, color in marks:
        ax.scatter(rates["fpr"], rates["tpr"], marker=marker, s=140, color=color, zorder=3, label=label)
    ax.set(xlabel="FPR (safe images flagged unsafe)", ylabel="TPR (unsafe images flagged)",
           xlim=(-0.02, 1.02), ylim=(-0.02, 1.02),
           title=f"CLIP pre-score ROC on {study.benchmark}" + ("\n(random CLIP twin: pipeline test)" if study.stand_in else ""))
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def plot_score_histograms(study: ClipStudy):
    """s_pre histograms of unsafe and safe images with the thresholds as vertical lines."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(7, 4))
    sns.histplot(data=study.scores, x="s_pre", hue="label", hue_order=["unsafe", "safe"], element="step",
                 stat="count", common_bins=True, ax=ax)
    low, high = study.scores["s_pre"].min(), study.scores["s_pre"].max()
    margin = max(high - low, 1e-3)
    lines = [(PAPER_TAU_PRE, "paper 0.16", "tab:red"), (study.best["threshold"], "Youden best", "tab:green")]
    if study.tau_pre != PAPER_TAU_PRE and low - margin <= study.tau_pre <= high + margin:
        lines.append((study.tau_pre, "profile tau_pre", "tab:orange"))
    for x, label, color in lines:
        ax.axvline(x, ls="--", color=color, label=f"{label} ({x:.3f})")
    ax.set(xlabel="s_pre = cos(image, SAFETY_PROMPT)", ylabel="images",
           title="CLIP pre-scores by class" + (" (random CLIP twin)" if study.stand_in else ""))
    handles, labels = ax.get_legend_handles_labels()
    legend = ax.get_legend()
    if legend is not None:  # seaborn's hue legend: keep it and add the threshold lines
        handles = legend.legend_handles + handles
        labels = [t.get_text() for t in legend.get_texts()] + labels
    ax.legend(handles, labels, fontsize=8)
    fig.tight_layout()
    return fig
