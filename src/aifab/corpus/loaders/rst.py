"""reStructuredText (and Sphinx, as in the Python documentation) → blocks.

Handled: section titles by adornment (underline, or over- and underline; levels in order of first
appearance, as docutils does), paragraphs, literal blocks after ``::``, doctest blocks, bullet,
enumerated, field and definition lists, block quotes, grid and simple tables, and directives:

- code (``code-block``, ``code``, ``sourcecode``, ``testcode``, ``doctest``, ...) → one code block;
- admonitions and version notes (``note``, ``warning``, ``versionadded``, ``deprecated``, ...) → their
  prose, led by "Note:", "Added in version 3.2:" ...;
- object descriptions (``function``, ``class``, ``py:method``, ...) → the signature, then the prose;
- ``list-table`` and ``csv-table`` → table blocks;
- navigation and machinery (``toctree``, ``index``, ``image``, ``raw``, ``auto*`` ...) → dropped;
- any other directive → its argument and its content, read as reStructuredText.

Comments, hyperlink targets and substitution definitions are dropped. Inline markup is reduced to the
text a reader sees: ``:func:`os.path.join``` → "os.path.join()", ``:ref:`text <label>``` → "text",
````literal```` → "literal". Tabs are expanded to 8 columns first, as docutils does (code included).
"""

from __future__ import annotations

import re

from aifab.corpus.loaders import rst_tables
from aifab.corpus.loaders.build import DocumentBuilder
from aifab.corpus.loaders.markup import BlockParser, Prose, dedent, indented_block
from aifab.corpus.loaders.text import TextLoader

_ADORNMENT = re.compile(r"^([!-/:-@\[-`{-~])\1+\s*$")
_EXPLICIT = re.compile(r"^\.\.(?:\s|$)")
_DIRECTIVE = re.compile(r"^\.\.\s+(\w[\w:.+-]*)::(?:\s+(.*))?$")
_FOOTNOTE = re.compile(r"^\.\.\s+\[([^\]]+)\](?:\s+(.*))?$")
_OPTION = re.compile(r"^:([\w-]+):(?:\s+(.*))?$")
_BULLET = re.compile(r"^[-*+•‣⁃](?:\s+|$)")
_ENUMERATOR = r"(?:\d+|#|[a-zA-Z]|[ivxlcdm]+|[IVXLCDM]+)"
_ENUMERATED = re.compile(rf"^(?:({_ENUMERATOR})[.)]|\(({_ENUMERATOR})\))(?:\s+|$)")
_FIELD = re.compile(r"^:([^:`\s][^:`]*):(?:\s+|$)")
_TARGET_TEXT = re.compile(r"^(.*?)\s*<[^<>]+>$", re.DOTALL)

_MARKUP = (
    r"``(?P<literal>.+?)``"
    r"|(?::(?P<role>[\w.+:-]+):)?`(?P<text>[^`]+)`(?::[\w.+:-]+:)?(?:__?)?"
    r"|\*\*(?P<strong>[^\s*](?:.*?[^\s\\])?)\*\*"
    r"|(?<![\w*\\])\*(?P<em>[^\s*](?:[^*]*?[^\s*\\])?)\*(?![\w*])"
    r"|[ ]?\[(?:\d+|#[\w-]*|\*)\]_"  # a footnote reference, with the space before it
    r"|\\(?P<escaped>.)"
)
# The look-ahead lets the engine skip, in one test, the positions where no markup can start. Named
# references (``prog_``) can start at any word, which costs a test per word: that pattern is used only
# on text where a word is followed by an underscore and no word character.
_INLINE = re.compile(rf"(?=[`:*\[\\]| \[)(?:{_MARKUP})", re.DOTALL)
_INLINE_AND_REFERENCES = re.compile(
    rf"(?=[`:*\[\\\w]| \[)(?:{_MARKUP}|(?<![\w\\])(?P<reference>[^\W_](?:[\w.+-]*[^\W_])?)__?(?!\w))", re.DOTALL
)
_REFERENCE_HINT = re.compile(r"[^\W_]__?(?!\w)")
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_CALLABLE_ROLES = frozenset({"func", "meth", "py:func", "py:meth"})

