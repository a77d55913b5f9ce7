"""Judging a file of ``{question, response}`` lines with a profile's post-evaluator or safety judge.

``python -m eta judge reward FILE`` prints, per line, the reward model's score of the response
under the POST prompt (``s_post``) and whether ETA would call it unsafe (``s_post <= tau_post``);
``python -m eta judge usr FILE`` prints the safety judge's verdict per line and the unsafe rate.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from eta.config import Profile

log = logging.getLogger(__name__)


def reward_lines(profile: Profile, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from eta.calibration import score_all
    from eta.evaluators import load_reward_model

    m = profile.models
    rm = load_reward_model(m.reward_model, m.device, m.dtype, m.reward_model_trust_remote_code)
    scores = score_all(rm, profile.eta.prompts.post, [r["response"] for r in records])
    return [{"question": r["question"], "s_post": s, "unsafe": s <= profile.eta.tau_post,
             "tau_post": profile.eta.tau_post, "reward_model": rm.name} for r, s in zip(records, scores)]


def usr_lines(profile: Profile, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from eta.engine import Models, safety_judge

    judge = safety_judge(Models(profile))
    verdicts = judge.judge([r["question"] for r in records], [r["response"] for r in records])
    return [{"question": r["question"], "label": v.label, "raw": v.raw, "judge": profile.judges.safety}
            for r, v in zip(records, verdicts)]


def judge_file(kind: str, path: str, profile: Profile, as_json: bool = False) -> int:
    """Print one JSON object per line of ``path``; unless ``as_json``, a summary line after them."""
    from eta.judges import read_qa_jsonl

    records = read_qa_jsonl(path)
    lines = reward_lines(profile, records) if kind == "reward" else usr_lines(profile, records)
    for line in lines:
        print(json.dumps(line, ensure_ascii=False))
    if not as_json:
        if kind == "reward":
            flagged = sum(line["unsafe"] for line in lines)
            print(f"# {flagged} of {len(lines)} responses unsafe at tau_post={profile.eta.tau_post} "
                  f"({lines[0]['reward_model']}, profile {profile.name})")
        else:
            unsafe = sum(line["label"] == "unsafe" for line in lines)
            print(f"# USR {unsafe / len(lines):.3f} ({unsafe} of {len(lines)} unsafe; judge "
                  f"{profile.judges.safety}, profile {profile.name})")
    return 0
