"""The record of a training run: one row per epoch, as a list and as Keras' ``history.history``."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ..runtime.files import save_text

METRIC_COLUMNS = ("epoch", "step", "train_loss", "train_acc", "val_loss", "val_acc", "val_top5", "val_map", "lr",
                  "images_per_sec", "seconds", "val_seconds")
# Keras' names for what each row records.
KERAS_NAMES = {"train_loss": "loss", "train_acc": "accuracy", "val_loss": "val_loss", "val_acc": "val_accuracy",
               "val_top5": "val_top5", "val_map": "val_map", "lr": "lr"}


class History(list):
    """What ``Trainer.fit()`` returns: the per-epoch rows (dicts, as metrics.csv holds them), and
    ``.history`` / ``.epoch`` as Keras' ``History`` has them (``history.history["val_accuracy"]``).
    """

    @property
    def history(self) -> dict[str, list]:
        return {keras: [row.get(ours) for row in self] for ours, keras in KERAS_NAMES.items()}

    @property
    def epoch(self) -> list[int]:
        return [row["epoch"] for row in self]


def write_metrics_csv(history: list[dict], path: str | Path) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in history:
        writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in METRIC_COLUMNS})
    save_text(buf.getvalue(), path)
