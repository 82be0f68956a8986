"""The prefix cache's bookkeeping (the engines' own conformance suite checks reuse on the real models)."""

from __future__ import annotations

from aifab.engines.prefix import PrefixCache


def test_the_longest_shared_prefix_wins_and_the_last_prompt_token_is_always_fed():
    cache = PrefixCache(3)
    cache.keep(0, [1, 2, 3, 4, 5])
    cache.keep(2, [1, 2, 9])
    assert cache.match(0, [1, 2, 3, 4, 5, 6]) == 5
    assert cache.match(0, [1, 2, 3, 4, 5]) == 4  # all but the last: its logits give the first token
    assert cache.match(2, [1, 2, 3]) == 2 and cache.match(1, [1, 2, 3]) == 0
    assert cache.best([0, 1, 2], [1, 2, 3, 7]) == (0, 3)
    assert cache.best([1, 2], [5, 6]) == (1, 0)  # nothing shared: the lowest slot


def test_another_adapter_reuses_nothing_and_forgetting_clears():
    cache = PrefixCache(2)
    cache.keep(0, [1, 2, 3, 4], key="support")
    assert cache.match(0, [1, 2, 3, 4, 5], key=None) == 0
    assert cache.match(0, [1, 2, 3, 4, 5], key="support") == 4
    cache.take(0, 4)
    assert cache.reused == 4
    cache.forget()
    assert cache.match(0, [1, 2, 3, 4, 5], key="support") == 0


def test_disabled_it_keeps_nothing():
    cache = PrefixCache(1, enabled=False)
    cache.keep(0, [1, 2, 3])
    assert cache.match(0, [1, 2, 3, 4]) == 0


def test_a_longer_prefix_in_another_slot_is_a_source_until_copied():
    cache = PrefixCache(4)
    cache.keep(0, [1, 2, 3, 4, 5])
    cache.keep(2, [1, 2, 9])
    assert cache.source(1, [1, 2, 3, 4, 8]) == (0, 4)
    assert cache.source(0, [1, 2, 3, 4, 8]) == (2, 2)  # never the slot itself
    assert cache.source(1, [7, 7]) == (-1, 0)
    cache.copied(0, 1, 4)
    assert cache.match(1, [1, 2, 3, 4, 8]) == 4 and cache.copies == 1
    assert cache.source(3, [1, 2, 3, 4, 6]) == (0, 4)  # slot 1's copy is not applied yet: no source
    cache.applied()
    cache.keep(0, [])
    assert cache.source(3, [1, 2, 3, 4, 6]) == (1, 4)  # now it is
