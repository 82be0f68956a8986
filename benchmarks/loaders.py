"""Loader benchmark: loading a file against embedding its text, and against markdown-it-py, same run.

Inputs, made in the run: ~200 KB each of reStructuredText (the Python docs' ``stdtypes.rst.txt`` when
Debian's python3.11-doc is installed, else a generated Sphinx-style file), Markdown and HTML, and a
20-page PDF written by fpdf2. Each is loaded ``--repeat`` times through ``load_document``; the best
wall-clock and CPU (``process_time``) times are reported: on a machine shared with other work the CPU
time is the honest cost, the wall time what a user waited.

Baselines:

1. embedding the loaded text with the default embedder (all-MiniLM-L6-v2 through sentence-transformers,
   from its package, no network) in 1,000-character pieces (about its 256-token window): 32 pieces are
   timed and the time scaled to the whole text. Loading should be a small fraction of this.
2. markdown-it-py (CommonMark + tables, the parser behind rich and MyST) parsing the same Markdown: the
   cost of a full syntax tree, which the loader's line-based parser avoids.

Run:  .venv/bin/python benchmarks/loaders.py [--repeat 5] [--no-embed]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from aifab.corpus.loaders import load_document

PYTHON_DOCS = Path("/usr/share/doc/python3.11/html/_sources/library/stdtypes.rst.txt")
TARGET = 200_000

RST_SECTION = """Section {n}
==========={underline}

.. function:: transform_{n}(data, *, strict=False)

   Return a copy of *data* with every :class:`str` normalised, as described in
   :ref:`the overview <overview-{n}>`. Raises :exc:`ValueError` when ``strict`` is true.

   .. versionchanged:: 3.{n}
      Added the *strict* parameter.

   Example::

      >>> transform_{n}(["a", "b"])
      ['a', 'b']

* one item with ``code``
* another item that wraps over
  two lines

.. note::

   A note about section {n}, long enough to look like the prose of real documentation pages.

"""
MD_SECTION = """## Section {n}

`transform_{n}(data, strict=False)` returns a copy of *data* with every `str` normalised, as described in
[the overview](#overview-{n}). It raises **ValueError** when `strict` is true.

```python
>>> transform_{n}(["a", "b"])
['a', 'b']
```

- one item with `code`
- another item that wraps over
  two lines

| Parameter | Default |
|-----------|---------|
| strict    | False   |

"""
HTML_SECTION = """<h2>Section {n}</h2><p><code>transform_{n}(data, strict=False)</code> returns a copy of
<em>data</em> with every <code>str</code> normalised, as described in <a href="#o">the overview</a>.</p>
<pre>&gt;&gt;&gt; transform_{n}(["a", "b"])
['a', 'b']</pre><ul><li>one item with <code>code</code></li><li>another item</li></ul>
<table><tr><th>Parameter</th><th>Default</th></tr><tr><td>strict</td><td>False</td></tr></table>
"""


def repeated(section: str) -> str:
    parts, size, n = [], 0, 0
    while size < TARGET:
        n += 1
        part = section.format(n=n, underline="=" * len(str(n)))
        parts.append(part)
        size += len(part)
    return "".join(parts)


def inputs() -> dict[str, tuple[str, bytes]]:
    from fpdf import FPDF

    rst = PYTHON_DOCS.read_bytes() if PYTHON_DOCS.exists() else repeated(RST_SECTION).encode()
    html = f"<!DOCTYPE html><html><head><title>T</title></head><body><nav>menu</nav><main>{repeated(HTML_SECTION)}</main></body></html>"
    pdf = FPDF()
    pdf.set_font("Helvetica", size=11)
    for _ in range(20):
        pdf.add_page()
        for _ in range(6):
            pdf.multi_cell(0, 5, "Loading has to stay cheap next to embedding. " * 12)
            pdf.ln(4)
    return {
        "stdtypes.rst.txt" if PYTHON_DOCS.exists() else "generated.rst": ("rst", rst),
        "generated.md": ("md", repeated(MD_SECTION).encode()),
        "generated.html": ("html", html.encode()),
        "20 pages.pdf": ("pdf", bytes(pdf.output())),
    }


def best_ms(function: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Best wall-clock and best CPU milliseconds over ``repeat`` calls."""
    wall, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        function()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return min(wall) * 1000, min(cpu) * 1000


def embedding_ms_per_char(text: str) -> float:
    from sentence_transformers import SentenceTransformer

    from aifab.registry.defaults import DEFAULTS, locate

    model = SentenceTransformer(str(locate(DEFAULTS[1])), device="cpu")
    pieces = [text[start : start + 1000] for start in range(0, len(text), 1000)][:32]
    model.encode(pieces[:4])  # warm-up
    return best_ms(lambda: model.encode(pieces, batch_size=32), 3)[0] / sum(len(piece) for piece in pieces)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-embed", action="store_true", help="skip the embedding baseline")
    args = parser.parse_args()
    files = inputs()
    loaded = {name: load_document(data, name, max_bytes=1 << 30) for name, (_, data) in files.items()}
    per_char = None if args.no_embed else embedding_ms_per_char(next(iter(loaded.values())).text)
    print(f"{'file':<18} {'KB':>5} {'load wall ms':>12} {'load CPU ms':>11} {'embed wall ms':>13} {'load/embed':>10}")
    for name, (_, data) in files.items():
        wall, cpu = best_ms(lambda data=data, name=name: load_document(data, name, max_bytes=1 << 30), args.repeat)
        embed = per_char * len(loaded[name].text) if per_char else float("nan")
        print(f"{name:<18} {len(data) / 1024:>5.0f} {wall:>12.1f} {cpu:>11.1f} {embed:>13.0f} {wall / embed:>10.1%}")
    from markdown_it import MarkdownIt

    markdown = files["generated.md"][1]
    parser_it = MarkdownIt("commonmark").enable("table")
    ours = best_ms(lambda: load_document(markdown, "generated.md", max_bytes=1 << 30), args.repeat)[1]
    theirs = best_ms(lambda: parser_it.parse(markdown.decode()), args.repeat)[1]
    print(f"\nMarkdown, {len(markdown) / 1024:.0f} KB, CPU ms: load_document {ours:.1f} (decode, parse, normalise); "
          f"markdown-it-py parse alone {theirs:.1f}; ratio {ours / theirs:.2f}")


if __name__ == "__main__":
    main()