_CODE = frozenset(
    {"code-block", "code", "sourcecode", "testcode", "testoutput", "doctest", "parsed-literal",
     "productionlist", "math", "highlight-block"}
)
_DROPPED = frozenset(
    {"toctree", "index", "include", "literalinclude", "raw", "image", "highlight", "highlightlang",
     "currentmodule", "module", "moduleauthor", "sectionauthor", "codeauthor", "contents", "tabularcolumns",
     "audit-event", "audit-event-table", "meta", "default-role", "role", "testsetup", "testcleanup",
     "program", "default-domain", "graphviz", "digraph", "sidebar", "only-toc", "title"}
)
_CONTENT_ONLY = frozenset(
    {"only", "ifconfig", "figure", "container", "class", "rst-class", "cssclass", "hlist", "compound",
     "tab", "tabs", "glossary", "table"}
)
_LABELS = {
    "note": "Note:", "warning": "Warning:", "tip": "Tip:", "hint": "Hint:", "important": "Important:",
    "caution": "Caution:", "attention": "Attention:", "danger": "Danger:", "error": "Error:",
    "seealso": "See also:", "todo": "To do:", "impl-detail": "CPython implementation detail:",
}
_VERSIONS = {
    "versionadded": "Added in version {}", "versionchanged": "Changed in version {}",
    "deprecated": "Deprecated since version {}", "versionremoved": "Removed in version {}",
    "deprecated-removed": "Deprecated since version {}, removed in version {}",
}
_SIGNATURES = frozenset(
    {"function", "method", "class", "attribute", "data", "exception", "decorator", "decoratormethod",
     "classmethod", "staticmethod", "coroutinefunction", "coroutinemethod", "abstractmethod", "property",
     "describe", "object", "option", "cmdoption", "envvar", "opcode", "pdbcommand", "macro", "type",
     "member", "var", "struct", "union", "enum", "enumerator", "directive", "confval", "fixer",
     "2to3fixer", "monitoring-event", "event", "c:function", "c:macro", "c:type", "c:member", "c:var"}
)
_SIGNATURE_PREFIXES = {"class": "class ", "exception": "exception ", "decorator": "@"}


def reduce_inline(text: str) -> str:
    """reStructuredText inline markup → the text a reader sees."""
    if "_" in text and _REFERENCE_HINT.search(text):
        return _INLINE_AND_REFERENCES.sub(_inline_text, text)
    if "`" not in text and "*" not in text and "\\" not in text and "]_" not in text:
        return text
    return _INLINE.sub(_inline_text, text)


def _inline_text(match: re.Match[str]) -> str:
    if match.group("literal") is not None:
        return match.group("literal")
    if match.lastgroup == "reference":
        return match.group("reference")
    if match.group("escaped") is not None:
        return _unescape(match.group())
    for name in ("strong", "em"):
        if match.group(name) is not None:
            return match.group(name)
    text = match.group("text")
    if text is None:
        return ""  # a footnote reference
    role = match.group("role") or ""
    if role == "math":
        return text
    if target := _TARGET_TEXT.match(text):
        text = target.group(1) or text
    elif text.startswith("~"):
        text = text[1:].rsplit(".", 1)[-1]
    text = _unescape(text.lstrip("!"))
    if role in _CALLABLE_ROLES and not text.endswith(")"):
        text += "()"  # Sphinx's add_function_parentheses
    return text


def _unescape(text: str) -> str:
    """Backslash escapes: ``\\*`` is a star, ``\\ `` (backslash-space) is nothing."""
    if "\\" not in text:
        return text
    return _ESCAPE.sub(lambda match: "" if match.group(1).isspace() else match.group(1), text)


class RstLoader(TextLoader):
    formats: tuple[str, ...] = ("rst",)

    def parse(self, text: str, builder: DocumentBuilder) -> None:
        _Parser(builder).parse(text.expandtabs(8).split("\n"), Prose(builder))


