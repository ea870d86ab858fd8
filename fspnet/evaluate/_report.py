"""Self-contained HTML reports (PNG figures inlined as base64), PNG files and CSV tables.

Every file is written atomically, so a report folder never holds half a figure.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
import os
import typing as tp
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

from runtools.io import atomic_path, write_text

__all__ = ["Report", "fmt", "mark", "write_csv"]


def fmt(value: tp.Any, digits: int = 4) -> str:
    """A number as a short string (``-`` for None/NaN), anything else with ``str``."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int,)) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float) or hasattr(value, "dtype"):
        v = float(value)
        if math.isnan(v):
            return "-"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.{digits - 1}e}"
        return f"{v:.{digits}g}"
    return str(value)


def write_csv(path: str | os.PathLike[str], header: tp.Sequence[str], rows: tp.Iterable[tp.Sequence[tp.Any]]) -> None:
    """Write a CSV table atomically (floats with 8 significant digits)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(list(header))
    for row in rows:
        writer.writerow([f"{v:.8g}" if isinstance(v, float) else v for v in row])
    write_text(path, buf.getvalue())


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;
color:#222;line-height:1.4;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #eee;margin:.4em 0}
.note{color:#555;font-size:.9em}.pass{color:#1a7f37;font-weight:600}.fail{color:#b42318;font-weight:600}
nav a{margin-right:1em}code{background:#f6f6f6;padding:0 .2em}
"""


class Report:
    """An HTML document built section by section; figures are saved as PNG and inlined.

    Args:
        out_dir: folder for the PNG files (and where :meth:`write` puts the HTML by default).
        title: page title.
    """

    def __init__(self, out_dir: str | os.PathLike[str], title: str) -> None:
        self.out_dir = Path(out_dir)
        self.title = title
        self._body: list[str] = []
        self._toc: list[tuple[str, str]] = []
        self.figures: list[Path] = []

    def section(self, anchor: str, title: str) -> None:
        """Start a section (listed in the page's table of contents)."""
        self._toc.append((anchor, title))
        self._body.append(f'<h2 id="{html.escape(anchor)}">{html.escape(title)}</h2>')

    def text(self, text: str, note: bool = False) -> None:
        """A paragraph of plain text (escaped)."""
        cls = ' class="note"' if note else ""
        self._body.append(f"<p{cls}>{html.escape(text)}</p>")

    def raw(self, markup: str) -> None:
        """Trusted HTML made by this package."""
        self._body.append(markup)

    def table(self, header: tp.Sequence[str], rows: tp.Iterable[tp.Sequence[tp.Any]], caption: str | None = None) -> None:
        """A table; cells are formatted with :func:`fmt` and escaped (``<b>`` marks survive via ``raw`` only)."""
        parts = ["<table>"]
        if caption:
            parts.append(f"<caption>{html.escape(caption)}</caption>")
        parts.append("<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr>")
        for row in rows:
            cells = []
            for v in row:
                if isinstance(v, _Mark):
                    cells.append(f'<td class="{v.cls}">{html.escape(v.text)}</td>')
                else:
                    cells.append(f"<td>{html.escape(fmt(v))}</td>")
            parts.append("<tr>" + "".join(cells) + "</tr>")
        parts.append("</table>")
        self._body.append("".join(parts))

    def figure(self, fig: tp.Any, name: str, caption: str = "", dpi: int = 90) -> Path:
        """Save ``fig`` as ``<out_dir>/<name>.png`` (atomically), inline it, and close it."""
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi)
        plt.close(fig)
        data = buf.getvalue()
        path = self.out_dir / f"{name}.png"
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
        self.figures.append(path)
        b64 = base64.b64encode(data).decode("ascii")
        self._body.append(f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{b64}">')
        if caption:
            self._body.append(f'<figcaption class="note">{html.escape(caption)}</figcaption>')
        self._body.append("</figure>")
        return path

    def render(self) -> str:
        """The complete HTML document."""
        nav = "".join(f'<a href="#{html.escape(a)}">{html.escape(t)}</a>' for a, t in self._toc)
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{html.escape(self.title)}</h1><nav>{nav}</nav>" + "\n".join(self._body) + "</body></html>\n"
        )

    def write(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the HTML atomically (default ``<out_dir>/report.html``) and return its path."""
        target = Path(path) if path is not None else self.out_dir / "report.html"
        write_text(target, self.render())
        return target


class _Mark:
    """A table cell shown as pass/fail."""

    def __init__(self, text: str, ok: bool | None) -> None:
        self.text = text
        self.cls = "" if ok is None else ("pass" if ok else "fail")


def mark(ok: bool | None, text: str | None = None) -> _Mark:
    """A pass/fail cell: green ``pass`` / red ``fail`` (or ``text``), plain for ``None``."""
    if text is None:
        text = "-" if ok is None else ("pass" if ok else "fail")
    return _Mark(text, ok)
