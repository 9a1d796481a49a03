"""Builtin view samplers: `input` (the capture's cameras), `orbit` (yaw/pitch grid), `sphere`
(seeded uniform directions). Registered by `splatrefine.plugins.samplers.plugin`."""