class _Parser(BlockParser):
    def __init__(self, builder: DocumentBuilder) -> None:
        super().__init__(builder)
        self.styles: list[tuple[str, bool]] = []  # title adornments in order of first appearance

    def _block(self, lines: list[str], index: int, prose: Prose) -> int:
        line = lines[index]
        if not line.strip():
            return index + 1
        if line[0] == " ":  # a block quote
            end = indented_block(lines, index)
            self.parse(dedent(lines[index:end]), prose)
            return end
        if (title_end := self._title(lines, index)) is not None:
            return title_end
        if _EXPLICIT.match(line):
            return self._explicit(lines, index, prose)
        if rst_tables.GRID_BORDER.match(line):
            return self._table(*rst_tables.grid_table(lines, index), prose)
        if rst_tables.SIMPLE_BORDER.match(line):
            return self._table(*rst_tables.simple_table(lines, index), prose)
        if _ADORNMENT.match(line):
            return index + 1  # a transition
        if line.startswith(">>>"):
            end = _paragraph_end(lines, index)
            prose.before_block()
            self.builder.code("\n".join(lines[index:end]))
            return end
        if bullet := _BULLET.match(line):
            return self._item(lines, index, bullet.end(), "-", prose)
        if enumerated := _ENUMERATED.match(line):
            enumerator = enumerated.group(1) or enumerated.group(2)
            return self._item(lines, index, enumerated.end(), "-" if enumerator == "#" else f"{enumerator}.", prose)
        if field := _FIELD.match(line):
            return self._item(lines, index, field.end(), "", prose.led(f"{reduce_inline(field.group(1))}:"))
        return self._paragraph(lines, index, prose)

    def _title(self, lines: list[str], index: int) -> int | None:
        """Reads a section title at ``index`` (underlined, or over- and underlined)."""
        line, following = lines[index], lines[index + 1] if index + 1 < len(lines) else ""
        over = _ADORNMENT.match(line)
        if over and following.strip() and index + 2 < len(lines):
            under = _ADORNMENT.match(lines[index + 2])
            if under and under.group(1) == over.group(1) and not _ADORNMENT.match(following):
                self._heading(following, (over.group(1), True))
                return index + 3
        under = _ADORNMENT.match(following)
        if over or not under:
            return None
        length = len(following.strip())
        if length < len(line.strip()) and length < 4:
            return None  # docutils: a short underline under longer text is not a title
        self._heading(line, (under.group(1), False))
        return index + 2

    def _heading(self, text: str, style: tuple[str, bool]) -> None:
        if style not in self.styles:
            self.styles.append(style)
        self.builder.heading(reduce_inline(text.strip()), self.styles.index(style) + 1)

    def _explicit(self, lines: list[str], index: int, prose: Prose) -> int:
        """Directives, footnotes and citations; comments, targets and substitutions are dropped."""
        end = indented_block(lines, index + 1)
        body = dedent(lines[index + 1 : end])
        if directive := _DIRECTIVE.match(lines[index]):
            self._directive(directive.group(1).lower(), directive.group(2) or "", body, prose)
        elif footnote := _FOOTNOTE.match(lines[index]):
            self.parse([footnote.group(2) or "", *body], prose.led(f"[{footnote.group(1)}]"))
        return end

    def _directive(self, name: str, argument: str, body: list[str], prose: Prose) -> None:
        short = name.rpartition(":")[2] if name.startswith(("py:", "std:", "rst:")) else name
        head, options, content = _split_body(body)
        if short in _DROPPED or short.startswith("auto"):
            return
        if short in _CODE:
            prose.before_block()
            self.builder.code("\n".join([*head, *content]))
        elif short in _SIGNATURES:
            prose.before_block()
            prefix = _SIGNATURE_PREFIXES.get(short, "")
            self.builder.paragraph("\n".join(prefix + line for line in _signatures([argument, *head])), keep_lines=True)
            self.parse(content, prose)
        elif short in _LABELS:
            self.parse([argument, *head, *content], prose.led(_LABELS[short]))
        elif short in _VERSIONS:
            self._version(short, argument, [*head, *content], prose)
        elif short == "list-table":
            self._table(rst_tables.list_table([*head, *content]), 0, prose)
        elif short == "csv-table":
            self._table(rst_tables.csv_table([*head, *content], options), 0, prose)
        elif short in _CONTENT_ONLY:
            self.parse([*head, *content], prose)
        else:  # rubric, topic, admonition, centered, an extension's directive: its words are prose
            if argument:
                prose.paragraph(reduce_inline(argument))
            self.parse([*head, *content], prose)

    def _version(self, name: str, argument: str, content: list[str], prose: Prose) -> None:
        versions = argument.split(maxsplit=2 if name == "deprecated-removed" else 1)
        count = _VERSIONS[name].count("{}")
        lead = _VERSIONS[name].format(*(versions + [""] * count)[:count])
        explanation = [" ".join(versions[count:]), *content] if len(versions) > count else content
        if any(line.strip() for line in explanation):
            self.parse(explanation, prose.led(f"{lead}:"))
        else:
            prose.paragraph(f"{lead}.")

    def _table(self, rows: list[list[str]], end: int, prose: Prose) -> int:
        prose.before_block()
        self.builder.table([[reduce_inline(cell) for cell in row] for row in rows])
        return end

    def _item(self, lines: list[str], index: int, offset: int, marker: str, prose: Prose) -> int:
        """A list item (or field, with ``marker`` "") whose text starts at column ``offset``."""
        end = indented_block(lines, index + 1)
        body = [lines[index][offset:], *dedent(lines[index + 1 : end])]
        self.parse(body, prose.item(marker) if marker else prose)
        return end

    def _paragraph(self, lines: list[str], index: int, prose: Prose) -> int:
        end = _paragraph_end(lines, index)
        if end == index + 1 and end < len(lines) and lines[end][:1] == " ":  # a definition list item
            definition_end = indented_block(lines, end)
            self.parse(dedent(lines[end:definition_end]), prose.led(f"{reduce_inline(lines[index].strip())}:"))
            return definition_end
        text = "\n".join(lines[index:end]).rstrip()
        literal = text.endswith("::")
        if literal:
            text = text[:-2].rstrip() if text[:-2].endswith((" ", "\n")) or text == "::" else text[:-1]
        if text.strip():
            prose.paragraph(reduce_inline(text))
        if literal:
            return self._literal_block(lines, end, prose)
        return end

    def _literal_block(self, lines: list[str], index: int, prose: Prose) -> int:
        while index < len(lines) and not lines[index].strip():
            index += 1
        if index >= len(lines) or lines[index][:1] != " ":
            return index
        end = indented_block(lines, index)
        prose.before_block()
        self.builder.code("\n".join(dedent(lines[index:end])))
        return end


