"""ScienceQA-IMG: which option a free-text answer picks, and accuracy.

* ``official``: LLaVA ``llava/eval/eval_science_qa.py``. The answer is an option letter only when
  the whole text is one of ``A``-``E``, or starts with a letter and ``". "``, or holds exactly one
  match of the pattern ``The answer is ([A-Z]).`` (its ``.`` is any character); otherwise it is
  ``FAILED``, and a letter past the last choice is wrong too. Nothing is stripped first.
* ``strict``: line breaks read as sentence ends and the text is stripped before those tests, and
  ``The answer is X`` is taken with or without a period after it (the first such phrase when
  there are several).

Both count an unread answer as wrong and report it as ``unparsed``. The accuracy's denominator
is the items given: the SQA-IMG questions the model answered (the official script's IMG accuracy
counts the predictions whose prompt held an image; a missing prediction is left out of it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from eta.metrics.core import Metric, check_protocol, rate

SCIENCEQA_LETTERS = ("A", "B", "C", "D", "E")
FAILED = "FAILED"
_OFFICIAL_ANSWER_IS = re.compile(r"The answer is ([A-Z]).")
_SQA_ANSWER_IS_DOT = re.compile(r"The answer is ([A-E])\.")
_SQA_ANSWER_IS = re.compile(r"The answer is ([A-E])")


@dataclass(frozen=True)
class ScienceQAItem:
    response: str
    answer: int  # index into the choices
    n_choices: int


def _official_letter(text: str) -> str:
    if text in SCIENCEQA_LETTERS:
        return text
    if len(text) >= 3 and text[0] in SCIENCEQA_LETTERS and text[1:3] == ". ":
        return text[0]
    found = _OFFICIAL_ANSWER_IS.findall(text)
    return found[0] if len(found) == 1 else FAILED


def _strict_letter(response: str) -> str:
    text = response.replace("\n", ". ")
    if text.strip() in SCIENCEQA_LETTERS:
        return text.strip()
    if len(text) >= 3 and text[0] in SCIENCEQA_LETTERS and text[1:3] == ". ":
        return text[0]
    if "The answer is " in text:
        match = _SQA_ANSWER_IS_DOT.search(text) or _SQA_ANSWER_IS.search(text)
        if match:
            return match.group(1)
    return FAILED


def scienceqa_letter(response: str, protocol: str = "strict") -> str:
    """The letter the response gives (any of ``A``-``Z`` under official), or ``FAILED``."""
    if check_protocol(protocol) == "official":
        return _official_letter(response)
    return _strict_letter(response)


def scienceqa_choice(response: str, n_choices: int, protocol: str = "strict") -> int:
    """Choice index the response gives, or -1 (unparsed, or a letter past the last choice)."""
    letter = scienceqa_letter(response, protocol)
    if letter not in SCIENCEQA_LETTERS[:n_choices]:
        return -1
    return SCIENCEQA_LETTERS.index(letter)


def scienceqa_scores(items: Iterable[ScienceQAItem], protocol: str = "strict") -> dict[str, Metric]:
    """Accuracy (the caller passes the IMG subset for SQA-IMG); unparsed answers are wrong."""
    picks = [(scienceqa_choice(i.response, i.n_choices, protocol), i.answer) for i in items]
    unparsed = sum(p == -1 for p, _ in picks)
    hits = sum(p == a for p, a in picks)
    return {"accuracy": rate("accuracy", hits, len(picks), "higher", {"unparsed": unparsed})}
