"""Lineage both ways: model -> dataset version -> source interactions, and response -> the model that
answered it -> that model's lineage; broken links are stated, not raised."""

from __future__ import annotations

import pytest

from aifab.errors import NotFound
from aifab.finetune.datasets import Lineage, build_from_logs
from aifab.registry import Registry
from aifab.registry.package import ModelPackage
from aifab.state.tables import AuditRow
from aifab.testing.interactions import TOPICS


@pytest.fixture
def registry(db, data_dir):
    return Registry(db, data_dir / "models")


def fine_tuned(registry: Registry, name: str, dataset: dict, base: str = "smollm2-135m-instruct") -> None:
    registry.add(ModelPackage(name=name, kind="chat", format="safetensors", path=f"/models/{name}",
                              lineage={"base": base, "dataset": dataset, "method": "lora",
                                       "metrics": {"eval_loss": 1.5}}))


def test_from_a_model_to_its_dataset_and_the_interactions_behind_it(db, store, log, registry):
    ids = [log.accepted(t) for t in TOPICS[:11]]
    corrected = log.request("How do I reset my password?", "No idea.", key="team-b")
    log.rate(corrected, "down", correction="Use the reset link on the sign-in page.")
    v = build_from_logs(db, store, "support").version
    fine_tuned(registry, "support-ft", {"name": "support", "version": v.version, "sha256": v.sha256})
    chain = Lineage(registry=registry, datasets=store).of_model("support-ft")
    assert chain["base"] == "smollm2-135m-instruct" and chain["missing"] == []
    assert chain["dataset"]["ref"] == "support@v1" and chain["dataset"]["source"]["interactions"] == 12
    rows = {r["id"]: r for r in chain["interactions"]}
    assert set(rows) == {*ids, corrected}
    assert rows[corrected]["rating"] == "down" and rows[corrected]["corrected"] and rows[corrected]["key"] == "team-b"
    assert rows[ids[0]] | {"ts": None} == {"id": ids[0], "ts": None, "model": "m1", "route": "m1", "key": "team-a",
                                           "rating": "up", "corrected": False}


def test_from_a_response_to_the_model_that_answered_it(db, store, log, registry):
    ids = [log.accepted(t) for t in TOPICS[:10]]
    v = build_from_logs(db, store, "support").version
    fine_tuned(registry, "support-ft", {"name": "support", "version": v.version, "sha256": v.sha256})
    answered = log.request("Explain tides.", "The moon pulls the sea.", model="support", route="support-ft")
    log.rate(answered, "up")
    chain = Lineage(registry=registry, datasets=store)
    back = chain.of_response(answered)
    assert back["response"]["route"] == "support-ft" and back["response"]["upstream"] == "local"
    assert [f["rating"] for f in back["feedback"]] == ["up"] and back["datasets"] == []
    assert back["model"]["model"] == "support-ft" and back["model"]["dataset"]["ref"] == "support@v1"
    source = chain.of_response(ids[0])  # a response that went into the dataset
    assert source["datasets"] == ["support@v1"] and source["model"] is None
    assert source["missing"] == ["model m1 that answered it is not in the registry (upstream local)"]
    with pytest.raises(NotFound, match="no logged response with id 'nope'"):
        chain.of_response("nope")


def test_missing_links_are_stated(db, store, log, registry):
    fine_tuned(registry, "orphan", {"name": "support", "version": 3, "sha256": "ab" * 32})
    registry.add(ModelPackage(name="plain", kind="chat", format="gguf", path="/m.gguf"))
    chain = Lineage(registry=registry, datasets=store)
    assert chain.of_model("orphan")["missing"] == ["dataset support@v3 is not in this data directory"]
    assert "names no dataset" in chain.of_model("plain")["missing"][0]
    for t in TOPICS[:10]:
        log.accepted(t)
    v = build_from_logs(db, store, "support").version
    fine_tuned(registry, "other", {"name": "support", "version": 1, "sha256": "cd" * 32})
    assert "not the same data" in chain.of_model("other")["missing"][0]
    with db.session() as s:  # the audit log was pruned since
        s.delete(s.get(AuditRow, v.source["interactions"][0]))
    fine_tuned(registry, "pruned", {"name": "support", "version": 1, "sha256": v.sha256})
    assert chain.of_model("pruned")["missing"] == [
        "1 of the 10 source interactions of support@v1 are no longer in the audit log"]
