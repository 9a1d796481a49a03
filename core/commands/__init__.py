"""Command groups of the `splatrefine` CLI that live outside cli.py (imported lazily by it)."""
