"""Progress for long loops, shared by every stage so a run shows one consistent display on stderr.

Library code calls `progress_task(...)`. On a terminal it is a rich bar laid out to stay readable
at 80 columns (description, a short bar, count, rate, elapsed and remaining time; the loop's own
info, e.g. loss, takes what room is left). When stderr is not a terminal (a log file, a CI job)
it prints a plain line at least every 10 % of the loop or every 30 s, and one at the end.
Nothing is printed when progress is disabled (`set_progress_enabled(False)`: tests, `--quiet`).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import TextIO

_enabled = True
PLAIN_EVERY_FRACTION = 0.1
PLAIN_EVERY_SECONDS = 30.0


def set_progress_enabled(enabled: bool) -> None:
    global _enabled
    _enabled = enabled


def _info_text(info: dict) -> str:
    return "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in info.items())


def _clock(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "-:--"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d}" if h else f"{rem // 60}:{rem % 60:02d}"


def _rate(per_second: float | None) -> str:
    if not per_second:
        return "? it/s"
    return f"{per_second:.1f} it/s" if per_second >= 1 else f"{1 / per_second:.1f} s/it"


@contextlib.contextmanager
def progress_task(description: str, total: int | None, stream: TextIO | None = None) -> Iterator[Callable[..., None]]:
    """Yield `advance(n=1, **info)`; `info` (e.g. loss=0.12, gaussians=20000) is shown beside the count.

    `stream` defaults to sys.stderr (looked up at call time)."""
    if not _enabled:
        yield lambda n=1, **info: None
        return
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    if callable(isatty) and isatty():
        with _rich_task(description, total, stream) as advance:
            yield advance
    else:
        plain = PlainProgress(description, total, stream)
        try:
            yield plain.advance
        finally:
            plain.close()


@contextlib.contextmanager
def _rich_task(description: str, total: int | None, stream: TextIO) -> Iterator[Callable[..., None]]:
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)
    from rich.table import Column
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task) -> Text:
            return Text(_rate(task.speed), style="progress.data.speed")

    console = Console(file=stream)
    with Progress(
        TextColumn("[bold]{task.description}", table_column=Column(no_wrap=True, overflow="ellipsis", max_width=22)),
        BarColumn(bar_width=10), MofNCompleteColumn(), RateColumn(), TimeElapsedColumn(), TextColumn("<"),
        TimeRemainingColumn(compact=True),
        TextColumn("{task.fields[info]}", table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1, min_width=0)),
        console=console, transient=False, expand=True,
    ) as progress:
        task = progress.add_task(description, total=total, info="")

        def advance(n: int = 1, **info: object) -> None:
            progress.update(task, advance=n, info=_info_text(info))

        yield advance


class PlainProgress:
    """Plain lines for a non-terminal stream: 'fit: 150/1500 (10%)  12.3 it/s  0:12 < 1:48  loss=0.12'
    whenever another 10 % is done or 30 s have passed since the last line, and at the end."""

    def __init__(self, description: str, total: int | None, stream: TextIO, clock: Callable[[], float] = time.monotonic):
        self.description, self.total, self.stream, self.clock = description, total, stream, clock
        self.done = 0
        self.info = ""
        self.t0 = clock()
        self.last_time = self.t0
        self.last_done = 0
        self.first: tuple[float, int] | None = None  # (time, done) after the first call: rate excludes a resume's jump
        self.printed_done = -1

    def rate(self, now: float) -> float | None:
        if self.first is None or now <= self.first[0] or self.done <= self.first[1]:
            return None
        return (self.done - self.first[1]) / (now - self.first[0])

    def line(self, now: float) -> str:
        count = f"{self.done}/{self.total} ({100 * self.done / self.total:.0f}%)" if self.total else f"{self.done}"
        rate = self.rate(now)
        eta = (self.total - self.done) / rate if rate and self.total else None
        parts = [f"{self.description}: {count}", _rate(rate), f"{_clock(now - self.t0)} < {_clock(eta)}"]
        if self.info:
            parts.append(self.info)
        return "  ".join(parts)

    def advance(self, n: int = 1, **info: object) -> None:
        now = self.clock()
        self.done += n
        if info:
            self.info = _info_text(info)
        if self.first is None:
            self.first = (now, self.done)
        step = max(1, int(self.total * PLAIN_EVERY_FRACTION)) if self.total else None
        due = now - self.last_time >= PLAIN_EVERY_SECONDS or (step is not None and self.done - self.last_done >= step)
        if due or (self.total and self.done >= self.total):
            self._emit(now)

    def _emit(self, now: float) -> None:
        self.stream.write(self.line(now) + "\n")
        self.stream.flush()
        self.last_time, self.last_done, self.printed_done = now, self.done, self.done

    def close(self) -> None:
        if self.printed_done != self.done:
            self._emit(self.clock())
