"""Builtin executors: `local` (a process pool on this machine) and `ray` (a Ray cluster)."""
