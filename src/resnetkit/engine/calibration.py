"""Calibrated probabilities: temperature scaling fitted on the validation split (Guo et al. 2017).

One scalar T divides the logits; it changes no prediction (the arg-max stays) and is chosen
to minimise the validation negative log-likelihood. The search is over log T by golden
section on the summed NLL, so under torchrun every process holds only its share of the
validation logits and all of them step through the same temperatures (each NLL is one
all-reduce of a sum), ending on the same T.
"""

from __future__ import annotations

import logging
import math
from typing import Callable

import torch
from torch.nn import functional as F

from ..runtime import distributed

log = logging.getLogger(__name__)

# log T searched in [log 0.05, log 20]: wider than any network's over- or under-confidence.
_LOG_T_RANGE = (math.log(0.05), math.log(20.0))
_ITERATIONS = 60  # the interval shrinks by 0.618 each: 6.0 * 0.618^60 ~ 1e-12 in log T


def summed_nll(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> float:
    """The NLL of softmax(logits / T) summed over every process's samples."""
    local = (F.cross_entropy(logits / temperature, labels, reduction="sum").double() if len(labels)
             else torch.zeros((), dtype=torch.float64, device=logits.device))
    dist = distributed.current()
    return float(distributed.all_reduce_sum(local) if dist.enabled else local)


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature minimising the validation NLL (1.0 when there are no samples).

    1.0 too when the model gets every validation sample right: the NLL then falls without end
    as T falls, so the search ends on its bound (0.05, every probability 1.000), a certainty
    the validation split cannot back (FSDD's official split, 100% right, and speakers it never
    heard, 12% wrong).
    """
    counts = torch.tensor([float(len(labels)), float((logits.argmax(1) != labels).sum()) if len(labels) else 0.0],
                          dtype=torch.float64, device=logits.device)
    if distributed.current().enabled:
        counts = distributed.all_reduce_sum(counts)
    total, wrong = float(counts[0]), float(counts[1])
    if total == 0:
        return 1.0
    if wrong == 0:
        log.info("calibration: every one of the %d validation samples is right, so no temperature can be fitted "
                 "(the likelihood grows without end as T falls); the probabilities stay the model's own (T = 1)",
                 int(total))
        return 1.0
    nll = lambda log_t: torch.tensor([summed_nll(logits, labels, math.exp(float(log_t)))], dtype=torch.float64)
    return float(search_temperatures(nll, 1, torch.device("cpu"))[0])


def search_temperatures(nll: Callable[[torch.Tensor], torch.Tensor], count: int, device: torch.device) -> torch.Tensor:
    """``count`` temperatures, each minimising its own entry of ``nll(log_t)`` (a (count,) tensor of summed NLLs).

    Golden-section search on log T in _LOG_T_RANGE, all entries at once; every process that
    computes the same ``nll`` (sums all-reduced, or the samples gathered) ends on the same T.
    """
    ratio = (math.sqrt(5) - 1) / 2
    a = torch.full((count,), _LOG_T_RANGE[0], dtype=torch.float64, device=device)
    b = torch.full((count,), _LOG_T_RANGE[1], dtype=torch.float64, device=device)
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = nll(c), nll(d)
    for _ in range(_ITERATIONS):
        left = fc <= fd  # the minimum lies in [a, d]
        b, a = torch.where(left, d, b), torch.where(left, a, c)
        c, d = torch.where(left, b - ratio * (b - a), d), torch.where(left, c, a + ratio * (b - a))
        fc_new, fd_new = nll(c), nll(d)
        fc, fd = torch.where(left, fc_new, fd), torch.where(left, fc, fd_new)
    return ((a + b) / 2).exp()


def calibration_summary(before: dict, after: dict, temperature, method: str = "temperature") -> dict:
    """What metrics.json records of the calibration: the temperature (one per label for
    ``method="temperature per label"``), ECE and NLL before and after."""
    return {
        "method": method,
        "temperature": temperature,
        "ece_before": before["ece"],
        "ece_after": after["ece"],
        "nll_before": before["loss"],
        "nll_after": after["loss"],
        "reliability_before": before["reliability"],
        "reliability_after": after["reliability"],
    }
