"""CSV and TSV → one table block per row, written ``"column: value; column: value"``.

Each row names its columns, so a chunk that holds a few rows can be understood, and cited, without the
header. The first row is the header (a missing or empty name becomes "column N"); the delimiter is
sniffed from the start of the file (tab for ``.tsv`` when sniffing fails). Empty values are left out of
a row's text; blank rows are skipped. ``metadata``: ``rows`` (data rows read) and ``columns``.
"""

from __future__ import annotations

import csv
import io

from aifab.corpus.loaders.build import DocumentBuilder
from aifab.corpus.loaders.text import TextLoader
from aifab.errors import InvalidDocument

_SNIFF_BYTES = 16_384


class CsvLoader(TextLoader):
    formats: tuple[str, ...] = ("csv",)

    def parse(self, text: str, builder: DocumentBuilder) -> None:
        try:
            rows = [row for row in csv.reader(io.StringIO(text), _dialect(text)) if any(cell.strip() for cell in row)]
        except csv.Error as error:
            raise InvalidDocument(f"malformed CSV ({error})") from None
        if not rows:
            return
        header = [name.strip() or f"column {number}" for number, name in enumerate(rows[0], start=1)]
        if len(rows) == 1:
            builder.table([header])  # a header alone is all the file says
        for row in rows[1:]:
            names = header + [f"column {number}" for number in range(len(header) + 1, len(row) + 1)]
            builder.record("; ".join(f"{name}: {value.strip()}" for name, value in zip(names, row, strict=False) if value.strip()))
        builder.metadata.update(rows=len(rows) - 1, columns=header)


def _dialect(text: str) -> type[csv.Dialect] | csv.Dialect:
    sample = text[:_SNIFF_BYTES]
    sample = sample[: sample.rfind("\n") + 1] or sample  # whole lines only: a cut line misleads the sniffer
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        return csv.excel_tab if sample.count("\t") > sample.count(",") else csv.excel
