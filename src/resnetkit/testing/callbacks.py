"""Training callbacks for tests: stop a run at a chosen step the way Ctrl-C does."""

from __future__ import annotations


class StopAtStep:
    """Training callback: ask the trainer to stop after ``step`` optimizer steps, as Ctrl-C does
    (the same code path: finish the step, write a checkpoint, raise TrainingInterrupted)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer) -> None:
        if trainer.global_step == self.step:
            trainer.request_stop()
