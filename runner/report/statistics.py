"""Confidence intervals for seed groups, without SciPy: the Student t distribution from the regularized incomplete
beta function, a mean's interval over seeds, and Welch's interval for the difference of two means.

Seeds are few (3 to 5), so the normal 1.96 would make intervals too narrow by half or more: t(0.975, 2) = 4.30.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from functools import lru_cache

# The continued fraction's stopping rule and its guard against a division by zero (Numerical Recipes, 6.4).
PRECISION = 1e-14
TINY = 1e-300
MAX_TERMS = 10_000
# Beyond this many degrees of freedom, t and the normal distribution agree to better than 1e-6.
NORMAL_FROM_DF = 1e7


def beta_continued_fraction(x: float, a: float, b: float) -> float:
    """The continued fraction of I_x(a, b), evaluated by the modified Lentz method."""
    total, previous_plus = a + b, a + 1.0
    numerator = 1.0
    denominator = 1.0 - total * x / previous_plus
    denominator = 1.0 / (denominator if abs(denominator) > TINY else TINY)
    result = denominator
    for term in range(1, MAX_TERMS + 1):
        double = 2 * term
        # Even step, then odd step of the fraction's recurrence.
        for coefficient in (
            term * (b - term) * x / ((a - 1.0 + double) * (a + double)),
            -(a + term) * (total + term) * x / ((a + double) * (previous_plus + double)),
        ):
            denominator = 1.0 + coefficient * denominator
            denominator = 1.0 / (denominator if abs(denominator) > TINY else TINY)
            numerator = 1.0 + coefficient / numerator
            numerator = numerator if abs(numerator) > TINY else TINY
            step = denominator * numerator
            result *= step
        if abs(step - 1.0) < PRECISION:
            return result
    return result


def regularized_incomplete_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b): the beta(a, b) distribution's CDF at x in [0, 1]."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    logarithm = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(logarithm)
    # The fraction converges fast below the distribution's mean-ish point; above it, use I_x(a, b) = 1 - I_{1-x}(b, a).
    if x < (a + 1.0) / (a + b + 2.0):
        return front * beta_continued_fraction(x, a, b) / a
    return 1.0 - front * beta_continued_fraction(1.0 - x, b, a) / b


def student_t_cdf(t: float, degrees_of_freedom: float) -> float:
    """P(T <= t) for Student's t with the given degrees of freedom."""
    if degrees_of_freedom >= NORMAL_FROM_DF:
        return statistics.NormalDist().cdf(t)
    tail = 0.5 * regularized_incomplete_beta(
        degrees_of_freedom / (degrees_of_freedom + t * t), degrees_of_freedom / 2, 0.5
    )
    return 1.0 - tail if t > 0 else tail


def student_t_density(t: float, degrees_of_freedom: float) -> float:
    half = (degrees_of_freedom + 1.0) / 2.0
    logarithm = math.lgamma(half) - math.lgamma(degrees_of_freedom / 2.0) - 0.5 * math.log(degrees_of_freedom * math.pi)
    return math.exp(logarithm - half * math.log1p(t * t / degrees_of_freedom))


