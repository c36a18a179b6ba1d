"""Fold BatchNorm into the preceding convolution (inference only)."""

from __future__ import annotations

import logging

from torch import nn

log = logging.getLogger(__name__)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (in eval mode) with every Conv2d -> BatchNorm2d pair merged into one conv.

    Uses torch.fx's ``fuse``, which rewrites the traced graph, so only pairs where the conv's
    output feeds nothing but the BN are folded (a pre-activation block's BN -> ReLU -> conv is
    left alone). A model that torch.fx cannot trace is returned unfolded, unchanged but for
    ``eval()``, with a log message: folding saves time, it never changes results.
    """
    from torch.fx.experimental.optimization import fuse

    model = model.eval()
    try:
        folded = fuse(model, inplace=False)
    except Exception as err:  # TraceError, NameError, ...: fx cannot follow some Python control flow
        log.info("Conv+BN folding skipped for %s: %s", type(model).__name__, str(err).splitlines()[0])
        return model
    for name in ("model_name", "in_chans", "num_classes", "num_features", "data_config", "feature_info"):
        if hasattr(model, name):
            setattr(folded, name, getattr(model, name))
    return folded
