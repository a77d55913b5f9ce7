"""Pairwise helpfulness (win / tie / lose of ETA against baselines) and 1-10 helpful scores."""

from __future__ import annotations

from typing import Any, Sequence

import pandas as pd

from eta.analysis.grid import Grid, new_figure
from eta.engine import Models


def judge_generator(models: Models, task: str = "pairwise"):
    """The helpfulness judge of the profile for ``task`` (``pairwise`` or ``score``): an
    OpenAI-compatible endpoint, or a local chat model (constrained to the task's verdicts when
    the profile says so)."""
    j = models.profile.judges
    if task not in ("pairwise", "score"):
        raise ValueError(f"unknown judge task {task!r}; expected 'pairwise' or 'score'")
    if j.helpfulness_backend == "openai":
        from eta.judges import OpenAIChatGenerator

        return OpenAIChatGenerator(model=j.helpfulness, max_tokens=j.helpfulness_max_new_tokens,
                                   timeout_s=j.request_timeout_s, max_attempts=j.request_attempts)
    from eta.judges.helpfulness import PAIRWISE_VERDICTS, SCORE_VERDICTS

    choices = (PAIRWISE_VERDICTS if task == "pairwise" else SCORE_VERDICTS) if j.constrained else ()
    return models.text_generator(j.helpfulness, j.helpfulness_max_new_tokens, j.trust_remote_code, choices=choices)


def pairwise(grid: Grid, benchmark: str, candidate: str, baselines: Sequence[str], generator,
             seed: int, identical_is_tie: bool = False) -> pd.DataFrame:
    """One row per (baseline, sample): the judge's outcome for the candidate's answer (identical
    answers a tie without asking the judge when ``identical_is_tie``; under the official protocol,
    answers whose first 40 characters agree, as the official script does)."""
    from eta.judges import PairwiseItem, PairwiseJudge

    judge = PairwiseJudge(generator, seed=seed, identical_is_tie=identical_is_tie,
                          protocol=grid.profile.judges.protocol)
    ours = {r["sample_id"]: r for r in grid.evaluations[(benchmark, candidate)].records}
    rows = []
    for baseline in baselines:
        theirs = {r["sample_id"]: r for r in grid.evaluations[(benchmark, baseline)].records}
        ids = [i for i in ours if i in theirs]
        items = [PairwiseItem(item_id=i, question=ours[i]["question"], candidate=ours[i]["response"],
                              baseline=theirs[i]["response"], image=ours[i].get("image")) for i in ids]
        for item, verdict in zip(items, judge.judge(items)):
            rows.append({"baseline": baseline, **verdict.to_dict(),
                         "identical": item.candidate.strip() == item.baseline.strip()})
    return pd.DataFrame(rows)


def win_tie_metrics(outcomes: pd.DataFrame, benchmark: str) -> dict[str, Any]:
    """``{"<benchmark>/win_tie/<baseline>": Metric}`` plus win/tie/lose/invalid counts per baseline."""
    from eta.metrics import win_tie_rate

    out = {}
    for baseline, part in outcomes.groupby("baseline"):
        rates = win_tie_rate(part["outcome"].tolist())
        out[f"{benchmark}/win_tie/{baseline}"] = rates["win_tie_rate"]
        out[f"{benchmark}/invalid_rate/{baseline}"] = rates["invalid_rate"]
    return out


def outcome_counts(outcomes: pd.DataFrame) -> pd.DataFrame:
    if outcomes.empty:
        return outcomes
    table = outcomes.groupby(["baseline", "outcome"]).size().unstack("outcome", fill_value=0)
    for column in ("win", "tie", "lose", "invalid"):
        if column not in table.columns:
            table[column] = 0
    return table[["win", "tie", "lose", "invalid"]]


def helpful_scores(grid: Grid, benchmark: str, methods: Sequence[str], generator) -> pd.DataFrame:
    """The 1-10 helpful score of every method's answers (None where the judge's reply is invalid)."""
    from eta.judges import HelpfulScoreJudge, ScoreItem

    judge = HelpfulScoreJudge(generator)
    rows = []
    for method in methods:
        records = grid.evaluations[(benchmark, method)].records
        items = [ScoreItem(item_id=r["sample_id"], question=r["question"], answer=r["response"],
                           image=r.get("image")) for r in records]
        rows += [{"method": method, **s.to_dict()} for s in judge.judge(items)]
    return pd.DataFrame(rows)


def score_metrics(scores: pd.DataFrame, benchmark: str) -> dict[str, Any]:
    from eta.metrics import mean_helpful_score

    return {f"{benchmark}/helpful_score/{method}": mean_helpful_score(
        [None if pd.isna(s) else float(s) for s in part["score"]]) for method, part in scores.groupby("method")}


def plot_outcomes(counts: pd.DataFrame, title: str):
    fig, ax = new_figure(6, 0.8 + 0.6 * max(1, len(counts)), counts.empty, "no judgments")
    if counts.empty:
        return fig
    shares = counts.div(counts.sum(axis=1), axis=0)
    left = pd.Series(0.0, index=shares.index)
    colors = {"win": "#2a9d8f", "tie": "#e9c46a", "lose": "#e76f51", "invalid": "#adb5bd"}
    for outcome in shares.columns:
        ax.barh([f"ETA vs {b}" for b in shares.index], shares[outcome], left=left, label=outcome,
                color=colors.get(outcome))
        left += shares[outcome]
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of judged pairs")
    ax.legend(ncol=4, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    ax.set_title(title, pad=28)
    fig.tight_layout()
    return fig


def rates_table(metrics: dict[str, Any]) -> pd.DataFrame:
    """Metric objects as rows: value, interval, n and counts."""
    rows = []
    for key, m in metrics.items():
        ci = m.ci or (None, None)
        rows.append({"metric": key, "value": m.value, "ci_low": ci[0], "ci_high": ci[1], "stderr": m.stderr,
                     "n": m.n, "counts": dict(m.counts or {})})
    return pd.DataFrame(rows).set_index("metric") if rows else pd.DataFrame()


def findings(win_tie: dict[str, Any], scores: dict[str, Any], candidate: str) -> str:
    lines = []
    for key, m in win_tie.items():
        if "/win_tie/" not in key:
            continue
        baseline = key.rsplit("/", 1)[-1]
        counts = m.counts or {}
        if m.n == 0:
            lines.append(f"- Against **{baseline}**: no valid judgment ({counts.get('invalid', 0)} invalid).")
            continue
        ci = m.ci or (float("nan"), float("nan"))
        side = "at least as helpful" if ci[0] >= 0.5 else ("less helpful" if ci[1] < 0.5 else "no clear difference")
        lines.append(f"- Against **{baseline}**: win-tie {m.value:.3f} (95% CI {ci[0]:.3f}-{ci[1]:.3f}, "
                     f"{m.n} valid, {counts.get('invalid', 0)} invalid): {side}.")
    for key, m in scores.items():
        method = key.rsplit("/", 1)[-1]
        value = "n/a" if m.n == 0 else f"{m.value:.2f} ± {m.stderr or 0:.2f}"
        lines.append(f"- Helpful score of {method}: {value} over {m.n} valid judgments.")
    return "\n".join(lines) or "No judgments."
