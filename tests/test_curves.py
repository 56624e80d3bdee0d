"""benchmarks/charts.py (the drawing of benchmarks/curves.py): a tiny synthetic result drawn into PNG files."""

from __future__ import annotations

from pathlib import Path

# benchmarks/ is a namespace package on the suite's path; importing the script measures nothing.
from benchmarks import charts

PNG = b"\x89PNG\r\n\x1a\n"


def _family(xscale: str, reference: bool) -> dict[str, object]:
    points = [{"x": x, "median": 10.0 + x, "samples": [10.0 + x]} for x in (0, 1, 10)]
    series: dict[str, object] = {"cachedcall": points}
    if reference:
        series["hand-written"] = [{"x": None, "median": 9.0, "samples": [9.0]}]
    panels = [
        {"col": backend, "row": row, "series": series}
        for backend in ("locmem", "redis")
        for row in ("hit", "miss")
    ]
    return {
        "title": "t",
        "ylabel": "median, µs per call",
        "xlabel": "n",
        "xscale": xscale,
        "yscale": "log",
        "panels": panels,
    }


def test_draw_writes_one_png_per_family(tmp_path: Path) -> None:
    data = {
        "meta": {"cpu_count": 2, "python": "3.12.0", "django": "5.2", "date": "2026-01-01T00:00:00+00:00"},
        "families": {"dependencies": _family("symlog", True), "throughput": _family("linear", False)},
    }
    written = charts.draw(data, tmp_path / "charts")
    assert sorted(p.name for p in written) == ["dependencies.png", "throughput.png"]
    for path in written:
        assert path.read_bytes()[:8] == PNG
