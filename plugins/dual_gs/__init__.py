"""dual-gs: one set of 3D Gaussians with an RGB head and a class head (the paper's dual 3DGS)."""
