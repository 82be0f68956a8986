"""reStructuredText tables → rows of cell text: grid tables, simple tables, ``list-table``, ``csv-table``.

Cells spanning several columns or rows are read approximately (their text lands in the first column it
covers); the text is all there, which is what retrieval needs.
"""

from __future__ import annotations

import csv
import re

GRID_BORDER = re.compile(r"^\+(?:[-=]+\+)+\s*$")
SIMPLE_BORDER = re.compile(r"^=+(?: +=+)+\s*$")
_SPAN_UNDERLINE = re.compile(r"^-[- ]*$")
_COLUMNS = re.compile(r"=+")
_BULLET = re.compile(r"^[-*+] ?")


def grid_table(lines: list[str], start: int) -> tuple[list[list[str]], int]:
    """The rows of the grid table at ``lines[start]`` (its top border) and the index after it."""
    end = start
    while end < len(lines) and lines[end][:1] in ("+", "|"):
        end += 1
    border = lines[start].rstrip()
    bounds = [column for column, char in enumerate(border) if char == "+"]
    rows: list[list[str]] = []
    current: list[list[str]] | None = None
    for line in lines[start + 1 : end]:
        if line.startswith("+"):
            if current:
                rows.append([" ".join(parts) for parts in current])
            current = None
            continue
        cells = [line[left + 1 : right].strip(" |") for left, right in zip(bounds, bounds[1:], strict=False)]
        current = current or [[] for _ in cells]
        for parts, cell in zip(current, cells, strict=False):
            if cell:
                parts.append(cell)
    if current:
        rows.append([" ".join(parts) for parts in current])
    return rows, end


def simple_table(lines: list[str], start: int) -> tuple[list[list[str]], int]:
    """The rows of the simple table at ``lines[start]`` (its top border) and the index after it.

    The table ends at a border followed by a blank line (a border followed by text separates the header
    from the body). A row whose first column is blank continues the row above.
    """
    starts = [match.start() for match in _COLUMNS.finditer(lines[start])]
    rows: list[list[str]] = []
    index = start + 1
    while index < len(lines):
        line = lines[index]
        index += 1
        if SIMPLE_BORDER.match(line):
            if index >= len(lines) or not lines[index].strip():
                break
            continue
        if not line.strip() or _SPAN_UNDERLINE.match(line.strip()):
            continue
        cells = [line[left:right].strip() for left, right in zip(starts, [*starts[1:], None], strict=False)]
        if rows and not cells[0]:
            rows[-1] = [f"{old} {new}".strip() for old, new in zip(rows[-1], cells, strict=False)]
        else:
            rows.append(cells)
    return rows, index


def list_table(content: list[str]) -> list[list[str]]:
    """``.. list-table::`` content: a bullet list of rows, each a bullet list of cells."""
    return [[" ".join(cell) for cell in _items(row)] for row in _items(content)]


def csv_table(content: list[str], options: dict[str, str]) -> list[list[str]]:
    """``.. csv-table::`` content, with its ``:header:`` and ``:delim:`` options."""
    delimiter = {"tab": "\t", "space": " "}.get(options.get("delim", ","), options.get("delim", ",")[:1] or ",")
    rows: list[list[str]] = []
    if options.get("header"):
        rows.extend(csv.reader([options["header"]], delimiter=delimiter, skipinitialspace=True))
    rows.extend(csv.reader([line for line in content if line.strip()], delimiter=delimiter, skipinitialspace=True))
    return rows


def _items(lines: list[str]) -> list[list[str]]:
    """The items of a bullet list as their lines, marker and indentation removed."""
    items: list[list[str]] = []
    for line in lines:
        if bullet := _BULLET.match(line):
            items.append([line[bullet.end() :].strip()])
        elif items and line.strip():
            items[-1].append(line.strip())
    return items
