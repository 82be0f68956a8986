"""Markdown (CommonMark block structure plus GitHub tables) → blocks.

Handled: ATX (``# Title``) and setext (underlined) headings, fenced and indented code (one code block
each, whitespace exact), bullet and ordered lists (nested), block quotes, pipe tables, YAML/TOML front
matter (skipped; its ``title:`` is the fallback title), HTML blocks (tags stripped, comments dropped),
link reference definitions (dropped). Inline markup is reduced to its text: ``[text](url)`` → text,
``**bold**`` → bold, `` `code` `` → code.

Not handled: lazy continuation inside block quotes beyond paragraphs, list items that interrupt a
paragraph without a blank line in every CommonMark corner case, and HTML blocks' inner structure.
"""

from __future__ import annotations

import html
import re

from aifab.corpus.loaders.build import DocumentBuilder
from aifab.corpus.loaders.markup import (
    TAB_WIDTH,
    BlockParser,
    Prose,
    indent_of,
    indented_block,
    strip_columns,
)
from aifab.corpus.loaders.text import TextLoader

_FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})(.*)$")
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_THEMATIC = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_LIST_ITEM = re.compile(r"^( {0,3})([-*+]|\d{1,9}[.)])([ \t]+|$)")
_QUOTE = re.compile(r"^ {0,3}> ?")
_TABLE_DELIMITER = re.compile(r"^ {0,3}\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$")
_HTML_BLOCK = re.compile(r"^ {0,3}</?[a-zA-Z][\w-]*(?:[\s/>]|$)")
_HTML_COMMENT = re.compile(r"^ {0,3}<!--")
_LINK_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:[ \t]*\S+")
_FRONT_MATTER_TITLE = re.compile(r"^title\s*[:=]\s*[\"']?(.*?)[\"']?\s*$", re.MULTILINE)
_CELL_SPLIT = re.compile(r"(?<!\\)\|")
_TAG = re.compile(r"<[^>]*>")

_INLINE = re.compile(
    # The look-ahead lets the engine skip, in one test, the positions where no markup can start.
    r"(?=[`!\[<*_~\\])(?:"
    r"(?P<ticks>`+)(?P<code>.+?)(?P=ticks)"
    r"|!\[(?P<alt>[^\]]*)\](?:\([^)]*\)|\[[^\]]*\])"
    r"|\[(?P<link>[^\]]+)\](?:\([^)]*\)|\[[^\]]*\])"
    r"|<(?P<url>(?:https?|ftp|mailto):[^>\s]+)>"
    r"|(?P<stars>\*\*|__)(?=\S)(?P<strong>.+?)(?<=\S)(?P=stars)"
    r"|(?<![\w*])\*(?=[^\s*])(?P<em>.+?)(?<=[^\s*])\*(?![\w*])"
    r"|(?<![\w_])_(?=[^\s_])(?P<em2>.+?)(?<=[^\s_])_(?![\w_])"
    r"|~~(?P<struck>.+?)~~"
    r"|</?[A-Za-z][\w-]*(?:\s[^<>]*)?/?>"
    r"|\\(?P<escaped>[!-/:-@\[-`{-~]))",
    re.DOTALL,  # a paragraph's lines are joined by then, and emphasis may span them
)


def reduce_inline(text: str) -> str:
    """Markdown inline markup → its visible text."""
    if not _INLINE_HINT.search(text):
        return text
    text = _INLINE.sub(_inline_text, text)
    return html.unescape(text) if "&" in text else text


_INLINE_HINT = re.compile(r"[`*_\[<\\~&!]")


def _inline_text(match: re.Match[str]) -> str:
    if match.group("code") is not None:
        return match.group("code").strip()
    if match.group("escaped") is not None:
        return match.group("escaped")
    if match.group("url") is not None:
        return match.group("url")
    for name in ("alt", "link", "strong", "em", "em2", "struck"):
        if match.group(name) is not None:
            return reduce_inline(match.group(name))
    return ""  # an inline HTML tag


class MarkdownLoader(TextLoader):
    formats: tuple[str, ...] = ("md",)

    def parse(self, text: str, builder: DocumentBuilder) -> None:
        lines = text.split("\n")
        start = _front_matter_end(lines)
        if start:
            title = _FRONT_MATTER_TITLE.search("\n".join(lines[1 : start - 1]))
            builder.title = title.group(1) if title else None
        _Parser(builder).parse(lines[start:], Prose(builder))


def _front_matter_end(lines: list[str]) -> int:
    """The index after YAML (``---``) or TOML (``+++``) front matter, 0 if there is none."""
    if not lines or lines[0].rstrip() not in ("---", "+++"):
        return 0
    closers = ("---", "...") if lines[0].startswith("-") else ("+++",)
    for index in range(1, min(len(lines), 200)):
        if lines[index].rstrip() in closers:
            return index + 1
    return 0


