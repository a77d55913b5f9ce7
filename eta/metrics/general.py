"""General-ability scoring: a benchmark's examples and the model's answers, through that
benchmark's metric under the ``official`` or ``strict`` protocol (one module per metric family
beside this one holds its parsing and aggregation).

    responses = {record["sample_id"]: record["response"] for record in records}
    metrics = score_general("mmbench", data, responses, protocol="official")
    [metrics[name] for name in headline("mmbench")]

One scorer per benchmark turns its examples, as :mod:`eta.benchmarks.general` loads them, into
the metric's typed items. An example without a response, or without a reference answer, is left
out, logged, and counted in every returned metric's ``counts`` (``missing_responses``,
``no_reference``). VQAv2 test-dev has no answers: the evaluation server scores it, and
``score_general`` returns no metrics for it.

Metric names per benchmark:

* ``mme``: ``perception`` and ``cognition`` (points, sums of the subtask scores), and per
  subtask ``<subtask>/acc``, ``<subtask>/acc_plus``, ``<subtask>/score``.
* ``mmbench``: ``circular_accuracy`` (every circular copy of a question right; what the
  MMBench evaluation server reports for the 4,377-row dev file LLaVA-1.5 submits) and
  ``accuracy`` (the original option order only).
* ``scienceqa-img``, ``mmmu-pro-standard``, ``mmmu-pro-vision``: ``accuracy``.
* ``textvqa``, ``vqav2``: ``vqa_accuracy``.
* ``vqav2-testdev``: none.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from eta.benchmarks.example import Example
from eta.benchmarks.general import LETTERS
from eta.metrics.core import Metric, check_protocol
from eta.metrics.mmbench import MMBENCH_CIRCULAR_STRIDE, MMBenchItem, mmbench_scores
from eta.metrics.mme import MMEItem, mme_scores
from eta.metrics.mmmu_pro import MMMUProItem, mmmu_pro_scores
from eta.metrics.scienceqa import ScienceQAItem, scienceqa_scores
from eta.metrics.vqa import textvqa_scores, vqa_scores

log = logging.getLogger(__name__)

Pairs = Sequence[tuple[Example, str]]  # (example, response), reference present


def _mme(pairs: Pairs, protocol: str) -> dict[str, Metric]:
    # Example.group is "<task>/<image stem>": the image both questions ask about (acc+).
    return mme_scores((MMEItem(subtask=str(ex.category), image_id=ex.group, answer=str(ex.reference),
                               response=response, question=str(ex.meta.get("mme_question", "")))
                       for ex, response in pairs), protocol)


def _mmbench(pairs: Pairs, protocol: str) -> dict[str, Metric]:
    items = []
    for ex, response in pairs:
        index = int(ex.meta.get("index", ex.id))
        group = ex.meta.get("circular_group", index % MMBENCH_CIRCULAR_STRIDE)
        items.append(MMBenchItem(group=str(group), shift=index // MMBENCH_CIRCULAR_STRIDE,
                                 options=dict(zip(LETTERS, ex.choices or (), strict=False)),
                                 answer=str(ex.reference), response=response))
    return mmbench_scores(items)


def _scienceqa(pairs: Pairs, protocol: str) -> dict[str, Metric]:
    return scienceqa_scores((ScienceQAItem(response=response, answer=LETTERS.index(str(ex.reference)),
                                           n_choices=len(ex.choices or ()))
                             for ex, response in pairs), protocol)


def _mmmu_pro(pairs: Pairs, protocol: str) -> dict[str, Metric]:
    return mmmu_pro_scores(MMMUProItem(item_id=ex.id, options=list(ex.choices or ()),
                                       answer=str(ex.reference), response=response)
                           for ex, response in pairs)


def _vqa(scores: Callable[..., dict[str, Metric]]):
    def score(pairs: Pairs, protocol: str) -> dict[str, Metric]:
        answers = [[ex.reference] if isinstance(ex.reference, str) else list(ex.reference)
                   for ex, _ in pairs]
        accuracy = scores([response for _, response in pairs], answers, protocol)["accuracy"]
        return {"vqa_accuracy": replace(accuracy, name="vqa_accuracy")}
    return score


@dataclass(frozen=True)
class _Scorer:
    score: Callable[[Pairs, str], dict[str, Metric]] | None  # None: scored by an evaluation server
    headline: tuple[str, ...]


_SCORERS: dict[str, _Scorer] = {
    "mme": _Scorer(_mme, ("perception", "cognition")),
    "mmbench": _Scorer(_mmbench, ("circular_accuracy", "accuracy")),
    "scienceqa-img": _Scorer(_scienceqa, ("accuracy",)),
    "textvqa": _Scorer(_vqa(textvqa_scores), ("vqa_accuracy",)),
    "vqav2": _Scorer(_vqa(vqa_scores), ("vqa_accuracy",)),
    "vqav2-testdev": _Scorer(None, ()),
    "mmmu-pro-standard": _Scorer(_mmmu_pro, ("accuracy",)),
    "mmmu-pro-vision": _Scorer(_mmmu_pro, ("accuracy",)),
}

GENERAL_BENCHMARKS: tuple[str, ...] = tuple(sorted(_SCORERS))


def _scorer(benchmark: str) -> _Scorer:
    try:
        return _SCORERS[benchmark]
    except KeyError:
        raise KeyError(f"no general-ability scorer for {benchmark!r}; supported: "
                       f"{', '.join(GENERAL_BENCHMARKS)}") from None


def headline(benchmark: str) -> list[str]:
    """The metric names a report shows first for ``benchmark`` (empty for vqav2-testdev)."""
    return list(_scorer(benchmark).headline)


def score_general(benchmark: str, examples: Sequence[Example], responses: Mapping[str, str],
                  protocol: str = "official") -> dict[str, Metric]:
    """Score ``responses`` (keyed by example id) on a general-ability benchmark under
    ``protocol`` (``official`` | ``strict``; README, "Official vs strict protocol").

    Examples without a response or without a reference are left out, logged, and counted in
    every metric's ``counts["missing_responses"]`` / ``counts["no_reference"]``; a metric over
    no items is NaN with ``n == 0``. Raises ``KeyError`` for a benchmark with no scorer and
    ``ValueError`` for an example of another benchmark.
    """
    scorer = _scorer(benchmark)
    check_protocol(protocol)
    foreign = [ex.id for ex in examples if ex.benchmark != benchmark]
    if foreign:
        raise ValueError(f"scoring {benchmark!r}: {len(foreign)} examples belong to another "
                         f"benchmark (first: {foreign[0]!r})")
    if scorer.score is None:
        log.warning("%s has no reference answers: its %d responses must be scored by the "
                    "evaluation server; no metrics computed", benchmark, len(responses))
        return {}
    pairs: list[tuple[Example, str]] = []
    missing = no_reference = 0
    for ex in examples:
        response = responses.get(ex.id)
        if response is None:
            missing += 1
        elif ex.reference is None:
            no_reference += 1
        else:
            pairs.append((ex, response))
    unknown = len(set(responses) - {ex.id for ex in examples})
    if missing:
        log.warning("%s: %d of %d examples have no response; left out", benchmark, missing,
                    len(examples))
    if no_reference:
        log.warning("%s: %d examples have no reference answer; left out", benchmark, no_reference)
    if unknown:
        log.warning("%s: %d responses match no example id; ignored", benchmark, unknown)
    skipped = {"missing_responses": missing, "no_reference": no_reference}
    return {name: replace(metric, counts={**metric.counts, **skipped})
            for name, metric in scorer.score(pairs, protocol).items()}
