"""Builtin capture readers (implementations of splatrefine_open_capture)."""
