"""Wald's sequential probability ratio test on a Bernoulli stream: decide as soon as the evidence allows.

Written here because neither scipy nor statsmodels ship an SPRT (the PyPI packages that do are unmaintained
one-offs), and the test itself is its log-likelihood ratio and two thresholds. With error probabilities
``alpha`` (accepting H1 when H0 holds) and ``beta`` (accepting H0 when H1 holds), Wald's bounds are
``log((1 - beta) / alpha)`` above and ``log(beta / (1 - alpha))`` below; between them the test keeps collecting.
"""

from __future__ import annotations

import math
from typing import Literal

import msgspec
from scipy.stats import beta as beta_distribution

Decision = Literal["h0", "h1", "continue"]
# Rates are kept this far from 0 and 1, where a single observation would make the ratio infinite.
EPSILON = 1e-3


class Sprt(msgspec.Struct, frozen=True):
    """One test's state: the counts it saw, the two hypotheses, the log-likelihood ratio and the decision."""

    signal: str
    n: int
    k: int
    p0: float
    p1: float
    llr: float
    lower: float
    upper: float
    decision: Decision


def clamp(p: float) -> float:
    return min(max(p, EPSILON), 1 - EPSILON)


def rate_bound(k: int, n: int, quantile: float) -> float:
    """A quantile of the Jeffreys posterior Beta(k + 1/2, n - k + 1/2) of a reference rate.

    The reference arm (production) is itself a sample: the tests take its rate at the edge of this interval,
    so a few lucky production requests cannot make a sound candidate look worse (nor zero events a zero rate).
    """
    return float(beta_distribution.ppf(quantile, k + 0.5, n - k + 0.5))


def bounds(alpha: float, beta: float) -> tuple[float, float]:
    return math.log(beta / (1 - alpha)), math.log((1 - beta) / alpha)


def sprt(signal: str, k: int, n: int, p0: float, p1: float, alpha: float, beta: float) -> Sprt:
    """H0: the rate is ``p0``; H1: it is ``p1``. ``k`` events in ``n`` trials."""
    p0, p1 = clamp(p0), clamp(p1)
    llr = k * math.log(p1 / p0) + (n - k) * math.log((1 - p1) / (1 - p0))
    lower, upper = bounds(alpha, beta)
    decision: Decision = "h1" if llr >= upper else "h0" if llr <= lower else "continue"
    return Sprt(signal, n, k, round(p0, 5), round(p1, 5), round(llr, 4), round(lower, 4), round(upper, 4), decision)
