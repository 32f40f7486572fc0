"""One fixed plotting style per acquisition function, the same in every figure.

A style is a color, a line style and a marker (a ``dict`` of matplotlib keyword arguments).
Each registered function has a color and a marker of its own (16 functions: no two share
either), so lines stay apart even where colors look alike (color-blind readers, grey print).
A function with options (``"dre (quota=proportional)"``, see `robustal.report.results.function_label`)
keeps its function's color, with a dashed or dotted line and another marker, so it never looks
like the plain function. Pure data: no matplotlib import.
"""

from __future__ import annotations

import zlib

# color, marker per registered function: matplotlib's tab10, black for the baseline, a dark teal,
# olive, dark goldenrod, indigo, deep pink; DRE (the paper's method) red
_STYLES = {
    "random": ("#000000", "o"),
    "dre": ("#d62728", "*"),
    "entropy": ("#1f77b4", "s"),
    "entropy_dropout": ("#17becf", "v"),
    "margin": ("#2ca02c", "^"),
    "least_confidence": ("#bcbd22", "<"),
    "gini": ("#9467bd", ">"),
    "mcp": ("#ff7f0e", "D"),
    "bald": ("#8c564b", "P"),
    "kcenter": ("#e377c2", "X"),
    "egl": ("#7f7f7f", "h"),
    "dfal": ("#004d40", "p"),
    "badge": ("#6b8e23", "d"),
    "typiclust": ("#b8860b", "H"),
    "probcover": ("#4b0082", "8"),
    "adre": ("#ff1493", "x"),
}
# colors for functions registered outside robustal (chosen by a hash of the name)
_EXTRA_COLORS = ("#008080", "#800000", "#556b2f", "#cd853f", "#483d8b", "#2f4f4f")
_VARIANT_LINESTYLES = ("--", ":", "-.")
_VARIANT_MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def _hash(text: str) -> int:
    """A stable hash (Python's `hash` of a string changes from one process to the next)."""
    return zlib.crc32(text.encode())


def function_style(label: str) -> dict[str, str]:
    """The matplotlib style (``color``, ``linestyle``, ``marker``) of acquisition function
    `label`: a registered name (``"dre"``) or a name with options (``"dre (quota=proportional)"``).

    Plain functions draw solid lines; a function with options gets its function's color, a
    dashed, dotted or dash-dotted line and a marker chosen by its options (two option sets of
    one function can, rarely, share a style; never with the plain function).
    """
    name, _, options = label.partition(" (")
    color, marker = _STYLES.get(name, (_EXTRA_COLORS[_hash(name) % len(_EXTRA_COLORS)], "o"))
    if not options:
        return {"color": color, "linestyle": "-", "marker": marker}
    variant = _hash(options)
    linestyle = _VARIANT_LINESTYLES[variant % len(_VARIANT_LINESTYLES)]
    markers = [m for m in _VARIANT_MARKERS if m != marker]
    marker = markers[variant // len(_VARIANT_LINESTYLES) % len(markers)]
    return {"color": color, "linestyle": linestyle, "marker": marker}
