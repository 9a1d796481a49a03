"""Progress for long loops (rich), shared by every stage so a run shows one consistent display.

Library code calls `progress_task(...)`; nothing is printed when progress is disabled
(`set_progress_enabled(False)`, used by tests and by `--quiet`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

_enabled = True


def set_progress_enabled(enabled: bool) -> None:
    global _enabled
    _enabled = enabled


@contextlib.contextmanager
def progress_task(description: str, total: int | None) -> Iterator[Callable[..., None]]:
    """Yield `advance(n=1, **info)`; `info` (e.g. loss=0.12, gaussians=20000) is shown beside the bar."""
    if not _enabled:
        yield lambda n=1, **info: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TextColumn("{task.fields[info]}"), transient=False,
    ) as progress:
        task = progress.add_task(description, total=total, info="")

        def advance(n: int = 1, **info: object) -> None:
            text = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in info.items())
            progress.update(task, advance=n, info=text)

        yield advance