class _Parser(BlockParser):
    def _block(self, lines: list[str], index: int, prose: Prose) -> int:
        line = lines[index]
        if not line.strip():
            return index + 1
        if fence := _FENCE.match(line):
            if not (fence.group(2)[0] == "`" and "`" in fence.group(3)):
                return self._fenced_code(lines, index, fence, prose)
        if heading := _ATX.match(line):
            self.builder.heading(reduce_inline(heading.group(2) or ""), len(heading.group(1)))
            return index + 1
        if _THEMATIC.match(line) or _LINK_DEFINITION.match(line):
            return index + 1
        if _QUOTE.match(line):
            return self._quote(lines, index, prose)
        if item := _LIST_ITEM.match(line):
            return self._list_item(lines, index, item, prose)
        if indent_of(line) >= 4:
            end = indented_block(lines, index, 4)
            prose.before_block()
            self.builder.code("\n".join(strip_columns(code, 4) for code in lines[index:end]))
            return end
        if _HTML_COMMENT.match(line):
            return _comment_end(lines, index)
        if _HTML_BLOCK.match(line):
            return self._html_block(lines, index, prose)
        if "|" in line and index + 1 < len(lines) and "|" in lines[index + 1]:
            if _TABLE_DELIMITER.match(lines[index + 1]):
                return self._table(lines, index, prose)
        return self._paragraph(lines, index, prose)

    def _fenced_code(self, lines: list[str], index: int, fence: re.Match[str], prose: Prose) -> int:
        indent, marker = len(fence.group(1)), fence.group(2)
        closing = re.compile(rf"^ {{0,3}}{re.escape(marker[0])}{{{len(marker)},}}[ \t]*$")
        end = index + 1
        while end < len(lines) and not closing.match(lines[end]):
            end += 1
        prose.before_block()
        # CommonMark: content loses as much indentation as the opening fence had, no more.
        self.builder.code("\n".join(strip_columns(line, min(indent, indent_of(line))) for line in lines[index + 1 : end]))
        return end + 1

    def _quote(self, lines: list[str], index: int, prose: Prose) -> int:
        inner: list[str] = []
        end = index
        while end < len(lines) and lines[end].strip():
            quoted = _QUOTE.match(lines[end])
            inner.append(lines[end][quoted.end() :] if quoted else lines[end])  # lazy continuation
            end += 1
        self.parse(inner, prose)
        return end

    def _list_item(self, lines: list[str], index: int, item: re.Match[str], prose: Prose) -> int:
        marker = item.group(2)
        spacing = len(item.group(3).expandtabs(TAB_WIDTH))
        # Content starts after the marker and its spaces, unless they are 5+ (then it is indented code).
        content = len(item.group(1)) + len(marker) + (spacing if 1 <= spacing <= 4 else 1)
        body = [lines[index][item.end() :]]
        end = index + 1
        while end < len(lines):
            line = lines[end]
            if line.strip():
                if indent_of(line) >= content:
                    body.append(strip_columns(line, content))
                elif body[-1].strip() and not _LIST_ITEM.match(line) and not _starts_block(line):
                    body.append(line.strip())  # lazy continuation of the item's paragraph
                else:
                    break
            elif indented_block(lines, end, content) == end:
                break  # blank line, then something not indented: the item has ended
            else:
                body.append("")
            end += 1
        self.parse(body, prose.item("-" if marker[0] in "-*+" else marker[:-1] + "."))
        return end

    def _html_block(self, lines: list[str], index: int, prose: Prose) -> int:
        end = index
        while end < len(lines) and lines[end].strip():
            end += 1
        # Text after a tag on the block's lines is raw HTML to CommonMark, but authors write Markdown there.
        text = reduce_inline(_TAG.sub(" ", "\n".join(lines[index:end])))
        if text.strip():
            prose.paragraph(text)
        return end

    def _table(self, lines: list[str], index: int, prose: Prose) -> int:
        rows = [_cells(lines[index])]
        end = index + 2
        while end < len(lines) and lines[end].strip() and "|" in lines[end]:
            rows.append(_cells(lines[end]))
            end += 1
        prose.before_block()
        self.builder.table(rows)
        return end

    def _paragraph(self, lines: list[str], index: int, prose: Prose) -> int:
        end = index + 1
        while end < len(lines):
            line = lines[end]
            if underline := _SETEXT.match(line):
                self.builder.heading(reduce_inline(" ".join(lines[index:end])), 1 if underline.group(1)[0] == "=" else 2)
                return end + 1
            if not line.strip() or _starts_block(line):
                break
            end += 1
        prose.paragraph(reduce_inline("\n".join(line.strip() for line in lines[index:end])))
        return end


def _starts_block(line: str) -> bool:
    """Whether ``line`` interrupts a paragraph (CommonMark: headings, fences, breaks, quotes, lists)."""
    if _ATX.match(line) or _FENCE.match(line) or _THEMATIC.match(line) or _QUOTE.match(line):
        return True
    item = _LIST_ITEM.match(line)
    return bool(item and line[item.end() :].strip() and item.group(2)[0] in "-*+1")


def _comment_end(lines: list[str], index: int) -> int:
    end = index
    while end < len(lines) and "-->" not in lines[end]:
        end += 1
    return end + 1


def _cells(row: str) -> list[str]:
    row = row.strip()
    row = row[1:] if row.startswith("|") else row
    row = row[:-1] if row.endswith("|") and not row.endswith("\\|") else row
    return [reduce_inline(cell.strip().replace("\\|", "|")) for cell in _CELL_SPLIT.split(row)]
