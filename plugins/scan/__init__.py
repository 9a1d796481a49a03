"""Captures from textured head scans: OBJ reading (`mesh`), a z-buffer rasterizer (`raster`), the
head frame (`frame`), capture folders with depth and face-id buffers (`capture`) and pseudo-GT
labels lifted from a parser's near-frontal views (`pseudo_gt`), and the `render-scan` command
(`commands`, added through `plugin`); docs/real_scans.md describes all of it. Importing this
package is cheap.
"""