def _signatures(lines: list[str]) -> list[str]:
    """One line per signature: a line ending in a backslash continues on the next (Sphinx)."""
    signatures: list[str] = []
    continued = False
    for line in lines:
        line = line.strip()
        if continued:
            signatures[-1] += " " + line.removesuffix("\\").strip()
        else:
            signatures.append(line.removesuffix("\\").strip())
        continued = line.endswith("\\")
    return [signature for signature in signatures if signature]


def _paragraph_end(lines: list[str], index: int) -> int:
    """The index after the run of non-blank, unindented lines starting at ``index``."""
    end = index + 1
    while end < len(lines) and lines[end].strip() and lines[end][:1] != " ":
        end += 1
    return end


def _split_body(body: list[str]) -> tuple[list[str], dict[str, str], list[str]]:
    """A directive's body → (lines before the first blank line that are not options, options, the rest).

    Whether the first lines are more arguments (a second signature) or the start of the content depends
    on the directive, so the caller decides.
    """
    head: list[str] = []
    options: dict[str, str] = {}
    index = 0
    while index < len(body) and body[index].strip():
        if option := _OPTION.match(body[index]):
            options[option.group(1)] = option.group(2) or ""
        elif body[index][:1] == " " and options:
            pass  # an option's value continued
        else:
            head.append(body[index])
        index += 1
    return head, options, body[index:]
