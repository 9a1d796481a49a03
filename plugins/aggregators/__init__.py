"""Builtin label aggregators: `argmax` (soft labels), `palette-cluster` (colour-coded renders
snapped to the schema palette, the paper's way) and `cleanup` (morphology after another
aggregator). Registered by `splatrefine.plugins.aggregators.plugin`."""
