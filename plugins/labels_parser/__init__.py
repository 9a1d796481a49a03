"""`labels`: an initial parser that reads per-view label maps or probability arrays made by any
outside parser (FaRL, SegFace, a lab's own model), matched to the capture's views by file stem.
Registered by `splatrefine.plugins.labels_parser.plugin`."""
