"""The statistics of compare --seeds: exact McNemar p-values and the bootstrap interval."""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from resnetkit.report.stats import bootstrap_interval, discordant, mcnemar_exact, mean_std


@pytest.mark.parametrize("b, c, expected", [
    # scipy.stats.binomtest(min(b, c), b + c, 0.5).pvalue, computed once and written down.
    (10, 2, 0.03857421875),
    (2, 10, 0.03857421875),
    (0, 6, 0.03125),
    (7, 3, 0.34375),
    (40, 20, 0.01348929373119186),
    (3000, 2800, 0.00896943600119357),  # 5,800 discordant samples: 2**5800 would overflow a float
])
def test_mcnemar_exact_known_values(b, c, expected):
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-9)


def test_mcnemar_without_a_difference_is_one():
    assert mcnemar_exact(0, 0) == 1.0  # the two never disagree
    assert mcnemar_exact(5, 5) == 1.0  # 2 * P(X <= 5) > 1 is capped
    assert mcnemar_exact(1, 0) == 1.0


@pytest.mark.parametrize("b, c", [(-1, 2), (1.5, 2), (True, 2), (2, "3")])
def test_mcnemar_rejects_what_is_not_a_count(b, c):
    with pytest.raises(ValueError, match="count"):
        mcnemar_exact(b, c)


def test_discordant_counts_each_side():
    first = np.array([1, 1, 0, 0, 1, 0], dtype=bool)
    second = np.array([1, 0, 1, 0, 0, 0], dtype=bool)
    assert discordant(first, second) == (2, 1)
    with pytest.raises(ValueError, match="one correctness value per sample"):
        discordant(first, second[:3])


def test_mean_std_is_the_sample_deviation():
    assert mean_std([0.9, 0.92, 0.94]) == pytest.approx((0.92, statistics.stdev([0.9, 0.92, 0.94])))
    assert mean_std([0.5]) == (0.5, 0.0)
    with pytest.raises(ValueError):
        mean_std([])


def test_bootstrap_is_deterministic_and_follows_its_seed():
    rng = np.random.default_rng(1)
    correct = rng.random((3, 400)) < 0.8
    first = bootstrap_interval(correct)
    assert bootstrap_interval(correct) == first
    assert bootstrap_interval(correct, seed=1) != first
    low, high = first
    assert low < correct.mean() < high


def test_bootstrap_matches_the_binomial_interval():
    # One seed, 2,000 samples, 80% right: the interval is close to p +- 1.96 sqrt(p (1 - p) / n).
    correct = np.zeros(2000, dtype=bool)
    correct[:1600] = True
    low, high = bootstrap_interval(correct)
    half = 1.96 * np.sqrt(0.8 * 0.2 / 2000)
    assert low == pytest.approx(0.8 - half, abs=0.004)
    assert high == pytest.approx(0.8 + half, abs=0.004)


def test_bootstrap_resamples_samples_jointly_over_seeds():
    # Two seeds that are each other's opposite: every resample's seed-mean accuracy is exactly 0.5.
    a = np.arange(100) % 2 == 0
    assert bootstrap_interval(np.stack([a, ~a])) == (0.5, 0.5)
    assert bootstrap_interval(np.ones((2, 50), dtype=bool)) == (1.0, 1.0)


def test_bootstrap_bad_input():
    with pytest.raises(ValueError, match="samples"):
        bootstrap_interval(np.zeros((2, 0), dtype=bool))
    with pytest.raises(ValueError, match="resamples"):
        bootstrap_interval(np.ones(5, dtype=bool), resamples=0)
    with pytest.raises(ValueError, match="level"):
        bootstrap_interval(np.ones(5, dtype=bool), level=1.5)
