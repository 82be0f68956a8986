"""The in-memory ANN cache of one namespace: a faiss HNSW graph plus what the store needs around it.

faiss numbers vectors by position (0, 1, 2, … in insertion order). Around the graph we keep, per
position: the record ``key`` it holds (increasing, because keys are change-sequence values and are
added in order, so key → position is a binary search), whether queries may see it (``visible``: added
and published, not since removed or replaced), whether the record is public, and per ACL tag the
positions that carry it. faiss HNSW cannot remove a vector: a removed position becomes invisible (a
tombstone, skipped through an ``IDSelectorBitmap``) until the store rebuilds the index.

Not thread-safe by itself: the store serialises ``add``/``publish``/``tombstone`` against searches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import faiss as _faiss
import numpy as np

faiss: Any = _faiss  # faiss's bundled type stubs lack most SWIG names (SearchParametersHNSW, IDSelectorBitmap, …)

ADD_CHUNK = 512  # vectors added per hold of the exclusive lock (~0.1-0.3 s), so that queries get in between


class Growable:
    """A numpy array that grows at the end in amortised O(1)."""

    def __init__(self, dtype: Any, data: np.ndarray | None = None) -> None:
        self._a = np.array(data if data is not None else [], dtype=dtype)
        self._n = len(self._a)

    def __len__(self) -> int:
        return self._n

    @property
    def view(self) -> np.ndarray:
        return self._a[: self._n]

    def append(self, values: np.ndarray | Sequence[Any]) -> None:
        values = np.asarray(values, dtype=self._a.dtype)
        need = self._n + len(values)
        if need > len(self._a):
            grown = np.zeros(max(need, 2 * len(self._a), 1024), dtype=self._a.dtype)
            grown[: self._n] = self._a[: self._n]
            self._a = grown
        self._a[self._n : need] = values
        self._n = need


class AnnIndex:
    """HNSW over one namespace's vectors, with keys, visibility and ACL postings by position."""

    def __init__(self, dims: int, *, m: int, ef_construction: int, index: Any | None = None) -> None:
        self.dims, self.m, self.ef_construction = dims, m, ef_construction
        if index is None:
            index = faiss.IndexHNSWFlat(dims, m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = ef_construction
        self.index = index
        self.keys = Growable(np.int64)
        self.visible = Growable(np.bool_)
        self.public = Growable(np.bool_)
        self.public_positions = Growable(np.int32)  # the same, sparse: for small ACL candidate sets
        self.tags: dict[str, Growable] = {}
        self.watermark = 0  # every change with seq <= watermark is reflected here
        self.published = 0  # positions below this have been published (visible unless removed)
        self.visible_count = 0
        self._packed_visible: np.ndarray | None = None

    # -- state ------------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        return len(self.keys)

    @property
    def dead(self) -> int:
        """Published positions that no query may return any more (removed or replaced records)."""
        return self.published - self.visible_count

    def vectors(self) -> np.ndarray:
        """A zero-copy view of the stored vectors (valid until the next add)."""
        n = self.index.ntotal
        if n == 0:
            return np.empty((0, self.dims), np.float32)
        storage = faiss.downcast_index(self.index.storage)
        return faiss.rev_swig_ptr(storage.get_xb(), n * self.dims).reshape(n, self.dims)

    def positions(self, keys: Iterable[int]) -> np.ndarray:
        """Positions of the given record keys (keys not held here are left out)."""
        wanted = np.fromiter(keys, dtype=np.int64)
        have = self.keys.view
        pos = np.searchsorted(have, wanted)
        ok = pos < len(have)
        ok[ok] = have[pos[ok]] == wanted[ok]
        return pos[ok]

    # -- writes (under the store's locks) ----------------------------------------------------------

    def add(self, keys: Sequence[int], vectors: np.ndarray, acls: Sequence[Sequence[str]], *,
            threads: int, exclusive: Callable[[], AbstractContextManager[Any]] = nullcontext) -> tuple[int, int]:
        """Append unpublished (invisible) positions for ``keys``; return their range. The graph is
        extended ``ADD_CHUNK`` vectors per ``exclusive()`` hold, so that searches can run in between."""
        start = self.size
        self._packed_visible = None
        if len(keys) and self.size and keys[0] <= self.keys.view[-1]:
            raise ValueError("keys must be added in increasing order")
        for at in range(0, len(keys), ADD_CHUNK):
            stop = min(at + ADD_CHUNK, len(keys))
            with exclusive():
                faiss.omp_set_num_threads(threads)
                self.index.add(np.ascontiguousarray(vectors[at:stop], dtype=np.float32))
                self.keys.append(keys[at:stop])
                self.visible.append(np.zeros(stop - at, np.bool_))
                self.public.append([not acls[i] for i in range(at, stop)])
                self.public_positions.append([start + i for i in range(at, stop) if not acls[i]])
                for i in range(at, stop):
                    for tag in acls[i]:
                        self.tags.setdefault(tag, Growable(np.int32)).append([start + i])
        return start, self.size

    def publish(self, stop: int, removed_keys: Iterable[int], watermark: int) -> None:
        """Make positions up to ``stop`` visible, hide removed keys, and move the watermark."""
        vis = self.visible.view
        newly = vis[self.published : stop]
        self.visible_count += int(len(newly) - np.count_nonzero(newly))
        newly[:] = True
        self.published = stop
        self.tombstone(removed_keys)
        self.watermark = watermark
        self._packed_visible = None

    def discard(self) -> None:
        """Give up on unpublished positions (a failed write): they stay hidden and count as dead."""
        self.published = self.size
        self._packed_visible = None

    def tombstone(self, keys: Iterable[int]) -> None:
        pos = self.positions(keys)
        vis = self.visible.view
        pos = pos[vis[pos]]
        vis[pos] = False
        self.visible_count -= len(pos)
        self._packed_visible = None

    # -- reads ------------------------------------------------------------------------------------

    def acl_positions(self, tags: frozenset[str], limit: int) -> np.ndarray | None:
        """Visible positions that are public or carry one of ``tags``, sorted; ``None`` when the
        postings hold more than ``limit`` positions (then :meth:`acl_mask` is the cheaper form)."""
        lists = [self.public_positions.view, *(self.tags[t].view for t in tags if t in self.tags)]
        if sum(len(x) for x in lists) > limit:
            return None
        pos = np.unique(np.concatenate(lists)).astype(np.int64)
        return pos[self.visible.view[pos]]

    def acl_mask(self, tags: frozenset[str]) -> np.ndarray:
        """Visible positions that are public or carry one of ``tags``."""
        mask = self.public.view.copy()
        for tag in tags:
            posting = self.tags.get(tag)
            if posting is not None:
                mask[posting.view] = True
        mask &= self.visible.view
        return mask

    def search(self, query: np.ndarray, k: int, ef: int, allowed: np.ndarray | None = None,
               ) -> tuple[np.ndarray, np.ndarray]:
        """Graph search on one thread: (scores, positions), best first, only visible (and ``allowed``)
        positions. May return fewer than k when the filter is selective; the caller falls back."""
        params = faiss.SearchParametersHNSW()
        params.efSearch = max(ef, k)
        packed: np.ndarray | None = None
        if allowed is not None:
            packed = np.packbits(allowed, bitorder="little")
        elif self.visible_count != self.size:  # tombstones or an add in progress
            if self._packed_visible is None:
                self._packed_visible = np.packbits(self.visible.view, bitorder="little")
            packed = self._packed_visible
        if packed is not None:
            # The selector holds a raw pointer: `packed` stays referenced until the search returns.
            params.sel = faiss.IDSelectorBitmap(len(packed), faiss.swig_ptr(packed))
        faiss.omp_set_num_threads(1)
        scores, pos = self.index.search(query.reshape(1, -1), k, params=params)
        keep = pos[0] >= 0
        return scores[0][keep], pos[0][keep]

    def exact(self, query: np.ndarray, k: int, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact inner products over ``positions`` only: (scores, positions), best first. faiss's
        one-query scan is a single-thread SIMD loop (numpy's matrix-vector product would hand it to a
        multi-threaded BLAS)."""
        if len(positions) == 0:
            return np.empty(0, np.float32), np.empty(0, np.int64)
        faiss.omp_set_num_threads(1)
        scores, found = faiss.knn(query.reshape(1, -1), self.vectors()[positions], min(k, len(positions)),
                                  metric=faiss.METRIC_INNER_PRODUCT)
        keep = found[0] >= 0
        return scores[0][keep], positions[found[0][keep]]
