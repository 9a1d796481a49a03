"""Capture readers and writers, label PNGs, atomic writes."""
