"""report.html: one self-contained page beside report.md.

The same blocks as report.md (so the same numbers), the figures inline as SVG data URIs, each
failure's evidence line per mode and reason, and the iterations with links to their logs:
relative to the page when the logs are inside the outdir (the page and the logs move
together), else a file:// URL. Nothing is fetched from elsewhere.
"""

from __future__ import annotations

import base64
import os
import re
from html import escape
from pathlib import Path
from urllib.parse import quote

from harness.judge.reasons import SUCCESS
from harness.report.aggregate import Iteration
from harness.report.document import (
    Block,
    Bullets,
    Cell,
    Code,
    Heading,
    Paragraph,
    Table,
    document,
)
from harness.report.model import Summary
from harness.report.ordering import image_tag

# The figures after each section of the document.
FIGURES = {
    "modes": ("verdict", "failures", "walltimes"),
    "images": ("images",),
    "compare": ("compare",),
}
CAPTIONS = {
    "verdict": "Per mode: how often it runs, and how fast what it picks runs",
    "failures": "Outcome per selection mode",
    "walltimes": "Run time of successful runs per selection mode",
    "images": "Census: outcome per image",
    "compare": "Success rate per mode and outdir",
}
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 80em; padding: 0 1em;
       color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { padding: 0.2em 0.6em; border-bottom: 1px solid #ddd; vertical-align: top; }
th { border-bottom: 2px solid #888; }
td.r, th.r { text-align: right; white-space: nowrap; }
td.l, th.l { text-align: left; }
code { font-size: 90%; overflow-wrap: anywhere; }
td:first-child code { white-space: nowrap; }
figure { margin: 1em 0 2em; }
figure img { max-width: 100%; height: auto; }
"""
_CODE_SPAN = re.compile(r"`([^`]*)`")


def _inline(text: str) -> str:
    """Escaped text with its `code` spans as <code>."""
    parts = _CODE_SPAN.split(text)
    return "".join(f"<code>{escape(p)}</code>" if i % 2 else escape(p) for i, p in enumerate(parts))


class Raw(str):
    """A cell that is HTML already (links)."""


def _cell(cell: Cell | Raw, align: str) -> str:
    if isinstance(cell, Code):
        body = f"<code>{escape(cell.text)}</code>"
    else:
        body = cell if isinstance(cell, Raw) else escape(cell)
    return f'<td class="{align}">{body}</td>'


def _table(table: Table) -> str:
    head = "".join(
        f'<th class="{a}">{escape(h)}</th>' for h, a in zip(table.head, table.align, strict=True)
    )
    rows = [
        "<tr>" + "".join(_cell(c, a) for c, a in zip(row, table.align, strict=True)) + "</tr>"
        for row in table.rows
    ]
    if not table.rows and table.empty:
        rows.append(f'<tr><td colspan="{len(table.head)}">{escape(table.empty)}</td></tr>')
    return (
        f"<table><thead><tr>{head}</tr></thead><tbody>\n" + "\n".join(rows) + "\n</tbody></table>"
    )


def _block(block: Block) -> str:
    if isinstance(block, Heading):
        return f"<h{block.level}>{escape(block.text)}</h{block.level}>"
    if isinstance(block, Paragraph):
        return f"<p>{_inline(block.text)}</p>"
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block.items) + "</ul>"
    return _table(block)


def _figure(name: str, svg: bytes) -> str:
    data = base64.b64encode(svg).decode("ascii")
    caption = escape(CAPTIONS.get(name, name))
    return (
        f'<figure id="figure-{name}"><img alt="{caption}" src="data:image/svg+xml;base64,{data}">'
        f"<figcaption>{caption} ({name}.svg)</figcaption></figure>"
    )


def _evidence(summary: Summary) -> list[str]:
    """Every failure reason of every mode with its most frequent evidence line."""
    rows = [
        [Code(key), r, str(k), Code(m.evidence[r]) if m.evidence.get(r) else "–"]
        for key, m in summary.modes.items()
        for r, k in m.reasons.items()
        if r != SUCCESS
    ]
    if not rows:
        return []
    table = Table(["mode", "reason", "runs", "evidence (most frequent line)"], "llrl", rows)
    return ["<h2>Failures and their evidence</h2>", _table(table)]


def log_href(path: str, mode: str, root: Path, dest: Path) -> str:
    """A link to a log: relative to the page (in `dest`) when the log is inside the outdir
    (`root`; both resolved), else a file:// URL. A relative path in a record is relative to
    where the run started; the runner puts logs at OUTDIR/logs/MODE/NAME, so such a tail is
    found in the outdir."""
    p = Path(path)
    if not p.is_absolute() and p.parts[-3:-1] == ("logs", mode):
        p = root / "logs" / mode / p.name
    p = p.resolve()  # relative: against the working directory
    if p.is_relative_to(root):
        return quote(os.path.relpath(p, dest))
    return p.as_uri()


def _iteration_row(it: Iteration, root: Path, dest: Path) -> list:
    links = [
        f'<a href="{escape(log_href(p, it.mode, root, dest))}">{name}</a>'
        for name, p in (("stdout", it.stdout_path), ("stderr", it.stderr_path))
        if p
    ]
    return [
        Code(it.mode),
        str(it.iteration),
        Code(image_tag(it.image)) if it.image else "–",
        it.reason,
        Code(it.evidence) if it.evidence else "–",
        Raw(" ".join(links)) if links else "–",
    ]


def _iterations(summary: Summary, dest: Path) -> list[str]:
    parts = []
    for out in summary.outdirs:
        listed = summary.iterations.get(out.label)
        if listed is None or not listed.iterations:
            continue
        parts.append(f"<h2>Iterations of {escape(out.label)}</h2>")
        if listed.left_out:
            parts.append(
                f"<p>The first {len(listed.iterations)} are listed; {listed.left_out} more are "
                f"in <code>{escape(out.path)}/records.jsonl</code>.</p>"
            )
        root, page = Path(out.path).resolve(), dest.resolve()  # once, not per link
        rows = [_iteration_row(it, root, page) for it in listed.iterations]
        head = ["mode", "iteration", "image", "reason", "evidence", "logs"]
        parts.append(_table(Table(head, "lrllll", rows)))
    return parts


def html(summary: Summary, svgs: dict[str, bytes], dest: Path) -> str:
    """The page; `svgs` maps a figure's name to its SVG, `dest` is where the page goes."""
    body: list[str] = []
    for section in document(summary):
        if section.name == "help":
            body += _evidence(summary) + _iterations(summary, dest)
        body += [_block(b) for b in section.blocks]
        body += [_figure(n, svgs[n]) for n in FIGURES.get(section.name, ()) if n in svgs]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>Compatibility report</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
