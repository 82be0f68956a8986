"""What every backend's lexical search does to a query before matching: words only (no query syntax),
lower-cased, de-duplicated, and English stop words dropped -- the Snowball list, the one PostgreSQL's
``english`` text search configuration drops too, so both stores search the same terms.

Stop words are in nearly every chunk: they add almost nothing to a BM25 score but make the engine rank
most of the collection (at 100k chunks, "what is the ..." cost 6x the time of the content words alone).
A query made only of stop words keeps them, so it still finds something.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+", re.UNICODE)
STOPWORDS = frozenset("""
i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers herself
it its itself they them their theirs themselves what which who whom this that these those am is are was were be
been being have has had having do does did doing a an the and but if or because as until while of at by for with
about against between into through during before after above below to from up down in out on off over under again
further then once here there when where why how all any both each few more most other some such no nor not only
own same so than too very s t can will just don should now
""".split())


def words(text: str) -> list[str]:
    """The lower-cased words of ``text``, in order, repeats kept."""
    return _WORD.findall(text.lower())


def query_terms(text: str, limit: int = 64) -> list[str]:
    """The distinct words of ``text`` to search for, in order, at most ``limit``."""
    distinct = list(dict.fromkeys(words(text)))
    content = [w for w in distinct if w not in STOPWORDS]
    return (content or distinct)[:limit]
