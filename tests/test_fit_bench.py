"""bench/dual_gs.py --around-raster: the step's render against the rasterizer, piece by piece."""

import re

from bench_scripts import load_bench

from splatrefine.progress import set_progress_enabled


def test_around_raster_times_the_render_and_each_piece():
    set_progress_enabled(False)
    try:
        text = load_bench("dual_gs").around_raster(48, {"init_points": 500}, 0, 10, views=3)
    finally:
        set_progress_enabled(True)
    rows = {m.group(1).strip(): (float(m.group(2)), float(m.group(3)))
            for m in re.finditer(r"^\| ([^|]+) \| ([-0-9.]+) \| ([-0-9.]+) \|$", text, re.M)}
    assert list(rows) == ["rasterizer alone", "the step's render (rasterize_heads + background)",
                          "difference: the work around the rasterizer", "SH colours",
                          "class softmax + concatenation", "SH background"]
    assert "48x48, 22 channels, 3 views" in text
    assert all(cpu > 0 for name, (_, cpu) in rows.items() if not name.startswith("difference"))
    render, alone, diff = (rows[k][1] for k in ("the step's render (rasterize_heads + background)",
                                                "rasterizer alone", "difference: the work around the rasterizer"))
    assert abs(diff - (render - alone)) < 0.011  # the table rounds to 0.01 ms
