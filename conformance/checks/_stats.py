"""Binomial tolerances for traffic checks: how far a count may stray from its expected share
before the check calls the split wrong, and how likely a given gateway is to pass.

A weighted route sends each request to a backend independently (Envoy draws per request), so a
backend's count is Binomial(n, share). The tolerance is the smallest half-width h around
n·share that a correct gateway leaves with probability at most `false_fail`; a gateway whose
real share is off passes only when its count lands inside that band (docs/results.md has the
figures).
"""

from __future__ import annotations

import math


def binomial_pmf(n: int, k: int, p: float) -> float:
    if p <= 0 or p >= 1:
        return 1.0 if k == round(n * p) else 0.0
    log = (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
           + k * math.log(p) + (n - k) * math.log(1 - p))  # fmt: skip
    return math.exp(log)


def pass_probability(n: int, share: float, tolerance: int, actual: float) -> float:
    """P(|X - n·share| <= tolerance) for X ~ Binomial(n, actual)."""
    centre = n * share
    return sum(binomial_pmf(n, k, actual) for k in range(n + 1) if abs(k - centre) <= tolerance)


def tolerance(n: int, share: float, false_fail: float) -> int:
    """The smallest half-width around n·share that a correct gateway leaves with probability
    at most `false_fail`."""
    for half in range(n + 1):
        if 1 - pass_probability(n, share, half, share) <= false_fail:
            return half
    return n
