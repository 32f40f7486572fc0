"""Reading a report page back in tests: its tables (cells with text, classes and exact values),
images and sections, with the standard library's HTML parser (used by the report and study tests)."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser


@dataclass
class ParsedCell:
    text: str = ""
    header: bool = False
    classes: tuple[str, ...] = ()
    value: float | None = None
    colspan: int = 1


@dataclass
class ParsedTable:
    caption: str = ""
    head: list[list[ParsedCell]] = field(default_factory=list)
    body: list[list[ParsedCell]] = field(default_factory=list)

    def row(self, label: str) -> list[ParsedCell]:
        """The body row whose first cell reads `label`."""
        matches = [row for row in self.body if row[0].text == label]
        assert len(matches) == 1, f"{len(matches)} rows labelled {label!r} in {[r[0].text for r in self.body]}"
        return matches[0]

    def column(self, index: int) -> list[ParsedCell]:
        """The body cells at position `index` of each row."""
        return [row[index] for row in self.body]


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, ParsedTable] = {}
        self.images: list[str] = []
        self.sections: dict[str, str] = {}
        self._table: ParsedTable | None = None
        self._part: list | None = None
        self._cell: ParsedCell | None = None
        self._in_caption = False
        self._section: str | None = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "section":
            self._section = attributes.get("id")
            self.sections[self._section] = ""
        elif tag == "img":
            self.images.append(attributes["src"])
        elif tag == "table":
            self._table = self.tables.setdefault(attributes["id"], ParsedTable())
        elif tag in ("thead", "tbody") and self._table is not None:
            self._part = self._table.head if tag == "thead" else self._table.body
        elif tag == "tr" and self._part is not None:
            self._part.append([])
        elif tag in ("td", "th") and self._part is not None:
            value = attributes.get("data-value")
            self._cell = ParsedCell(
                header=tag == "th",
                classes=tuple((attributes.get("class") or "").split()),
                value=None if value is None else float(value),
                colspan=int(attributes.get("colspan", 1)),
            )
            self._part[-1].append(self._cell)
        elif tag == "caption":
            self._in_caption = True

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self._cell = None
        elif tag == "caption":
            self._in_caption = False
        elif tag == "table":
            self._table, self._part = None, None
        elif tag == "section":
            self._section = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.text += data
        elif self._in_caption and self._table is not None:
            self._table.caption += data
        if self._section is not None:
            self.sections[self._section] += data


def parse_page(html: str) -> _PageParser:
    """The page's ``tables`` (id -> ParsedTable), ``images`` (src of every img) and
    ``sections`` (id -> text)."""
    parser = _PageParser()
    parser.feed(html)
    return parser
