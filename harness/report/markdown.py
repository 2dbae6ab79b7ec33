"""report.md: the document's blocks as markdown."""

from __future__ import annotations

from harness.report.document import Block, Bullets, Cell, Code, Heading, Paragraph, Table, document
from harness.report.model import Summary


def markdown(summary: Summary) -> str:
    blocks = [b for section in document(summary) for b in section.blocks]
    return "\n\n".join(_block(b) for b in blocks) + "\n"


def _block(block: Block) -> str:
    if isinstance(block, Heading):
        return "#" * block.level + " " + block.text
    if isinstance(block, Paragraph):
        return block.text
    if isinstance(block, Bullets):
        return "\n".join(f"- {item}" for item in block.items)
    return _table(block)


def _cell(cell: Cell) -> str:
    if isinstance(cell, Code):  # a pipe would end the cell, a backtick the code span
        return "`" + cell.text.replace("|", "\\|").replace("`", "'") + "`"
    return cell


def _table(table: Table) -> str:
    lines = ["| " + " | ".join(table.head) + " |"]
    lines.append("|" + "|".join("---:" if a == "r" else "---" for a in table.align) + "|")
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in table.rows]
    if not table.rows and table.empty:
        lines.append(f"| {table.empty} |" + " |" * (len(table.head) - 1))
    return "\n".join(lines)
