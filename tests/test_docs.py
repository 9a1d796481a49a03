"""Every hook is documented; every role has a builtin component."""

import inspect
from pathlib import Path

from splatrefine import hookspecs

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_every_hook_is_documented():
    hooks = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("splatrefine_")]
    assert hooks, "no hooks found"
    text = (DOCS / "hooks.md").read_text()
    for name in hooks:
        assert f"`{name}(" in text, f"docs/hooks.md does not document {name}"
        assert getattr(hookspecs, name).__doc__, f"{name} has no docstring"


def test_docs_walk_through_the_example_plugin():
    text = (DOCS / "writing-a-plugin.md").read_text()
    assert "examples/third_party_plugin" in text and "splatrefine.plugins" in text
