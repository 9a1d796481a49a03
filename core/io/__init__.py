"""Capture readers and writers, label PNGs, atomic writes.

Modules (import what you need; nothing heavy is imported here):
- `capture_folder`: our capture.json folder (read/write_capture_folder, read_capture_json_extra).
- `labels`: read/write_image, read/write_labels (palettized PNG), read/write_mask.
- `nerfstudio`: transforms.json reader, transforms_dict / cameras_to_transforms / write_nerfstudio.
- `colmap`: COLMAP sparse models (.txt/.bin) reader, write_colmap_text.
- `facescape`: FaceScape multi-view folders (params.json).
- `detect`: detect_format(path), read_capture(path) (the builtin readers in order).
- `describe`: describe_capture(capture) for `splatrefine capture info --json`.
- `undistort`, `views`, `common`, `points_ply`, `atomic`: shared helpers.
See docs/formats.md for every layout and convention.
"""
