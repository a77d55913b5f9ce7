"""MMMU-Pro: ``parse_multi_choice_response`` of ``mmmu-pro/evaluate.py`` (MMMU-Benchmark/MMMU),
instance-level accuracy.

The parsing equals the official one under both protocols. When nothing parses, the official
script guesses with the unseeded global ``random``; here the guess is seeded per item (so a rerun
gives the same number) and counted as ``random_guesses``: the one place where no reimplementation
can equal a given official run.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from eta.metrics.core import Metric, rate

_MMMU_END_CHARS = (",", ".", "!", "?", ";", ":", "'")


@dataclass(frozen=True)
class MMMUProItem:
    item_id: str
    options: Sequence[str]  # up to 10 option texts, lettered A, B, ...
    answer: str  # letter
    response: str


def _letters(n: int) -> list[str]:
    if n > 26:
        raise ValueError(f"too many options: {n}")
    return [chr(ord("A") + i) for i in range(n)]


def _mmmu_after_answer_tag(response: str, letters: Sequence[str]) -> str | None:
    pos = response.rfind("Answer:")
    if pos == -1:
        return None
    tail = response[pos + len("Answer:"):].strip()
    found = [c for c in letters if c in tail]  # plain substring test, as the official parser
    return found[0] if len(found) == 1 else None


def _mmmu_candidates(padded: str, letters: Sequence[str],
                     options: Mapping[str, str]) -> tuple[list[str], str]:
    """Candidate letters and how they were found: bracket | letter | content."""
    found = [c for c in letters if f"({c})" in padded]
    if found:
        return found, "bracket"
    found = [c for c in letters if f"{c} " in padded]
    if not found:
        found = [c for c in letters if f"{c}." in padded]
    if found:
        return found, "letter"
    if len(padded.split()) > 5:
        lowered = padded.lower()
        return [c for c in letters if options[c].lower() in lowered], "content"
    return [], "letter"


def _mmmu_last(padded: str, candidates: Sequence[str], how: str,
               options: Mapping[str, str]) -> str:
    """Among several candidates, the one whose mention starts last (first on ties)."""
    def position(c: str) -> int:
        if how == "bracket":
            return padded.rfind(f"({c})")
        if how == "content":
            return padded.lower().rfind(options[c].lower())
        return padded.rfind(f" {c} ")
    positions = [position(c) for c in candidates]
    return candidates[positions.index(max(positions))]


def mmmu_pro_choice(response: str, options: Sequence[str], rng: random.Random) -> tuple[str, bool]:
    """(letter, guessed): the option the response names; a seeded random letter if none parses."""
    letters = _letters(len(options))
    by_letter = dict(zip(letters, options, strict=True))
    tagged = _mmmu_after_answer_tag(response, letters)
    if tagged is not None:
        return tagged, False
    text = response
    for ch in _MMMU_END_CHARS:  # one character kind after another, both ends
        text = text.strip(ch)
    padded = f" {text} "
    candidates, how = _mmmu_candidates(padded, letters, by_letter)
    if not candidates:
        return rng.choice(letters), True
    if len(candidates) == 1:
        return candidates[0], False
    return _mmmu_last(padded, candidates, how, by_letter), False


def mmmu_pro_scores(items: Iterable[MMMUProItem], seed: int = 0) -> dict[str, Metric]:
    """Instance-level accuracy; unparsed responses get a guess seeded by (seed, item_id)."""
    hits = guesses = n = 0
    for item in items:
        rng = random.Random(f"{seed}:{item.item_id}")
        letter, guessed = mmmu_pro_choice(item.response, item.options, rng)
        hits += letter == item.answer
        guesses += guessed
        n += 1
    return {"accuracy": rate("accuracy", hits, n, "higher", {"random_guesses": guesses})}
