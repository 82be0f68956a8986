"""Dense search with filters that still fill k.

A graph walk that post-filters a fixed candidate list comes back short when few rows pass the filter.
So the plan depends on how many rows can match:

- no filter: walk the graph (tombstones skipped through a bitmap of visible positions);
- few (at most :func:`exact_threshold`): score exactly over just those rows' vectors;
- many, ACL only: walk the graph with a bitmap of the allowed positions (faiss ``IDSelectorBitmap``,
  built from in-memory ACL postings), widened by :func:`filtered_ef` so that it keeps its recall;
- many, with ``where``: walk with the ACL bitmap, check candidates against SQLite, and grow the
  candidate list until k pass.

``where`` counts come from SQLite over indexed columns (``document_id``, the metadata table), capped at
the threshold + 1 rows so that counting stays cheap. Any graph result that is short of what the
filter allows falls back to the exact scan, which is always right.
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass

import numpy as np

from aifab.stores.embedded import sql
from aifab.stores.embedded.ann import AnnIndex
from aifab.stores.protocol import Filter

Result = tuple[np.ndarray, np.ndarray]  # (scores, record keys), best first

# Measured here (2 cores, 384-d, benchmarks/README.md): an exact scan costs ~0.35 us per row at scattered
# positions (gathering 1.5 KB a row dominates); a graph walk costs ~5-8 us per unit of efSearch.
SCAN_ROWS_PER_EF = 16
MAX_FILTERED_EF = 4096


def filtered_ef(ef: int, k: int, share: float) -> int:
    """efSearch for a walk where only ``share`` of the positions may be returned. The walk stops after
    ~ef candidates whatever they are, so it meets ~ef*share allowed ones. Widening by 1/sqrt(share) kept
    recall@10 at 1M rows (M=32, efConstruction=128, ef=128) at .985 unfiltered, .993 / .977 / .945 for
    10% / 3% / 1% of the rows allowed, for 2.7x / 4.5x / 7.4x the unfiltered walk's time (measured)."""
    return int(min(MAX_FILTERED_EF, max(ef, k) / math.sqrt(max(share, 1e-6))))


def exact_threshold(size: int, ef: int) -> int:
    """Allowed rows below which an exact scan costs less than the filtered walk. Scanning m of ``size``
    rows costs ~m; the walk costs ~SCAN_ROWS_PER_EF * ef * sqrt(size / m) (see :func:`filtered_ef`);
    they are equal at m = (SCAN_ROWS_PER_EF * ef) ** (2/3) * size ** (1/3): ~13,000 rows for ef = 128
    at a million rows, ~6,000 at 100,000."""
    return int((SCAN_ROWS_PER_EF * ef) ** (2 / 3) * max(size, 1) ** (1 / 3))


@dataclass
class _Allowed:
    """The visible positions an ACL filter lets through: sorted ``positions`` when few (from the
    postings, nothing proportional to the namespace), else a ``mask`` over every position."""

    count: int
    positions: np.ndarray | None = None
    mask: np.ndarray | None = None

    @classmethod
    def of(cls, ann: AnnIndex, acl: frozenset[str] | None, limit: int) -> _Allowed:
        if acl is None:
            return cls(ann.visible_count, mask=ann.visible.view)
        pos = ann.acl_positions(acl, limit)
        if pos is not None:
            return cls(len(pos), positions=pos)
        mask = ann.acl_mask(acl)
        return cls(int(np.count_nonzero(mask)), mask=mask)

    def every(self) -> np.ndarray:
        if self.positions is not None:
            return self.positions
        assert self.mask is not None
        return np.flatnonzero(self.mask)

    def keep(self, pos: np.ndarray) -> np.ndarray:
        if self.positions is not None:
            return pos[np.isin(pos, self.positions, assume_unique=True)]
        assert self.mask is not None
        return pos[self.mask[pos]]


