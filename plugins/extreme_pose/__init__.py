"""The extreme-pose experiment as a plugin: `splatrefine experiment` (docs/results.md).

For now this package only adds the command (through `splatrefine_register_commands`); the
experiment's code still lives in splatrefine.experiment and splatrefine.commands.experiment
and moves here in a later step of issue 19.
"""
