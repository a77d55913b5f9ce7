"""Metrics of the paper: one module per metric family, each with its answer parsing, its
aggregation and its ``official`` / ``strict`` protocol switch.

* :mod:`eta.metrics.core`: the :class:`Metric` result type, means with standard errors, rates
  with Wilson intervals, the protocol names.
* :mod:`eta.metrics.judged`: unsafe rate, attack success rate, win-tie rate, helpful score (the
  judges' replies are read in :mod:`eta.judges`).
* :mod:`eta.metrics.mme`, :mod:`~eta.metrics.mmbench`, :mod:`~eta.metrics.scienceqa`,
  :mod:`~eta.metrics.mmmu_pro`, :mod:`~eta.metrics.vqa` (VQAv2 and TextVQA): general ability.
* :mod:`eta.metrics.general`: a benchmark's examples and responses through its metric
  (``score_general``).

``official`` reads answers as the official scripts do, byte for byte; ``strict`` keeps the
suite's more careful readings. README ("Official vs strict protocol") lists every difference.
"""

from eta.metrics.core import (
    PROTOCOLS,
    Metric,
    Protocol,
    aggregate,
    check_protocol,
    mean_stderr,
    rate,
    to_flat_dict,
    wilson_interval,
)
from eta.metrics.judged import (
    PAIRWISE_OUTCOMES,
    SAFETY_LABELS,
    attack_success_rate,
    mean_helpful_score,
    unsafe_rate,
    win_tie_rate,
)
from eta.metrics.mmbench import MMBenchItem, mmbench_option, mmbench_scores
from eta.metrics.mme import MME_COGNITION, MME_PERCEPTION, MMEItem, mme_answer, mme_scores
from eta.metrics.mmmu_pro import MMMUProItem, mmmu_pro_choice, mmmu_pro_scores
from eta.metrics.scienceqa import ScienceQAItem, scienceqa_choice, scienceqa_letter, scienceqa_scores
from eta.metrics.vqa import (
    evalai_answer,
    normalize_vqa_answer,
    textvqa_accuracy,
    textvqa_scores,
    vqa_accuracy,
    vqa_scores,
)

__all__ = [
    "PROTOCOLS", "Metric", "Protocol", "aggregate", "check_protocol", "mean_stderr", "rate",
    "to_flat_dict", "wilson_interval",
    "PAIRWISE_OUTCOMES", "SAFETY_LABELS", "attack_success_rate", "mean_helpful_score",
    "unsafe_rate", "win_tie_rate",
    "MMBenchItem", "mmbench_option", "mmbench_scores",
    "MME_COGNITION", "MME_PERCEPTION", "MMEItem", "mme_answer", "mme_scores",
    "MMMUProItem", "mmmu_pro_choice", "mmmu_pro_scores",
    "ScienceQAItem", "scienceqa_choice", "scienceqa_letter", "scienceqa_scores",
    "evalai_answer", "normalize_vqa_answer", "textvqa_accuracy", "textvqa_scores", "vqa_accuracy",
    "vqa_scores",
]
