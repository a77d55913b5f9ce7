"""Calibrating and measuring a post-evaluator (reward model) on human labels.

The paper's ``tau_post = 0.06`` lives on ArmoRM's scale; any other reward model needs its own.
``calibrate_reward_model`` scores human-labelled responses (``eta.safety_data``) under the POST
prompt, takes the threshold that best separates unsafe from safe on the validation split (Youden's
J), and reports on the test split, which no evaluator trained on: the AUC, the confusion at that
threshold, and the AUC on partial answers under the DEEP prompt (what best-of-N scores). It also
reports the AUC on the model's own answers labelled by hand (``LABELLED_ANSWERS``), where a
head trained on other models' answers can fail.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

log = logging.getLogger(__name__)

# SmolLM2-135M-Instruct's greedy answers (the local profile's VLM, float32, 96 tokens) to held-out
# AdvBench goals and held-out benign prompts, each labelled unsafe / safe by a person reading it.
LABELLED_ANSWERS = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "smollm2_labelled_answers.jsonl"
SCORE_CHUNK = 16  # responses per reward-model call


def youden_threshold(unsafe: list[float], safe: list[float]) -> tuple[float, float]:
    """(threshold, J) maximising TPR - FPR for the rule 'unsafe iff score <= threshold'."""
    best = (float("nan"), -1.0)
    for t in sorted(set(unsafe + safe)):
        tpr = sum(s <= t for s in unsafe) / len(unsafe)
        fpr = sum(s <= t for s in safe) / len(safe)
        if tpr - fpr > best[1]:
            best = (t, tpr - fpr)
    return best


def auc(unsafe: list[float], safe: list[float]) -> float:
    """P(a safe response scores higher than an unsafe one), ties counted half."""
    pairs = [(s > u) + 0.5 * (s == u) for u in unsafe for s in safe]
    return sum(pairs) / len(pairs)


def confusion(unsafe: list[float], safe: list[float], threshold: float) -> dict[str, int]:
    """Counts for the rule 'unsafe iff score <= threshold' (positive = unsafe)."""
    return {"true_unsafe": sum(s <= threshold for s in unsafe), "missed_unsafe": sum(s > threshold for s in unsafe),
            "false_unsafe": sum(s <= threshold for s in safe), "true_safe": sum(s > threshold for s in safe)}


def read_labelled_answers(path: Path | str = LABELLED_ANSWERS) -> list[dict[str, Any]]:
    """``{question, response, unsafe, source}`` per line."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if not isinstance(row.get("response"), str) or not isinstance(row.get("unsafe"), bool):
                raise ValueError(f"{path} line {number}: needs a string 'response' and a boolean 'unsafe'")
            rows.append(row)
    return rows


def cut_tokens(tokenizer, text: str, max_tokens: int) -> str:
    if tokenizer is None:
        return " ".join(text.split()[:max_tokens])
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return text if len(ids) <= max_tokens else tokenizer.decode(ids[:max_tokens])


def score_all(rm, prompt: str, responses: Sequence[str]) -> list[float]:
    """Reward of every response under ``prompt``, in chunks."""
    from tqdm.auto import tqdm

    out: list[float] = []
    for start in tqdm(range(0, len(responses), SCORE_CHUNK), desc="scoring", unit="chunk", leave=False):
        out.extend(rm.score(prompt, list(responses[start: start + SCORE_CHUNK])))
    return out


def split_scores(rm, prompt: str, responses: Sequence[str], unsafe: Sequence[bool]) -> tuple[list[float], list[float]]:
    scores = score_all(rm, prompt, responses)
    return ([s for s, u in zip(scores, unsafe) if u], [s for s, u in zip(scores, unsafe) if not u])


@dataclass
class RewardModelStudy:
    """Scores of one reward model on the labelled sets: ``{set: (unsafe scores, safe scores)}``."""

    reward_model: str
    stand_in: bool
    response_tokens: int
    tau_post: float
    scores: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)

    def auc(self, name: str) -> float:
        return auc(*self.scores[name])


def measure_reward_model(profile, seed: int = 0) -> RewardModelStudy:
    """Score the validation and test splits (POST prompt; test also as partial answers under DEEP)
    and, when present, the model's own hand-labelled answers."""
    from eta.evaluators import load_reward_model
    from eta.safety_data import labelled_responses

    m = profile.models
    rm = load_reward_model(m.reward_model, m.device, m.dtype, m.reward_model_trust_remote_code)
    tokenizer = getattr(rm, "tokenizer", None)
    length = profile.eta.max_new_tokens
    prompts = profile.eta.prompts
    data = labelled_responses()
    val = data.split("rm-val")
    if m.reward_model == "smollm2-safety-rm":  # its own held-out in-domain answers count for validation too
        from eta.safety_rm import read_in_domain

        val += [r for r in read_in_domain() if r.split == "rm-val"]
    test = data.split("test")

    def cut(text: str) -> str:
        return cut_tokens(tokenizer, text, length)

    study = RewardModelStudy(rm.name, rm.stand_in, length, profile.eta.tau_post)
    study.scores["validation"] = split_scores(rm, prompts.post, [cut(r.response) for r in val], [r.unsafe for r in val])
    study.scores["test"] = split_scores(rm, prompts.post, [cut(r.response) for r in test], [r.unsafe for r in test])
    rng = random.Random(seed)
    prefixes = []
    for r in test:
        words = cut(r.response).split()
        prefixes.append(" ".join(words[: rng.randint(min(5, len(words)), len(words))]))
    study.scores["test partial (DEEP)"] = split_scores(rm, prompts.deep, prefixes, [r.unsafe for r in test])
    if LABELLED_ANSWERS.exists():
        rows = read_labelled_answers()
        study.scores["own answers (hand-labelled)"] = split_scores(
            rm, prompts.post, [cut(r["response"]) for r in rows], [r["unsafe"] for r in rows])
    return study


def calibration_report(study: RewardModelStudy) -> dict[str, Any]:
    """Youden threshold on validation; AUC and confusion at it on every other set."""
    threshold, j = youden_threshold(*study.scores["validation"])
    report: dict[str, Any] = {"reward_model": study.reward_model, "stand_in": study.stand_in,
                              "response_tokens": study.response_tokens,
                              "youden_threshold": threshold, "youden_j": j, "current_tau_post": study.tau_post}
    for name, (unsafe, safe) in study.scores.items():
        report[name] = {"n_unsafe": len(unsafe), "n_safe": len(safe), "auc": auc(unsafe, safe),
                        "confusion_at_threshold": confusion(unsafe, safe, threshold)}
    return report


def calibrate_reward_model(profile, seed: int = 0) -> dict[str, Any]:
    """``python -m eta calibrate``: the report of ``measure_reward_model``."""
    return calibration_report(measure_reward_model(profile, seed))


def roc_points(unsafe: list[float], safe: list[float]) -> tuple[list[float], list[float]]:
    """(false positive rates, true positive rates) of 'unsafe iff score <= t' over every threshold."""
    thresholds = sorted(set(unsafe + safe))
    fpr = [0.0] + [sum(s <= t for s in safe) / len(safe) for t in thresholds]
    tpr = [0.0] + [sum(s <= t for s in unsafe) / len(unsafe) for t in thresholds]
    return fpr, tpr
