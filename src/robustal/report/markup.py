"""Small HTML pieces of the report page: sections, paragraphs, figures (PNG files linked by a
path relative to the page)."""

from __future__ import annotations

import re
from html import escape
from pathlib import Path


def section(section_id: str, title: str, parts: list[str]) -> str:
    """A ``<section id=section_id>`` with an ``<h2>`` `title` and the HTML `parts`."""
    return f'<section id="{escape(section_id)}">\n<h2>{escape(title)}</h2>\n' + "\n".join(parts) + "\n</section>"


def heading(text: str, level: int = 3) -> str:
    """An ``<h3>`` (or `level`) heading of `text`."""
    return f"<h{level}>{escape(text)}</h{level}>"


def paragraph(text: str, css_class: str = "") -> str:
    """A ``<p>`` of `text` (escaped)."""
    attribute = f' class="{css_class}"' if css_class else ""
    return f"<p{attribute}>{escape(text)}</p>"


def figure(relative_path: str, alt: str, caption: str = "") -> str:
    """A ``<figure>`` showing the PNG at `relative_path` (relative to the page)."""
    caption_html = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{escape(relative_path)}" alt="{escape(alt)}">{caption_html}</figure>'


def preformatted(text: str) -> str:
    """A ``<pre>`` block of `text` (escaped)."""
    return f"<pre>{escape(text)}</pre>"


FIGURES_DIR = "figures"  # the PNG files, beside the page


def figure_file(out_dir: str | Path, name: str) -> tuple[Path, str]:
    """(path to write, path relative to the page) of the figure file `name` in the figures
    folder of `out_dir` (created); characters other than letters, digits, ``.-_`` become ``_``."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")
    folder = Path(out_dir) / FIGURES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    return folder / safe, f"{FIGURES_DIR}/{safe}"
