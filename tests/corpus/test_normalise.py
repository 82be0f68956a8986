from __future__ import annotations

import pytest

from aifab.corpus.loaders.normalise import clean, normalise_line, normalise_lines, normalise_prose


def test_clean_unifies_line_endings_and_drops_invisible_characters():
    text = "one\r\ntwo\rthree\x0cfour\x00\x07 soft\u00adhyphen zero\u200bwidth \ufeffbom\tand tab"
    assert clean(text) == "one\ntwo\nthree\nfour softhyphen zerowidth bom\tand tab"


def test_clean_composes_unicode_and_spells_out_ligatures():
    assert clean("cafe\u0301 \ufb01nd \ufb02ow") == "café find flow"


def test_clean_keeps_code_whitespace():
    code = "def f():\n    x  =  1\n\treturn x   \n"
    assert clean(code) == code


def test_normalise_lines_collapses_spaces_keeps_lines():
    assert normalise_lines("a   b\u00a0\u00a0c  \n\n  d\u2003e  ") == "a b c\n\n d e"


def test_normalise_line_puts_everything_on_one_line():
    assert normalise_line("  A\n   heading\t title ") == "A heading title"


def test_prose_joins_soft_wrapped_lines():
    assert normalise_prose("The quick brown\n  fox jumps over\nthe lazy dog.  ") == "The quick brown fox jumps over the lazy dog."


@pytest.mark.parametrize(
    ("wrapped", "joined"),
    [
        ("keeps the infor-\nmation together", "keeps the information together"),
        ("(docu-\nments)", "(documents)"),
        ("Jean-\nPaul Sartre", "Jean-Paul Sartre"),  # next line starts with a capital
        ("a state-of-\nthe-art method", "a state-of-the-art method"),  # already hyphenated
        ("send an e-\nmail", "send an e-mail"),  # one letter before the break
        ("a self-\ncontained test", "a self-contained test"),  # compound prefix
        ("COVID-\n19 cases", "COVID-19 cases"),  # digits after the break
        ("a dash -\nthen more", "a dash - then more"),  # a dash, not a hyphen
    ],
)
def test_prose_repairs_words_broken_across_lines(wrapped, joined):
    assert normalise_prose(wrapped) == joined
