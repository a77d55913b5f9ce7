"""MMBench: VLMEvalKit's rule-based option extraction and circular evaluation.

An answer names an option as ``can_infer_option`` then ``can_infer_text`` of VLMEvalKit
``vlmeval/utils/matching_util.py`` find it (the phrase table below is their data). The ChatGPT
fallback of the MMBench server for answers no rule reads is not run: such an answer is wrong and
counted as ``unparsed``. Parsing is the same under both protocols.

Two numbers: ``circular_accuracy`` (a question counts only if every circular shift of its options
is answered right: what the MMBench server reports for the file LLaVA-1.5 submits, and so the
number that stands beside the paper's) and ``accuracy`` (the original option order only).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from eta.metrics.core import Metric, rate

# MMBench numbers its circular copies index + k * 1,000,000 (k = the option shift).
MMBENCH_CIRCULAR_STRIDE = 1_000_000

# Phrases VLMEvalKit maps to the "no answer" option Z (data from matching_util.py).
_MMBENCH_REJECTIONS = (
    "Sorry, I can't help with images of people yet.",
    "I can't process this file.",
    "I'm sorry, but without the image provided",
    "Cannot determine the answer",
)
_MMBENCH_SEPARATORS = ".()[],:;!*#{}"


@dataclass(frozen=True)
class MMBenchItem:
    group: str  # the question; all of its circular shifts share it
    shift: int  # 0 for the original option order
    options: Mapping[str, str]  # letter -> option text
    answer: str  # letter
    response: str


def _option_by_letter(response: str, letters: Sequence[str]) -> str | None:
    text = response
    for ch in _MMBENCH_SEPARATORS:
        text = text.replace(ch, " ")
    words = text.split()
    found = [c for c in letters if c in words]
    if len(found) == 1:
        return found[0]
    if not found and "Z" in words:
        return "Z"
    return None


def _option_by_text(response: str, options: Mapping[str, str]) -> str | None:
    lowered = response.lower()
    found = [k for k, v in options.items() if str(v).lower() in lowered]
    return found[0] if len(found) == 1 else None


def mmbench_option(response: str, options: Mapping[str, str]) -> str | None:
    """The option letter a free-text answer names, ``"Z"`` for a refusal, or ``None``.

    First a letter standing alone as a word (after treating ``.()[],:;!*#{}`` as spaces), taken
    only when exactly one option letter appears; then an option text contained in the answer,
    taken only when exactly one does.
    """
    if any(phrase in response for phrase in _MMBENCH_REJECTIONS):
        return "Z"
    return _option_by_letter(response, list(options)) or _option_by_text(response, options)


def mmbench_scores(items: Iterable[MMBenchItem]) -> dict[str, Metric]:
    """Single-pass accuracy (shift 0 only) and circular accuracy (all shifts right)."""
    groups: dict[str, list[bool]] = defaultdict(list)
    first_pass: list[bool] = []
    unparsed = 0
    for item in items:
        letter = mmbench_option(item.response, item.options)
        unparsed += letter is None
        right = letter == item.answer
        groups[item.group].append(right)
        if item.shift == 0:
            first_pass.append(right)
    counts = {"questions": len(groups), "unparsed": unparsed}
    circular_hits = sum(all(v) for v in groups.values())
    return {
        "accuracy": rate("accuracy", sum(first_pass), len(first_pass), "higher", counts),
        "circular_accuracy": rate("circular_accuracy", circular_hits, len(groups), "higher",
                                   counts),
    }
