"""The result type of every metric and how per-item values become one: :class:`Metric`, means with
standard errors, rates with Wilson intervals, and the ``official`` / ``strict`` protocol switch.

A :class:`Metric` carries a value, the direction in which it is better, ``n``, and its uncertainty.
Means of per-item scores carry a standard error (sample standard deviation, ddof=1, over sqrt(n));
rates (0/1 per item) carry a 95 % Wilson score interval. ``ci_method`` says which. Rates are
fractions in [0, 1]; MME scores are points, as in the paper's tables.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

log = logging.getLogger(__name__)

Protocol = Literal["official", "strict"]
PROTOCOLS: tuple[str, ...] = ("official", "strict")


def check_protocol(protocol: str) -> str:
    """``protocol`` itself, or a ValueError naming the two protocols."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}; got {protocol!r}")
    return protocol


Direction = Literal["higher", "lower"]
Kind = Literal["mean", "rate"]

WILSON_Z_95 = 1.959963984540054  # two-sided 95 % normal quantile


@dataclass(frozen=True)
class Metric:
    """One aggregated number with its direction, size and uncertainty."""

    name: str
    value: float
    direction: Direction
    n: int
    stderr: float | None = None
    ci: tuple[float, float] | None = None
    ci_method: str | None = None  # "wilson-95" for rates; None when stderr is given or nothing is
    counts: Mapping[str, int] = field(default_factory=dict)
    unit: str = "fraction"  # fraction | points | score

    def __post_init__(self) -> None:
        if self.direction not in ("higher", "lower"):
            raise ValueError(f"metric {self.name!r}: direction must be 'higher' or 'lower'")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (NaN becomes None)."""
        return {
            "name": self.name,
            "value": _finite_or_none(self.value),
            "direction": self.direction,
            "n": self.n,
            "stderr": _finite_or_none(self.stderr),
            "ci": None if self.ci is None else [_finite_or_none(x) for x in self.ci],
            "ci_method": self.ci_method,
            "counts": dict(self.counts),
            "unit": self.unit,
        }


def _finite_or_none(x: float | None) -> float | None:
    if x is None or math.isnan(x):
        return None
    return float(x)


def to_flat_dict(prefix: str, metrics: Mapping[str, Metric]) -> dict[str, float | None]:
    """``{"<prefix>/<name>": value}`` for W&B-style logging; the caller picks the prefix."""
    return {f"{prefix}/{name}": _finite_or_none(m.value) for name, m in metrics.items()}


def wilson_interval(successes: int, n: int, z: float = WILSON_Z_95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (NaNs when n == 0)."""
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, center - half), min(1.0, center + half))


def mean_stderr(values: Sequence[float]) -> tuple[float, float]:
    """Mean and its standard error (ddof=1); stderr is NaN for fewer than two values."""
    n = len(values)
    if n == 0:
        return (math.nan, math.nan)
    mean = sum(values) / n
    if n < 2:
        return (mean, math.nan)
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return (mean, math.sqrt(var / n))


def aggregate(
    name: str,
    values: Iterable[float | bool],
    *,
    direction: Direction = "higher",
    kind: Kind = "mean",
    unit: str = "fraction",
    counts: Mapping[str, int] | None = None,
) -> Metric:
    """Aggregate per-item values into one :class:`Metric`.

    ``kind="mean"``: mean with standard error. ``kind="rate"``: every value must be 0/1; the
    value is the fraction of ones with a 95 % Wilson interval.
    """
    vals = [float(v) for v in values]
    n = len(vals)
    extra = dict(counts or {})
    if kind == "rate":
        if any(v not in (0.0, 1.0) for v in vals):
            raise ValueError(f"metric {name!r}: a rate needs 0/1 values")
        k = int(sum(vals))
        value = k / n if n else math.nan
        return Metric(name, value, direction, n, ci=wilson_interval(k, n), ci_method="wilson-95",
                      counts=extra, unit=unit)
    if kind == "mean":
        mean, se = mean_stderr(vals)
        return Metric(name, mean, direction, n, stderr=se, counts=extra, unit=unit)
    raise ValueError(f"metric {name!r}: kind must be 'mean' or 'rate', got {kind!r}")


def rate(name: str, hits: int, n: int, direction: Direction, counts: Mapping[str, int]) -> Metric:
    """``hits / n`` with its Wilson interval (NaN when n == 0)."""
    value = hits / n if n else math.nan
    return Metric(name, value, direction, n, ci=wilson_interval(hits, n), ci_method="wilson-95",
                  counts=dict(counts))
