"""Progress a person can read: count, rate and ETA at 80 columns; plain lines when not a terminal."""

import io
import re

from splatrefine.progress import PlainProgress, progress_task, set_progress_enabled


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_terminal_bar_keeps_count_rate_and_eta_at_80_columns(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    set_progress_enabled(True)
    out = _Terminal()
    with progress_task("dual-gs fit", 1500, stream=out) as advance:
        for _ in range(3):
            advance(100, loss=0.1234, rgb=0.02, cls=0.5, gaussians=20000)
    last = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue()).splitlines()[-1]
    assert len(last) <= 80
    assert re.search(r"dual-gs fit .* 300/1500 [\d.]+ (it/s|s/it) \d+:\d\d:\d\d < [\d:-]+ loss=0.1234", last), last


def test_plain_lines_every_tenth_or_30_seconds_and_at_the_end():
    now = [0.0]
    out = io.StringIO()
    p = PlainProgress("fit", 100, out, clock=lambda: now[0])
    for _ in range(25):
        now[0] += 0.5
        p.advance(1, loss=0.5)
    assert out.getvalue().splitlines() == [
        "fit: 10/100 (10%)  2.0 it/s  0:05 < 0:45  loss=0.5",
        "fit: 20/100 (20%)  2.0 it/s  0:10 < 0:40  loss=0.5",
    ]
    now[0] += 31.0  # a slow step: a line after 30 s even without another 10 %
    p.advance(1)
    assert out.getvalue().splitlines()[-1].startswith("fit: 26/100 (26%)")
    p.close()  # the end is always reported
    p.close()
    assert out.getvalue().count("fit: 26/100") == 1


def test_not_a_terminal_prints_plain_lines_and_disabled_prints_nothing():
    set_progress_enabled(True)
    out = io.StringIO()
    with progress_task("render", 4, stream=out) as advance:
        for _ in range(4):
            advance()
    assert [ln.split("  ")[0] for ln in out.getvalue().splitlines()] == [
        "render: 1/4 (25%)", "render: 2/4 (50%)", "render: 3/4 (75%)", "render: 4/4 (100%)"]
    set_progress_enabled(False)
    out = io.StringIO()
    with progress_task("render", 4, stream=out) as advance:
        advance(4)
    assert out.getvalue() == ""
