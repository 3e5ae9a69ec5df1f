"""Progress for long commands: a rich progress bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import structlog
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

log = structlog.get_logger(__name__)

#: Report progress: (done, total, a short note such as "1200 orders").
Report = Callable[[int, int, str], None]

_LOG_EVERY_S = 5.0


@contextmanager
def progress_reporter(task: str, unit: str) -> Iterator[Report]:
    """A reporter for ``task`` counted in ``unit``; a bar on a TTY, a log line every few seconds else."""
    if sys.stderr.isatty():
        with Progress(
            TextColumn(f"{task}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(unit + " {task.fields[note]}"),
            TimeRemainingColumn(),
            transient=False,
        ) as bar:
            handle = bar.add_task(task, total=None, note="")

            def on_terminal(done: int, total: int, note: str) -> None:
                bar.update(handle, completed=done, total=total, note=note)

            yield on_terminal
        return
    last = 0.0

    def as_logs(done: int, total: int, note: str) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= _LOG_EVERY_S or done == total:
            last = now
            log.info(f"{task}_progress", done=done, total=total, unit=unit, note=note)

    yield as_logs
