"""``build_from_logs``: what the interaction log and its feedback become, what is dropped and why, PII in
corrections never reaching the files, and builds that are deterministic, versioned and hashed."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import pytest

from aifab.errors import Conflict, InvalidRequest, NotFound
from aifab.finetune.datasets import DatasetStore, build_from_logs
from aifab.gateway.usage import parse_since
from aifab.state import Database
from aifab.testing.interactions import TOPICS, InteractionLog

LONG = " ".join(f"clause{i}" for i in range(80))  # long enough that one changed word stays >= 0.9 Jaccard
EMAIL, CARD, PHONE = "jane.doe@example.com", "4111 1111 1111 1111", "+44 20 7946 0958"


def scenario(log: InteractionLog) -> dict[str, str]:
    ids = {t: log.accepted(t) for t in TOPICS[:12]}
    ids["no_consent"] = log.accepted(TOPICS[12], consent=False)
    ids["no_content"] = log.accepted(TOPICS[13], content=False)
    log.rate(log.request("Explain tides.", "error", status=500), "up")
    log.rate(log.request("Complete: the sky is", "blue", endpoint="completions"), "up")
    log.request("Unrated one?", "Yes.")
    log.request("Unrated two?", "Yes.")
    log.request("Unrated, no consent?", "Yes.", consent=False)
    ids["duplicate"] = log.request("  EXPLAIN photosynthesis   in one sentence.", "a short account of PHOTOSYNTHESIS.")
    log.rate(ids["duplicate"], "up")
    ids["near1"] = log.request(LONG, "Noted.")
    ids["near2"] = log.request(LONG.replace("clause40", "changed"), "Noted.")
    log.rate(ids["near1"], "up")
    log.rate(ids["near2"], "up")
    ids["corrected"] = log.request("How do I reach support?", "I cannot say.")
    ids["corrected_fb"] = log.rate(ids["corrected"], "down",
                                   correction=f"Write to {EMAIL} or pay with card {CARD}.",
                                   comment=f"call me on {PHONE}")
    ids["gravity_down"] = log.request("Explain gravity in one sentence.", "Gravity is a myth.")
    log.rate(ids["gravity_down"], "down")
    ids["unpaired"] = log.request("What is 2+2?", "5")
    log.rate(ids["unpaired"], "down")
    ids["prime"] = log.request("Name a prime number.", "Seven.")
    log.rate(ids["prime"], "down")
    ids["prime_fb"] = log.rate(ids["prime"], "up")  # the latest feedback wins
    ids["colour"] = log.request("Name a colour.", "Blue.")
    log.rate(ids["colour"], "up")
    log.rate(ids["colour"], "down")
    return ids


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_sft_build_keeps_accepted_answers_and_corrections_and_says_why_the_rest_was_dropped(db, store, log):
    ids = scenario(log)
    saved = build_from_logs(db, store, "support")
    v = saved.version
    assert saved.created and v.ref == "support@v1" and v.kind == "sft"
    assert v.counts["dropped"] == {"no_consent": 2, "no_content": 1, "failed": 1, "not_chat": 1, "no_feedback": 2,
                                   "down_rated": 3, "duplicate": 1, "near_duplicate": 1}
    assert v.counts["candidates"] == {"sft": 17, "preference": 2}
    assert v.counts["train"] + v.counts["eval"] == 15 and v.counts["eval"] >= 1
    examples = lines(v.file("train")) + lines(v.file("eval"))
    assert len(examples) == 15 and all(e["messages"][-1]["role"] == "assistant" for e in examples)
    answers = {e["messages"][0]["content"]: e["messages"][-1]["content"] for e in examples}
    assert answers["Name a prime number."] == "Seven."
    assert answers["How do I reach support?"] == "Write to [EMAIL] or pay with card [CARD]."
    assert "Name a colour." not in answers and "What is 2+2?" not in answers
    assert answers["Explain gravity in one sentence."] == "A short account of gravity."
    source = v.source
    assert source["from"] == "logs" and source["since"] is None and source["model"] is None
    assert {ids["corrected"], ids["prime"], ids["photosynthesis"]} <= set(source["interactions"])
    assert not {ids["no_consent"], ids["colour"], ids["duplicate"]} & set(source["interactions"])
    assert len({ids["near1"], ids["near2"]} & set(source["interactions"])) == 1
    assert ids["prime_fb"] in source["feedback"] and ids["corrected_fb"] in source["feedback"]


def test_pii_of_corrections_and_comments_never_reaches_the_files(db, store, log, data_dir):
    scenario(log)
    for kind in ("sft", "preference"):
        build_from_logs(db, store, f"pii-{kind}", kind=kind, min_examples=2)
    written = [p for p in (data_dir / "datasets").rglob("*") if p.is_file()]
    assert len(written) == 6
    for path in written:
        text = path.read_text()
        assert EMAIL not in text and "4111" not in text and "7946" not in text, path
    assert "[EMAIL]" in (data_dir / "datasets/pii-sft/v1/train.jsonl").read_text() + \
        (data_dir / "datasets/pii-sft/v1/eval.jsonl").read_text()


def test_preference_build_pairs_corrections_and_down_rated_answers_with_accepted_ones(db, store, log):
    ids = scenario(log)
    v = build_from_logs(db, store, "prefs", kind="preference", min_examples=2).version
    assert v.kind == "preference" and (v.counts["train"], v.counts["eval"]) == (1, 1)
    assert v.counts["dropped"]["no_pair"] == 17 and "down_rated" not in v.counts["dropped"]
    pairs = {e["messages"][-1]["content"]: e for e in lines(v.file("train")) + lines(v.file("eval"))}
    assert pairs["How do I reach support?"]["chosen"] == "Write to [EMAIL] or pay with card [CARD]."
    assert pairs["How do I reach support?"]["rejected"] == "I cannot say."
    gravity = pairs["Explain gravity in one sentence."]
    assert (gravity["chosen"], gravity["rejected"]) == ("A short account of gravity.", "Gravity is a myth.")
    assert {ids["gravity_down"], ids["gravity"], ids["corrected"]} == set(v.source["interactions"])


def test_a_rebuild_with_the_same_content_is_unchanged_and_new_feedback_makes_a_new_version(db, store, log, data_dir):
    for topic in TOPICS[:12]:
        log.accepted(topic)
    first = build_from_logs(db, store, "n")
    again = build_from_logs(db, store, "n")
    assert not again.created and again.version.ref == "n@v1" and again.version.sha256 == first.version.sha256
    log.accepted(TOPICS[12])
    second = build_from_logs(db, store, "n")
    assert second.created and second.version.ref == "n@v2" and second.version.sha256 != first.version.sha256
    v1, v2 = store.get("n@v1"), store.get("n")
    assert v2.version == 2 and [v.ref for v in store.list()] == ["n@v1", "n@v2"]
    # an example never moves between train and eval as the dataset grows
    assert all(e in list(v2.examples("eval")) for e in v1.examples("eval"))
    assert not set(map(json.dumps, v2.examples("eval"))) & set(map(json.dumps, v2.examples("train")))
    manifest = v2.manifest()
    body = v2.file("train").read_bytes() + v2.file("eval").read_bytes()
    assert manifest["sha256"] == hashlib.sha256(body).hexdigest() == v2.sha256
    assert (manifest["name"], manifest["version"], manifest["kind"]) == ("n", 2, "sft")
    assert manifest["counts"]["train"] == v2.counts["train"] and manifest["source"]["from"] == "logs"
    assert sorted(p.name for p in (data_dir / "datasets" / "n").iterdir()) == ["v1", "v2"]  # no temp dirs left
    (data_dir / "probe").mkdir()
    assert v2.path.stat().st_mode == (data_dir / "probe").stat().st_mode  # readable as any directory made here
    with pytest.raises(NotFound, match=r"n@v9 is not in this data directory \(it has v1, v2\)"):
        store.get("n@v9")
    with pytest.raises(Conflict, match="'n' holds sft examples"):
        build_from_logs(db, store, "n", kind="preference", min_examples=2)


def test_the_same_logs_give_the_same_hash_whatever_order_they_were_written_in(db, store, log, tmp_path):
    for topic in TOPICS:
        log.accepted(topic)
    other = Database(f"sqlite:///{tmp_path / 'other.db'}")
    other.upgrade()
    other_log = InteractionLog(other)
    for topic in reversed(TOPICS):
        other_log.accepted(topic)
    a = build_from_logs(db, store, "same").version
    b = build_from_logs(other, DatasetStore(other, tmp_path / "other"), "same").version
    other.close()
    assert a.sha256 == b.sha256
    assert list(a.examples("eval")) == list(b.examples("eval"))


def test_since_and_model_select_the_logs(db, store, log):
    old = [log.accepted(t, ago=timedelta(days=10)) for t in TOPICS[:4]]
    routed = [log.accepted(t, model="alias", route="m2") for t in TOPICS[4:8]]
    recent = [log.accepted(t) for t in TOPICS[8:]]
    v = build_from_logs(db, store, "recent", since=parse_since("7d"), min_examples=2).version
    assert set(v.source["interactions"]) == set(routed + recent) and v.source["since"]
    v = build_from_logs(db, store, "m2", model="m2", min_examples=2).version
    assert set(v.source["interactions"]) == set(routed) and v.source["model"] == "m2"
    assert set(build_from_logs(db, store, "all", min_examples=2).version.source["interactions"]) == \
        set(old + routed + recent)


def test_a_dataset_too_small_to_split_is_refused_with_the_minimum(db, store, log):
    for topic in TOPICS[:3]:
        log.accepted(topic)
    log.accepted(TOPICS[3], consent=False)
    with pytest.raises(InvalidRequest) as err:
        build_from_logs(db, store, "tiny")
    assert "3 example(s)" in err.value.message and "at least 10" in err.value.message
    assert store.list() == []
    assert build_from_logs(db, store, "tiny", min_examples=3).version.counts["eval"] == 1
    with pytest.raises(InvalidRequest, match="at least 2"):
        build_from_logs(db, store, "tiny", min_examples=1)


@pytest.mark.integration
def test_postgresql_gives_the_same_dataset(postgres_url, db, store, log, tmp_path):
    scenario(log)
    pg = Database(postgres_url)
    pg.upgrade()
    scenario(InteractionLog(pg))
    on_pg = build_from_logs(pg, DatasetStore(pg, tmp_path / "pg"), "support").version
    pg.close()
    on_sqlite = build_from_logs(db, store, "support").version
    assert on_pg.sha256 == on_sqlite.sha256 and on_pg.counts == on_sqlite.counts