def vector_search(ann: AnnIndex, conn: sqlite3.Connection, t: str, q: np.ndarray, k: int, f: Filter | None, *,
                  ef: int, exact_max_rows: int | None = None) -> Result:
    """The ``k`` best visible records for the unit vector ``q`` that pass ``f``. The caller holds the
    store's read lock, so the graph and SQLite describe the same state. ``exact_max_rows`` overrides
    :func:`exact_threshold` (tests set 0 to walk the graph always)."""
    if ann.visible_count == 0:
        return _keys(ann, np.empty(0, np.float32), np.empty(0, np.int64))
    limit = exact_threshold(ann.size, ef) if exact_max_rows is None else exact_max_rows
    acl = f.acl if f is not None else None
    allowed = _Allowed.of(ann, acl, limit)
    selector = allowed.mask if acl is not None else None  # None: the graph's own bitmap of visible positions
    if f is not None and f.where:
        cond, params = sql.where_sql(t, f)
        rows = conn.execute(f"SELECT key FROM {t}_rec r WHERE {cond} LIMIT ?", [*params, limit + 1]).fetchall()
        if len(rows) <= limit:
            return _exact(ann, q, k, allowed.keep(ann.positions(r[0] for r in rows)))
        if allowed.count <= limit:  # many rows pass `where`, few pass the ACL: check those few in SQLite
            return _exact(ann, q, k, _passing(ann, conn, t, allowed.every(), cond, params))
        return _post_filtered(ann, conn, t, q, k, allowed, selector, cond, params, ef=ef)
    if acl is not None and allowed.count <= limit:
        return _exact(ann, q, k, allowed.every())
    scores, pos = ann.search(q, k, filtered_ef(ef, k, allowed.count / ann.size), selector)
    if len(pos) < min(k, allowed.count):
        return _exact(ann, q, k, allowed.every())
    return _keys(ann, scores, pos)


def _post_filtered(ann: AnnIndex, conn: sqlite3.Connection, t: str, q: np.ndarray, k: int, allowed: _Allowed,
                   selector: np.ndarray | None, cond: str, params: list[object], *, ef: int) -> Result:
    """Many rows pass ``where`` and the ACL: walk the graph for growing candidate lists and keep the
    candidates SQLite accepts, until k pass."""
    walk_ef = filtered_ef(ef, k, allowed.count / ann.size)
    fetch = 4 * k
    while True:
        scores, pos = ann.search(q, fetch, max(walk_ef, fetch), selector)
        keep = np.isin(pos, _passing(ann, conn, t, pos, cond, params))
        if keep.sum() >= k:
            return _keys(ann, scores[keep][:k], pos[keep][:k])
        if len(pos) < fetch or fetch >= ann.visible_count:
            break
        fetch *= 4
    # The graph ran dry before k passed (rare): score every matching row exactly.
    rows = conn.execute(f"SELECT key FROM {t}_rec r WHERE {cond}", params).fetchall()
    return _exact(ann, q, k, allowed.keep(ann.positions(r[0] for r in rows)))


def _passing(ann: AnnIndex, conn: sqlite3.Connection, t: str, pos: np.ndarray, cond: str,
             params: list[object]) -> np.ndarray:
    """The positions among ``pos`` whose records pass the SQL condition ``cond``."""
    passing: list[int] = []
    for part in sql.chunked(ann.keys.view[pos].tolist()):
        passing += (r[0] for r in conn.execute(
            f"SELECT key FROM {t}_rec r WHERE key IN ({sql.placeholders(len(part))}) AND {cond}", [*part, *params]))
    return ann.positions(sorted(passing))


def _exact(ann: AnnIndex, q: np.ndarray, k: int, pos: np.ndarray) -> Result:
    return _keys(ann, *ann.exact(q, k, pos))


def _keys(ann: AnnIndex, scores: np.ndarray, pos: np.ndarray) -> Result:
    return scores, ann.keys.view[pos]
