"""The statistics of a comparison over seeds: mean and spread, a bootstrap interval, McNemar's test.

numpy and the standard library only: scipy is an optional extra of resnetkit, and the exact
McNemar test is a binomial tail over integers.
"""

from __future__ import annotations

import math
import statistics
from typing import Sequence

import numpy as np

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0  # a fixed stream: the same runs give the same interval on every rebuild
ALPHA = 0.05


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1); the deviation of a single value is 0."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("mean_std needs at least one value")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts of two classifiers on the same samples.

    ``b``: samples only the first got right, ``c``: only the second. Under the null hypothesis
    (equal accuracy) each discordant sample is a fair coin, so the p-value is twice the binomial
    tail ``P(X <= min(b, c))`` with ``X ~ Bin(b + c, 1/2)``, capped at 1 (McNemar 1947, the exact
    form that Dietterich 1998 recommends for comparing classifiers). Integer arithmetic keeps it
    exact for any count; ``b = c = 0`` (no disagreement) gives 1.
    """
    for name, value in (("b", b), ("c", c)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be a count (an integer >= 0), got {value!r}")
    b, c = int(b), int(c)
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1))
    # Python divides big integers with correct rounding, so 2 * tail / 2**n never overflows.
    return min(1.0, 2 * tail / 2**n)


def discordant(first: np.ndarray, second: np.ndarray) -> tuple[int, int]:
    """``(b, c)``: samples only ``first`` got right, and only ``second``, from two boolean vectors."""
    first, second = np.asarray(first, dtype=bool), np.asarray(second, dtype=bool)
    if first.shape != second.shape or first.ndim != 1:
        raise ValueError(f"both need one correctness value per sample, got shapes {first.shape} and {second.shape}")
    return int(np.sum(first & ~second)), int(np.sum(~first & second))


def bootstrap_interval(correct: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES, level: float = 0.95,
                       seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of the seed-mean accuracy, resampling validation samples.

    ``correct``: (seeds, samples) booleans, run ``s`` right on sample ``i``. Each resample draws
    the samples with replacement, the same draw for every seed (the seeds saw the same samples),
    and recomputes the mean over seeds of their accuracies. The interval says how much that mean
    would move on another validation set of this size from the same distribution; the spread
    over training seeds is the standard deviation beside it, not this.
    """
    correct = np.asarray(correct, dtype=bool)
    if correct.ndim == 1:
        correct = correct[None]
    if correct.ndim != 2 or correct.shape[1] == 0:
        raise ValueError(f"correct must be (seeds, samples) with at least one sample, got shape {correct.shape}")
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 1:
        raise ValueError(f"resamples must be an integer >= 1, got {resamples!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    # The seed-mean accuracy of a resample is the mean over its samples of each sample's share of seeds right.
    per_sample = correct.mean(axis=0)
    n = per_sample.size
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // n)  # bounded memory for large validation sets
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        means[start:stop] = per_sample[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)
