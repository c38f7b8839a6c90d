"""The training run's live progress bar on stderr (rich): steps, steps/s, return, ETA."""

from __future__ import annotations

import sys
from typing import Any


class Progress:
    """A live progress bar on stderr: steps, steps/s, return, ETA."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.bar = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(
                "{task.fields[sps]:>8} steps/s  return {task.fields[ret]:>8}  success {task.fields[succ]:>5}"
            ),
            TimeRemainingColumn(),
            console=Console(file=sys.stderr),
            transient=False,
        )
        self.task = self.bar.add_task("train", total=total, sps="-", ret="-", succ="-")
        self.bar.start()

    def update(self, n: int, row: dict[str, Any]) -> None:
        if self.bar is None:
            return
        ret = row.get("eval_return", row.get("return_mean"))
        succ = row.get("eval_success", row.get("success_rate"))
        self.bar.update(
            self.task,
            advance=n,
            sps=f"{row['steps_per_s']:.0f}",
            ret="-" if ret is None else f"{ret:.1f}",
            succ="-" if succ is None else f"{succ:.2f}",
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
