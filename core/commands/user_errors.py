"""The CLI's one handler for user errors: a SplatrefineError anywhere below prints `Error: MESSAGE`
(and its hint on a second line) on stderr and exits 2, with no traceback (docs/style.md).

The main group runs every command inside it; commands that may also be invoked on their own (tests
call them directly) use the `user_errors` decorator, which is the same handler."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any

import click

from ..errors import SplatrefineError


@contextlib.contextmanager
def exit_2_on_user_error() -> Iterator[None]:
    """SplatrefineError in the block -> 'Error: ...' on stderr and click's Exit(2)."""
    try:
        yield
    except SplatrefineError as exc:
        click.echo(f"Error: {exc}", err=True)
        raise click.exceptions.Exit(2) from None


def user_errors(fn: Callable) -> Callable:
    """`exit_2_on_user_error` around a command's function."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with exit_2_on_user_error():
            return fn(*args, **kwargs)

    return wrapper
