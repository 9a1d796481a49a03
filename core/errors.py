"""Errors that reach the user: one line saying what is wrong, optionally a hint how to fix it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class SplatrefineError(Exception):
    """A problem with the user's input or environment (the CLI prints it and exits 2)."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  {self.hint}"

    def __reduce__(self):  # keep the hint when raised in a worker process
        return type(self), (self.message, self.hint)


class CaptureError(SplatrefineError):
    """A capture folder or file that cannot be read as given."""


class ConfigError(SplatrefineError):
    """A config file, --plugin or --set value that does not validate."""


class PluginError(SplatrefineError):
    """An unknown, duplicate or broken plugin."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """' Did you mean 'x'?' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""
