"""What a training run shows while it runs: :class:`EpochRecord` (one epoch's figures, also written to
``history.json``) and :class:`TrainingDisplay` (a rich progress bar per epoch and a metrics row per epoch,
or nothing with ``quiet``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class EpochRecord:
    """What one epoch produced (also written to ``history.json``)."""

    epoch: int
    train_loss: float
    valid_loss: float
    valid_metrics: dict[str, float]
    lr: float
    seconds: float
    improved: bool
    optimizer_steps: int


class TrainingDisplay:
    """rich progress bar per epoch + a per-epoch metrics table (one live view); silent when ``quiet``."""

    COLUMNS = {
        "Non0_acc_2": "acc2",
        "MAE": "MAE",
        "Corr": "corr",
        "Acc_2": "acc",
        "Acc_3": "acc",
        "UAR": "UAR",
        "Macro_F1": "macro-F1",
    }

    def __init__(self, n_batches: int, key_eval: str, quiet: bool = False, console: Any = None) -> None:
        self.quiet = quiet
        self.n_batches = n_batches
        self.key_eval = key_eval
        if quiet:
            return
        from rich import box
        from rich.console import Console, Group
        from rich.live import Live
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
        from rich.table import Table

        self.console = console or Console(stderr=True)
        # under a pipe or nohup a live view shows nothing until the end: print one plain line per epoch
        self.plain = not self.console.is_terminal
        self.table = Table(
            title="DMD training (valid = validation split)", title_justify="left", box=box.SIMPLE
        )
        self._metric_cols: list[str] | None = None
        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"),
            TimeElapsedColumn(),
            console=self.console,
        )
        self.task = self.progress.add_task("train", total=n_batches, epoch=0, loss=float("nan"))
        self.live = Live(Group(self.table, self.progress), console=self.console, refresh_per_second=4)

    def __enter__(self) -> TrainingDisplay:
        if not self.quiet and not self.plain:
            self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if not self.quiet and not self.plain:
            self.live.update(self.table)  # the final render keeps the table, not the finished bar
            self.live.__exit__(*exc)

    def start_epoch(self, epoch: int) -> None:
        """Reset the bar for a new epoch."""
        if not self.quiet and not self.plain:
            self.progress.reset(self.task, total=self.n_batches, epoch=epoch, loss=float("nan"))

    def batch_done(self, index: int, loss: float) -> None:
        """Advance the bar by one mini-batch."""
        if not self.quiet and not self.plain:
            self.progress.update(self.task, completed=index + 1, loss=loss)

    def end_epoch(self, rec: EpochRecord) -> None:
        """Append the epoch's row to the table."""
        if self.quiet:
            return
        m = rec.valid_metrics
        if self._metric_cols is None:  # first epoch: the columns depend on regression vs classification
            self._metric_cols = [k for k in self.COLUMNS if k in m][:3]
            for col in ("epoch", "train loss", "valid loss", *(self.COLUMNS[k] for k in self._metric_cols)):
                self.table.add_column(col, justify="right")
            for col in ("lr", "sec", "best"):
                self.table.add_column(col, justify="right")
        cells = [f"{m[c]:.4f}" if m[c] == m[c] else "-" for c in self._metric_cols]
        if self.plain:
            shown = ", ".join(f"{self.COLUMNS[c]} {v}" for c, v in zip(self._metric_cols, cells, strict=True))
            self.console.print(
                f"epoch {rec.epoch}: train loss {rec.train_loss:.4f}, valid loss {rec.valid_loss:.4f}"
                + (f", {shown}" if shown else "")
                + f", lr {rec.lr:.1e}, {rec.seconds:.1f} s"
                + (" (best so far)" if rec.improved else ""),
                highlight=False,
                markup=False,
            )
        self.table.add_row(
            str(rec.epoch),
            f"{rec.train_loss:.4f}",
            f"{rec.valid_loss:.4f}",
            *cells,
            f"{rec.lr:.1e}",
            f"{rec.seconds:.1f}",
            "*" if rec.improved else "",
        )
