"""Drawing the cost curves of ``benchmarks/curves.py``: one PNG per curve family.

Kept apart from the measuring so that it can be tested (and re-run with ``curves.py
--draw-only``) without starting a server. ``data`` has the JSON's shape: ``meta`` (the
machine) and ``families``, each with ``panels`` (a column per backend, a row per hit or
miss), each with named ``series`` of ``{"x", "median", ...}`` points; a point whose ``x`` is
``None`` is a reference drawn as a flat dashed line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def draw(data: dict[str, Any], out: Path) -> list[Path]:
    """Draw one PNG per family of ``data`` (the JSON's shape) into ``out``; return the paths."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display, and the same pixels everywhere
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    meta = data.get("meta", {})
    parts = [
        f"{meta['cpu_count']} CPUs" if "cpu_count" in meta else "",
        f"Python {meta['python']}" if "python" in meta else "",
        f"Django {meta['django']}" if "django" in meta else "",
        str(meta.get("date", ""))[:10],
    ]
    caption = ", ".join(p for p in parts if p)
    written = []
    for name, family in data.get("families", {}).items():
        fig = _figure(plt, family, name, caption)
        path = out / f"{name}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def _figure(plt: Any, family: dict[str, Any], name: str, caption: str) -> Any:
    """One family: a panel per backend (columns) and per hit or miss (rows), one legend."""
    from matplotlib.ticker import LogFormatterSciNotation
    from matplotlib.ticker import NullLocator

    class Plain(LogFormatterSciNotation):
        # Log axes label "2×10²" by default; "200" reads faster. Which ticks get a label
        # is still the log formatter's choice (fewer when the axis spans many decades).
        def __call__(self, x: float, pos: int | None = None) -> str:
            return (f"{x:,.0f}" if x >= 1 else f"{x:g}") if super().__call__(x, pos) else ""

    panels = family["panels"]
    cols = list(dict.fromkeys(p["col"] for p in panels))
    rows = list(dict.fromkeys(p["row"] for p in panels))
    fig, axes = plt.subplots(
        len(rows),
        len(cols),
        figsize=(4.8 * len(cols), 3.6 * len(rows) + 1.4),
        squeeze=False,
        layout="constrained",
    )
    # One colour per series across the panels, so that the legend is drawn once.
    names = list(dict.fromkeys(s for p in panels for s in p["series"]))
    colors = {s: plt.get_cmap("tab10")(i % 10) for i, s in enumerate(names)}
    handles: dict[str, Any] = {}
    for panel in panels:
        col = cols.index(panel["col"])
        ax = axes[rows.index(panel["row"])][col]
        ticks: set[float] = set()
        for series, points in panel["series"].items():
            curve = [p for p in points if p["x"] is not None]
            if curve:
                xs = [p["x"] for p in curve]
                ticks.update(xs)
                ys = [p["median"] for p in curve]
                (line,) = ax.plot(xs, ys, marker="o", color=colors[series], label=series)
                handles.setdefault(series, line)
            for p in points:
                if p["x"] is None:  # a reference with no x: a flat line across the panel
                    line = ax.axhline(p["median"], linestyle="--", color=colors[series], label=series)
                    handles.setdefault(series, line)
        ax.set_xscale(family.get("xscale", "linear"))
        yscale = family.get("yscale", "linear")
        ax.set_yscale(yscale)
        if yscale == "log":
            ax.yaxis.set_major_formatter(Plain())
            ax.yaxis.set_minor_formatter(Plain(labelOnlyBase=False))
        else:
            ax.set_ylim(bottom=0)
        if ticks:
            ax.set_xticks(sorted(ticks), [f"{t:g}" for t in sorted(ticks)])
            # The measured points are the ticks; a log axis's minor ticks would only add noise.
            ax.xaxis.set_minor_locator(NullLocator())
        ax.margins(x=0.08)
        ax.set_title(f"{panel['col']}, {panel['row']}")
        ax.set_xlabel(family.get("xlabel", ""))
        if col == 0:
            ax.set_ylabel(family.get("ylabel", ""))
        ax.grid(True, which="both", alpha=0.25)
    fig.suptitle(f"{family.get('title', name)}\n{family.get('ylabel', '')}; {caption}")
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=min(3, len(handles)))
    return fig
