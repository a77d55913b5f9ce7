"""Judges of the paper: refusal strings (ASR), MD-Judge / Llama Guard (USR), GPT-4 helpfulness.

* :mod:`eta.judges.refusal` -- refusal-string matching, ``asr_from_jsonl``.
* :mod:`eta.judges.safety` -- generative safety judges and their verdict parsers.
* :mod:`eta.judges.helpfulness` -- pairwise win-tie judge and 1-10 helpful-score judge.
* :mod:`eta.judges.generators` -- the text generators they run on (local HF model, OpenAI API).

Turn verdicts into numbers with :mod:`eta.metrics` (``unsafe_rate``, ``attack_success_rate``,
``win_tie_rate``, ``mean_helpful_score``).
"""

from eta.judges.generators import (
    DEFAULT_JUDGE_MODEL,
    HFChatGenerator,
    JudgeRequestError,
    Message,
    NoReply,
    OpenAIChatGenerator,
    Prompt,
    TextGenerator,
)
from eta.judges.helpfulness import (
    HELPFUL_SCORE_TEMPLATE,
    PAIRWISE_SYSTEM_PROMPT,
    PAIRWISE_USER_TEMPLATE,
    HelpfulScore,
    HelpfulScoreJudge,
    PairwiseItem,
    PairwiseJudge,
    PairwiseVerdict,
    ScoreItem,
    candidate_first,
    image_data_url,
    pairwise_outcome,
    parse_helpful_score,
    parse_pairwise_choice,
)
from eta.judges.refusal import (
    REFUSAL_EXACT,
    REFUSAL_STRINGS,
    JudgeInputError,
    asr_from_jsonl,
    attack_success,
    is_refusal,
    read_qa_jsonl,
)
from eta.judges.safety import (
    MD_JUDGE_TEMPLATE,
    MD_JUDGE_TEMPLATE_ETA,
    SafetyJudge,
    SafetyVerdict,
    llama_guard_judge,
    md_judge,
    parse_llama_guard,
    parse_md_judge,
)

__all__ = [
    "DEFAULT_JUDGE_MODEL", "HFChatGenerator", "JudgeRequestError", "Message", "NoReply", "OpenAIChatGenerator",
    "Prompt", "TextGenerator",
    "HELPFUL_SCORE_TEMPLATE", "PAIRWISE_SYSTEM_PROMPT", "PAIRWISE_USER_TEMPLATE", "HelpfulScore",
    "HelpfulScoreJudge", "PairwiseItem", "PairwiseJudge", "PairwiseVerdict", "ScoreItem",
    "candidate_first", "image_data_url", "pairwise_outcome", "parse_helpful_score",
    "parse_pairwise_choice",
    "REFUSAL_EXACT", "REFUSAL_STRINGS", "JudgeInputError", "asr_from_jsonl", "attack_success",
    "is_refusal", "read_qa_jsonl",
    "MD_JUDGE_TEMPLATE", "MD_JUDGE_TEMPLATE_ETA", "SafetyJudge", "SafetyVerdict",
    "llama_guard_judge", "md_judge", "parse_llama_guard", "parse_md_judge",
]
