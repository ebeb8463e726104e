"""What a person watches during a run: a live display on a terminal, plain lines otherwise.

Progress goes to stderr, so stdout stays a clean report (JSON or text) for scripts.
"""

from __future__ import annotations

import sys
from typing import Protocol


class Progress(Protocol):
    def batch(self, index: int, count: int, size: int) -> None: ...
    def host_done(self, host: str, status: str) -> None: ...
    def close(self) -> None: ...


class Silent:
    def batch(self, index: int, count: int, size: int) -> None:
        pass

    def host_done(self, host: str, status: str) -> None:
        pass

    def close(self) -> None:
        pass


class PlainLines:
    """One line per batch and per failed host: readable in CI logs, not chatty."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.failed = 0

    def batch(self, index: int, count: int, size: int) -> None:
        if count > 1:
            print(
                f"batch {index}/{count}: {size} host{'s' if size != 1 else ''}",
                file=sys.stderr,
                flush=True,
            )

    def host_done(self, host: str, status: str) -> None:
        self.done += 1
        if status == "failed":
            self.failed += 1
            print(f"[{self.done}/{self.total}] {host} failed", file=sys.stderr, flush=True)

    def close(self) -> None:
        pass


class LiveDisplay:
    """A rich progress bar with hosts done and failed and the current batch."""

    def __init__(self, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as RichProgress

        self._progress = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("failed {task.fields[failed]}"),
            TimeElapsedColumn(),
            transient=True,
        )
        self._task = self._progress.add_task("hosts", total=total, failed=0)
        self._failed = 0
        self._progress.start()

    def batch(self, index: int, count: int, size: int) -> None:
        label = f"batch {index}/{count}" if count > 1 else "hosts"
        self._progress.update(self._task, description=label)

    def host_done(self, host: str, status: str) -> None:
        if status == "failed":
            self._failed += 1
        self._progress.update(self._task, advance=1, failed=self._failed)

    def close(self) -> None:
        self._progress.stop()


def for_terminal(total: int) -> Progress:
    if sys.stderr.isatty():
        return LiveDisplay(total)
    return PlainLines(total)
