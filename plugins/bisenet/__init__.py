"""`bisenet`: the BiSeNet face parser of face-parsing.PyTorch (ResNet-18 context path, attention
refinement, feature fusion, two auxiliary heads), loading that project's checkpoint layout.
Registered by `splatrefine.plugins.bisenet.plugin`."""