def first_guess(probability: float, degrees_of_freedom: float) -> float:
    """The normal quantile corrected in powers of 1/df (Abramowitz and Stegun 26.7.5): within 1e-3 of t from
    about 3 degrees of freedom, so that Newton's method has little left to do."""
    z = statistics.NormalDist().inv_cdf(probability)
    corrections = (
        (z**3 + z) / 4,
        (5 * z**5 + 16 * z**3 + 3 * z) / 96,
        (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384,
        (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160,
    )
    return z + sum(term / degrees_of_freedom ** (power + 1) for power, term in enumerate(corrections))


@lru_cache(maxsize=4096)
def student_t_quantile(probability: float, degrees_of_freedom: float) -> float:
    """The t with P(T <= t) = probability: Newton steps on the CDF from a close first guess, inside a bracket
    [low, high] that holds the root and narrows with every step; a step that would leave the bracket is
    replaced by a bisection (or, while the bracket is still open above, by doubling)."""
    if not 0.0 < probability < 1.0 or not degrees_of_freedom > 0:
        raise ValueError(
            f"student_t_quantile needs 0 < probability < 1 and degrees of freedom > 0, "
            f"got {probability} and {degrees_of_freedom}"
        )
    if degrees_of_freedom >= NORMAL_FROM_DF:
        return statistics.NormalDist().inv_cdf(probability)
    if probability == 0.5:
        return 0.0
    if probability < 0.5:  # the distribution is symmetric
        return -student_t_quantile(1.0 - probability, degrees_of_freedom)
    low, high = 0.0, math.inf
    guess = first_guess(probability, degrees_of_freedom)
    for _ in range(200):
        excess = student_t_cdf(guess, degrees_of_freedom) - probability
        if excess == 0.0:
            return guess
        if excess > 0:
            high = guess
        else:
            low = guess
        following = guess - excess / student_t_density(guess, degrees_of_freedom)
        # Done when a step, or the bracket, is below what the CDF's own rounding can tell apart.
        tolerance = 1e-12 * max(1.0, abs(guess))
        if abs(following - guess) <= tolerance or high - low <= tolerance:
            return following
        if not low < following < high:
            following = 2.0 * low + 1.0 if math.isinf(high) else (low + high) / 2.0
        guess = following
    return guess


def sample_std(values: list[float]) -> float:
    """The sample standard deviation (n - 1 in the denominator) in floating point: the standard library's
    exact-fraction one costs a hundred times more, and a thousand runs' curves ask for it 30,000 times."""
    mean = math.fsum(values) / len(values)
    return math.sqrt(math.fsum((value - mean) ** 2 for value in values) / (len(values) - 1))


@dataclass(frozen=True)
class Estimate:
    """A mean over n runs, with its sample standard deviation and confidence interval (None for one run)."""

    n: int
    mean: float
    std: float | None
    low: float | None
    high: float | None


@dataclass(frozen=True)
class Difference:
    """A difference of two means with its confidence interval and Welch's degrees of freedom."""

    value: float
    low: float
    high: float
    degrees_of_freedom: float | None  # None: both groups had no spread at all


def mean_interval(values: list[float], confidence: float = 0.95, bounds: tuple[float, float] | None = None) -> Estimate:
    """The mean and its Student t interval: mean ± t((1 + confidence) / 2, n - 1) · s / sqrt(n), cut to
    ``bounds`` where the metric has them (an accuracy lies in [0, 1]: with 3 seeds the t interval of a spread-out
    accuracy reaches past 100%, which no run can score)."""
    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return Estimate(n, mean, None, None, None)
    std = sample_std(values)
    half_width = student_t_quantile((1.0 + confidence) / 2.0, n - 1) * std / math.sqrt(n)
    low, high = mean - half_width, mean + half_width
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return Estimate(n, mean, std, low, high)


def welch_difference(values: list[float], baseline: list[float], confidence: float = 0.95) -> Difference | None:
    """mean(values) - mean(baseline) with Welch's interval, which does not assume equal variances: the standard
    error sqrt(s1²/n1 + s2²/n2), and the Welch–Satterthwaite degrees of freedom
    (s1²/n1 + s2²/n2)² / ((s1²/n1)² / (n1 - 1) + (s2²/n2)² / (n2 - 1)). None when a side has under two runs."""
    if len(values) < 2 or len(baseline) < 2:
        return None
    difference = statistics.fmean(values) - statistics.fmean(baseline)
    first = sample_std(values) ** 2 / len(values)
    second = sample_std(baseline) ** 2 / len(baseline)
    if first + second == 0:
        return Difference(difference, difference, difference, None)
    degrees = (first + second) ** 2 / (first**2 / (len(values) - 1) + second**2 / (len(baseline) - 1))
    half_width = student_t_quantile((1.0 + confidence) / 2.0, degrees) * math.sqrt(first + second)
    return Difference(difference, difference - half_width, difference + half_width, degrees)
