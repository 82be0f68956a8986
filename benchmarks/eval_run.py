"""`aifab eval run` overhead: the same retrieval checks through the suite runner and called directly.

    python benchmarks/eval_run.py                    # fake (hashed) embedder: ~2 min on 2 cores
    python benchmarks/eval_run.py --embedder minilm --docs 30 --rounds 3   # the real one: ~8 min, busy 2 cores

The fake embedder makes each query cheap, so the harness time is smallest and the runner's share
largest: the harder case for the target.

The benchmark writes a small corpus (``--docs`` markdown files, one fact each) and a question per fact,
ingests it into an embedded store under a scratch data directory, then, in alternating order per round,
times:

* **direct** (the baseline): what ``aifab eval retrieval`` runs for each check: ``load_qa`` then
  ``aifab.rag.harness.measure_retrieval``, for a hybrid and a lexical check;
* **suite**: ``aifab eval run``'s work for a suite of the same two checks: parse the suite file, hash the
  files it reads, run the checks through ``LocalHarnesses``, judge every metric against thresholds and a
  baseline, write the run to the state store (SQLite), and render the JUnit XML.

Both share one loaded embedder and one open store (process start-up and model loading are the same for
both, and left out). The median of the per-round ratios is the figure; target <= 1.05. On a shared machine
that ratio carries the noise of two long timings, so the process CPU time of each side is given too, and
the runner's own time: the suite's wall time less the time its harnesses took inside it
(``EvalRun.seconds``), in the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from aifab.cli.common import open_registry
from aifab.config import load_settings
from aifab.corpus.service import Corpus
from aifab.evals import Baseline, EvalRuns, load_suite, run_suite
from aifab.evals.junit import junit_xml
from aifab.evals.local import LocalHarnesses
from aifab.rag import Rag
from aifab.rag.evaluate import load_qa
from aifab.rag.harness import measure_retrieval, retrieval_settings
from aifab.stores.factory import open_store

PLACES = ["Oslo", "Lima", "Hanoi", "Accra", "Quito", "Perth", "Turin", "Leeds", "Cusco", "Dakar"]
THINGS = ["lantern", "violin", "compass", "kettle", "saddle", "anchor", "telescope", "loom", "harp", "bellows"]
SUITE = """
name = "bench"
[[retrieval]]
collection = "bench"
qa = "questions.jsonl"
mode = "hybrid"
thresholds = { "recall@5" = 0.5, "mrr@10" = 0.3 }
regression = { "recall@5" = 0.05, "ndcg@10" = 0.05 }
[[retrieval]]
collection = "bench"
qa = "questions.jsonl"
mode = "lexical"
name = "lexical"
thresholds = { "recall@5" = 0.5 }
"""


def write_corpus(root: Path, n: int) -> None:
    (root / "docs").mkdir(parents=True)
    questions = []
    for i in range(n):
        place, thing, year = PLACES[i % 10], THINGS[(i // 10) % 10], 1700 + 7 * i
        fact = f"The {thing} workshop number {i} in {place} was founded in {year} by guild {i * 13 % 97}."
        (root / "docs" / f"doc{i:03d}.md").write_text(
            f"# Workshop {i}\n\n## History\n\n{fact} It made {thing}s for the market of {place}.\n\n"
            f"## Today\n\nThe building now houses a museum with {i % 9 + 2} rooms.\n")
        questions.append({"question": f"When was the {thing} workshop number {i} in {place} founded?",
                          "gold": {"source": f"doc{i:03d}.md", "section": "History"}})
    (root / "questions.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
    (root / "suite.toml").write_text(SUITE)


def direct(rag: Rag, qa: Path) -> None:
    for mode in ("hybrid", "lexical"):
        measure_retrieval(rag, "bench", load_qa(qa), retrieval_settings(rag, mode=mode))


def via_suite(rag: Rag, suite_path: Path, runs: EvalRuns, baseline: Baseline | None) -> tuple[Baseline, float]:
    """The run as its next baseline, and the seconds its harnesses took inside it."""
    suite, sha = load_suite(suite_path)
    harnesses = LocalHarnesses(rag.settings, rag=lambda: rag, registry=lambda: rag.corpus.registry)
    run = run_suite(suite, sha, harnesses, baseline=baseline)
    runs.add(run)
    junit_xml(run)
    assert not run.failures, run.failures  # the checks really ran and met their limits
    return Baseline.of_run(run), sum(run.seconds.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=100, help="documents, one question each")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--embedder", choices=["minilm", "fake"], default="fake")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aifab-bench-eval-") as tmp:
        root = Path(tmp)
        write_corpus(root, args.docs)
        settings = load_settings(data_dir=root / "data")
        registry = open_registry(settings)
        embedder = None
        if args.embedder == "fake":
            from aifab.testing import FakeEmbedder

            embedder = FakeEmbedder(dimensions=256)
        store = open_store(settings)
        corpus = Corpus(settings, registry, store, embedder=embedder)
        t0 = time.perf_counter()
        report = corpus.ingest_paths("bench", [root / "docs"])
        print(f"ingested {report.documents_added} documents, {report.chunks_embedded} chunks ({args.embedder}) "
              f"in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        rag = Rag(settings, corpus)
        runs = EvalRuns(registry.db)
        direct(rag, root / "questions.jsonl")  # warm-up: first queries, reranker, caches
        baseline, _ = via_suite(rag, root / "suite.toml", runs, None)
        times: dict[str, list[float]] = {"direct": [], "suite": [], "inside": []}
        cpu: dict[str, list[float]] = {"direct": [], "suite": []}
        for r in range(args.rounds):
            order = ["direct", "suite"] if r % 2 == 0 else ["suite", "direct"]
            for side in order:
                t0, c0 = time.perf_counter(), time.process_time()
                if side == "direct":
                    direct(rag, root / "questions.jsonl")
                else:
                    baseline, inside = via_suite(rag, root / "suite.toml", runs, baseline)
                    times["inside"].append(inside)
                times[side].append(time.perf_counter() - t0)
                cpu[side].append(time.process_time() - c0)
        store.close()
        registry.db.close()
    ratios = [s / d for s, d in zip(times["suite"], times["direct"], strict=True)]
    cpu_ratios = [s / d for s, d in zip(cpu["suite"], cpu["direct"], strict=True)]
    print(f"\n`aifab eval run` overhead: 2 retrieval checks x {args.docs} questions, {args.embedder} embedder, "
          f"{args.rounds} rounds")
    print(f"{'round':>5} {'direct s':>9} {'suite s':>9} {'ratio':>7} {'direct cpu':>11} {'suite cpu':>10} "
          f"{'ratio':>7} {'runner s':>9}")
    rows = zip(times["direct"], times["suite"], ratios, cpu["direct"], cpu["suite"], cpu_ratios, times["inside"],
               strict=True)
    for i, (d, s, q, dc, sc, qc, h) in enumerate(rows, 1):
        print(f"{i:>5} {d:>9.3f} {s:>9.3f} {q:>7.3f} {dc:>11.3f} {sc:>10.3f} {qc:>7.3f} {s - h:>9.4f}")
    for label, values in (("wall", ratios), ("CPU", cpu_ratios)):
        ratio = statistics.median(values)
        print(f"median {label} ratio suite/direct: {ratio:.3f} (overhead {100 * (ratio - 1):+.1f}%; target <= +5%)")
    own = statistics.median((s - h) / s for s, h in zip(times["suite"], times["inside"], strict=True))
    print(f"runner's own share of the suite's wall time (parse, hash, judge, store, JUnit): {100 * own:.2f}% (median)")

if __name__ == "__main__":
    main()
