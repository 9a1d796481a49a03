"""Builtin plugins, one subpackage each."""
