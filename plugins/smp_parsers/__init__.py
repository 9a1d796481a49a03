"""`smp`: any segmentation-models-pytorch architecture and encoder as a trainable parser.
Needs the optional extra `smp` (segmentation-models-pytorch, which needs torchvision matched to
torch). Registered by `splatrefine.plugins.smp_parsers.plugin`."""
