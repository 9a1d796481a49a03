"""The manual clean-up step: refined views out to an annotation tool and corrections back in.

- `cvat_mask`: CVAT's "Segmentation mask 1.1" layout (labelmap.txt, colours <-> class indices).
- `runs`: what `export` and `correct` read from a run folder (refined/manifest.json, labels, confidence).
- `export`: `export_cvat_mask(run, out, ...)` writes the refined views as a zip or folder.
- `edited`: `read_edited(path, ...)` reads an edited export (zip or folder) safely.
- `propagate`: `correct_run(run, edited, ...)` replaces the corrected views' labels, updates the
  3D model's class head and re-renders every other view into a new refined/.
- `summary`: refined/corrections.json, the before/after contact sheet and the report section.

See docs/corrections.md.
"""
