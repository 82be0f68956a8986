"""Vector search benchmark: a ``VectorStore`` driven through its protocol, against exact search and raw
faiss HNSW on the same vectors, in the same run, one phase after the other.

1. data: ``--n`` synthetic vectors (see :func:`synthetic`; deterministic, generated in blocks so that
   every process regenerates the same ones) and ``--queries`` queries from the same distribution (never
   in the data). Ground truth by exact inner product (faiss ``IndexFlatIP``, all cores), unfiltered
   and for three ACL filters: tags held by 10%, 1% and 0.1% of the records.
2. baseline ``exact``: ``IndexFlatIP`` over all vectors (or the filter's rows), one query at a time on
   one thread: the latency a store saves.
3. baseline ``faiss-hnsw``: ``IndexHNSWFlat`` with the store's M / efConstruction / efSearch over the
   vectors in memory (built on all cores, searched on one): the floor for a store built on faiss.
4. the store, each step in a fresh process (so that its RSS is its own): ingest (``upsert`` in
   ``--batch`` batches, then ``close``), rebuild (embedded: the index file deleted, the graph rebuilt
   from SQLite on open), query (open, then ``query`` one at a time, unfiltered and filtered, for each
   ``--ef-search``). recall@k is measured against the exact top k.

Run:  .venv/bin/python benchmarks/vector_search.py --n 100000            # ~5 min on 2 cores
      .venv/bin/python benchmarks/vector_search.py --n 1000000           # the target size; ~1 h
      .venv/bin/python benchmarks/vector_search.py --backend pgvector --pg-url postgresql://…
Writes benchmarks/results/vector_search-<backend>-<n>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from inference import Contention, percentile  # noqa: E402 - shared benchmark helpers

RESULT_TAG = "BENCH_RESULT_JSON:"
NAMESPACE = "bench@v1"
FILTERS = {"acl 10%": "team-a", "acl 1%": "team-b", "acl 0.1%": "team-rare"}
BLOCK = 8192

# -- data --------------------------------------------------------------------------------------------


def synthetic(start: int, n: int, dim: int, seed: int = 0) -> np.ndarray:
    """Rows ``start .. start+n`` of a fixed synthetic corpus of unit vectors shaped like text embeddings:
    2,000 topics of Zipf-distributed sizes, each a Gaussian cloud (sd 0.7) around a centre (sd 1) in a
    48-dimensional latent space, mapped into ``dim`` dimensions by a fixed random orthonormal map, plus
    a direction shared by all rows (real embeddings are anisotropic) and isotropic noise (sd 0.2 per
    dimension). Calibrated against 20k all-MiniLM-L6-v2 embeddings of the Python docs (see README).
    Row i depends only on (seed, i), so every process regenerates the same rows block by block."""
    g = np.random.default_rng([seed, 0])
    intrinsic, topics, spread, noise, offset = 48, 2000, 0.7, 0.2, 0.5
    basis = np.linalg.qr(g.standard_normal((dim, intrinsic)))[0].T.astype(np.float32)
    centres = g.standard_normal((topics, intrinsic)).astype(np.float32)
    common = g.standard_normal(dim).astype(np.float32)
    common *= offset * np.sqrt(intrinsic) / np.linalg.norm(common)
    weights = 1.0 / np.arange(1, topics + 1) ** 0.9
    weights /= weights.sum()
    out = np.empty((n, dim), np.float32)
    for block in range(start // BLOCK, (start + n - 1) // BLOCK + 1):
        r = np.random.default_rng([seed, 1, block])
        latent = centres[r.choice(topics, size=BLOCK, p=weights)]
        latent += spread * r.standard_normal((BLOCK, intrinsic), dtype=np.float32)
        v = latent @ basis + common + noise * r.standard_normal((BLOCK, dim), dtype=np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        lo, hi = max(start, block * BLOCK), min(start + n, (block + 1) * BLOCK)
        out[lo - start : hi - start] = v[lo - block * BLOCK : hi - block * BLOCK]
    return out


def queries(args: argparse.Namespace) -> np.ndarray:
    return synthetic(1 << 40, args.queries, args.dim)  # far from the data rows: same law, other draws


def acl_of(i: int) -> tuple[str, ...]:
    """One tag per record, none public: 10% "team-a", 1% "team-b", 0.1% "team-rare", the rest "staff"."""
    if i % 10 == 0:
        return ("team-a",)
    return ("team-rare",) if i % 1000 == 1 else ("team-b",) if i % 100 == 11 else ("staff",)


def chunk_records(start: int, vectors: np.ndarray) -> list[Any]:
    from aifab.stores.protocol import ChunkRecord

    return [
        ChunkRecord(
            id=f"c{i}", document_id=f"doc{i // 8}", vector=v,
            text=f"chunk {i % 8} of document {i // 8} on topic w{i * 7919 % 5003} and w{i * 104729 % 5003}",
            metadata={"source": f"/corpus/{i // 8 % 997}/doc{i // 8}.md", "page": i % 8 + 1}, acl=acl_of(i),
        )
        for i, v in zip(range(start, start + len(vectors)), vectors, strict=True)
    ]


# -- child processes -----------------------------------------------------------------------------------


def open_store(p: dict[str, Any], ef: int) -> Any:
    hnsw = {"hnsw_m": p["m"], "hnsw_ef_construction": p["ef_construction"], "hnsw_ef_search": ef}
    if p["backend"] == "embedded":
        from aifab.stores.embedded import EmbeddedStore

        return EmbeddedStore(Path(p["store_dir"]), **hnsw)
    from aifab.stores.pgvector import PgVectorStore  # written separately; imported only when asked for

    return PgVectorStore(p["pg_url"], **hnsw)


def rss() -> dict[str, float]:
    """Current and peak RSS of this process. The peak comes from VmHWM: ``ru_maxrss`` would include the
    parent's RSS at fork time (it survives exec), and the parent holds the whole data set."""
    status = Path("/proc/self/status").read_text()
    kib = {line.split(":")[0]: int(line.split()[1]) for line in status.splitlines() if line.startswith(("VmRSS", "VmHWM"))}
    return {"rss_mib": kib["VmRSS"] / 1024, "peak_rss_mib": kib["VmHWM"] / 1024}


def child_ingest(p: dict[str, Any]) -> dict[str, Any]:
    if p["backend"] == "embedded":
        shutil.rmtree(p["store_dir"], ignore_errors=True)
    t0 = time.perf_counter()
    store = open_store(p, p["ef_search"][0])
    store.drop_namespace(NAMESPACE)
    store.create_namespace(NAMESPACE, p["dim"])
    batches, gen_s = [], 0.0
    for at in range(0, p["n"], p["batch"]):
        g0 = time.perf_counter()
        recs = chunk_records(at, synthetic(at, min(p["batch"], p["n"] - at), p["dim"]))
        g1 = time.perf_counter()
        store.upsert(NAMESPACE, recs)
        batches.append(time.perf_counter() - g1)
        gen_s += g1 - g0
        if len(batches) % 10 == 0:
            log(f"  ingested {at + len(recs):,} ({sum(batches):.0f}s)")
    upsert_s = sum(batches)
    mem = rss()
    c0 = time.perf_counter()
    store.close()
    return {"upsert_s": upsert_s, "batch_s": batches, "close_s": time.perf_counter() - c0,
            "total_s": time.perf_counter() - t0 - gen_s, **mem}


def child_rebuild(p: dict[str, Any]) -> dict[str, Any]:
    for f in Path(p["store_dir"]).glob("ns*.ann"):
        f.unlink()
    t0 = time.perf_counter()
    store = open_store(p, p["ef_search"][0])
    open_s = time.perf_counter() - t0
    info = store.index_info(NAMESPACE)
    mem = rss()
    c0 = time.perf_counter()
    store.close()
    return {"open_s": open_s, "info": info, "save_s": time.perf_counter() - c0, **mem}


def child_query(p: dict[str, Any]) -> dict[str, Any]:
    from aifab.stores.protocol import Filter

    qs = queries(argparse.Namespace(**p))
    out: dict[str, Any] = {"runs": {}}
    for ef in p["ef_search"]:  # one value per process (see main), so that RSS is the store's alone
        t0 = time.perf_counter()
        store = open_store(p, ef)
        run: dict[str, Any] = {"open_s": time.perf_counter() - t0, **rss()}
        if hasattr(store, "index_info"):
            run["info"] = store.index_info(NAMESPACE)
        for name, tag in {"unfiltered": None, **FILTERS}.items():
            f = Filter(acl=frozenset({tag})) if tag else None
            for q in qs[: min(20, len(qs))]:  # warm-up: caches, lazily built masks
                store.query(NAMESPACE, q, p["k"], f)
            ids, lat = [], []
            for q in qs:
                t = time.perf_counter()
                hits = store.query(NAMESPACE, q, p["k"], f)
                lat.append(time.perf_counter() - t)
                ids.append([int(h.id[1:]) for h in hits])
            run[name] = {"ids": ids, "lat": lat}
        run.update({"after_queries": rss()})
        out["runs"][str(ef)] = run
        store.close()
    return out


def child_faiss(p: dict[str, Any]) -> dict[str, Any]:
    import faiss

    index = faiss.IndexHNSWFlat(p["dim"], p["m"], faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = p["ef_construction"]
    t0 = time.perf_counter()
    for at in range(0, p["n"], 100_000):
        index.add(synthetic(at, min(100_000, p["n"] - at), p["dim"]))
    out: dict[str, Any] = {"build_s": time.perf_counter() - t0, "runs": {}, **rss()}
    qs = queries(argparse.Namespace(**p))
    faiss.omp_set_num_threads(1)
    for ef in p["ef_search"]:
        index.hnsw.efSearch = max(ef, p["k"])
        ids, lat = [], []
        for q in qs:
            t = time.perf_counter()
            _, i = index.search(q[None], p["k"])
            lat.append(time.perf_counter() - t)
            ids.append(i[0].tolist())
        out["runs"][str(ef)] = {"unfiltered": {"ids": ids, "lat": lat}}
    return out


CHILDREN = {"ingest": child_ingest, "rebuild": child_rebuild, "query": child_query, "faiss": child_faiss}


def run_child(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """One phase in a fresh interpreter; its progress goes to our stderr, its result comes back tagged."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_child", kind, json.dumps(params)]
    cp = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, cwd=str(REPO), check=False)
    for line in reversed(cp.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG) :])
    raise RuntimeError(f"{kind} failed (exit {cp.returncode}); see its traceback above")


def child_main(kind: str, params_json: str) -> None:
    result = CHILDREN[kind](json.loads(params_json))
    sys.stdout.write(RESULT_TAG + json.dumps(result) + "\n")
    sys.stdout.flush()
    os._exit(0)


# -- ground truth and the exact baseline -----------------------------------------------------------------


def exact_side(args: argparse.Namespace, qs: np.ndarray) -> dict[str, Any]:
    """Exact top-k for every query (all cores), unfiltered and per filter; single-thread latencies."""
    import faiss

    data = synthetic(0, args.n, args.dim)
    rows = {"unfiltered": np.arange(args.n)}
    rows.update({name: np.array([i for i in range(args.n) if tag in acl_of(i)]) for name, tag in FILTERS.items()})
    out: dict[str, Any] = {}
    for name, idx in rows.items():
        flat = faiss.IndexFlatIP(args.dim)
        flat.add(data[idx])
        faiss.omp_set_num_threads(os.cpu_count() or 1)
        _, found = flat.search(qs, args.k)
        faiss.omp_set_num_threads(1)
        lat = []
        for q in qs[: args.exact_queries]:
            t = time.perf_counter()
            flat.search(q[None], args.k)
            lat.append(time.perf_counter() - t)
        out[name] = {"truth": idx[found].tolist(), "lat": lat, "rows": len(idx)}
        del flat
    return out


def recall(ids: list[list[int]], truth: list[list[int]], k: int) -> float:
    return float(np.mean([len(set(a[:k]) & set(b[:k])) / k for a, b in zip(ids, truth, strict=True)]))


# -- report --------------------------------------------------------------------------------------------


def _fmt(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


def row(metric: str, store: float | None, baseline: float | None = None, *, unit: str = "",
        base_name: str = "", target: str | None = None, met: bool | None = None, digits: int = 2) -> dict[str, Any]:
    ratio = store / baseline if store is not None and baseline else None
    return {"metric": metric, "unit": unit, "store": store, "baseline": baseline, "baseline_name": base_name,
            "ratio": ratio, "target": target, "met": met, "digits": digits}


def build_rows(args: argparse.Namespace, exact: dict[str, Any], fa: dict[str, Any], ing: dict[str, Any],
               reb: dict[str, Any] | None, qry: dict[str, Any]) -> list[dict[str, Any]]:
    n = args.n
    rows = [
        row("ingest: upsert through the protocol", ing["upsert_s"], fa["build_s"], unit="s",
            base_name="faiss HNSW build", digits=1),
        row("ingest rate", n / ing["upsert_s"], n / fa["build_s"], unit="records/s", base_name="faiss HNSW build", digits=0),
        row("close (save the graph)", ing["close_s"], unit="s", digits=1),
    ]
    if reb is not None:
        rows.append(row("index build from SQLite (open, no index file)", reb["open_s"], fa["build_s"], unit="s",
                        base_name="faiss HNSW build", digits=1))
    rows.append(row("peak RSS during ingest", ing["peak_rss_mib"], fa["peak_rss_mib"], unit="MiB",
                    base_name="faiss HNSW process", digits=0))
    for ef, run in qry["runs"].items():
        rows.append(row(f"[ef_search={ef}] open (load the saved index)", run["open_s"], unit="s", digits=2))
        rows.append(row(f"[ef_search={ef}] RSS after open", run["rss_mib"], unit="MiB", digits=0))
        for name in ("unfiltered", *FILTERS):
            res, base = run[name], exact[name]
            rc = recall(res["ids"], base["truth"], args.k)
            faiss_run = fa["runs"][ef].get(name) if name == "unfiltered" else None
            unfiltered = name == "unfiltered"
            rows.append(row(f"[ef_search={ef}] {name}: recall@{args.k}", rc,
                            recall(faiss_run["ids"], base["truth"], args.k) if faiss_run else 1.0,
                            base_name="faiss HNSW" if faiss_run else "exact", digits=3,
                            target=">= 0.95" if unfiltered else None, met=rc >= 0.95 if unfiltered else None))
            for q in (50, 99):
                v = percentile(res["lat"], q) * 1000
                rows.append(row(f"[ef_search={ef}] {name}: p{q} latency, 1 thread", v,
                                percentile(base["lat"], q) * 1000, unit="ms",
                                base_name=f"exact over {base['rows']:,} rows",
                                target="<= 5" if unfiltered and q == 50 else None,
                                met=v <= 5 if unfiltered and q == 50 else None))
            if faiss_run:
                rows.append(row(f"[ef_search={ef}] {name}: p50 latency, 1 thread", percentile(res["lat"], 50) * 1000,
                                percentile(faiss_run["lat"], 50) * 1000, unit="ms", base_name="faiss HNSW"))
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    head = ("metric", "store", "baseline", "ratio", "target", "met?", "baseline is")
    body = [(r["metric"] + (f" [{r['unit']}]" if r["unit"] else ""), _fmt(r["store"], r["digits"]),
             _fmt(r["baseline"], r["digits"]), _fmt(r["ratio"]), r["target"] or "-",
             "-" if r["met"] is None else ("yes" if r["met"] else "NO"), r["baseline_name"] or "-") for r in rows]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    line = "  ".join(f"{{:<{w}}}" if i in (0, 6) else f"{{:>{w}}}" for i, w in enumerate(widths))
    print(line.format(*head))
    print("  ".join("-" * w for w in widths))
    for b in body:
        print(line.format(*b))


# -- main ----------------------------------------------------------------------------------------------


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Results are also written to benchmarks/results/vector_search-<backend>-<n>.json.")
    ap.add_argument("--backend", choices=["embedded", "pgvector"], default="embedded")
    ap.add_argument("--pg-url", help="PostgreSQL URL (with pgvector) for --backend pgvector")
    ap.add_argument("--n", type=int, default=100_000, help="records (default 100000; the target size is 1000000)")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--exact-queries", type=int, default=200, help="queries timed on the exact baseline (slow at 1M)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--batch", type=int, default=10_000, help="records per upsert call")
    ap.add_argument("--hnsw-m", type=int, default=32)
    ap.add_argument("--hnsw-ef-construction", type=int, default=128)
    ap.add_argument("--ef-search", default="128", help="comma-separated efSearch values to measure, e.g. 64,128,256")
    ap.add_argument("--skip-rebuild", action="store_true", help="do not time the rebuild from SQLite (embedded)")
    ap.add_argument("--work-dir", type=Path, default=Path("/tmp/aifab-vector-bench"))
    ap.add_argument("--output", type=Path, help="JSON results (default benchmarks/results/vector_search-<backend>-<n>.json)")
    args = ap.parse_args(argv)
    if args.backend == "pgvector" and not args.pg_url:
        ap.error("--backend pgvector needs --pg-url")
    args.ef_search = [int(x) for x in args.ef_search.split(",")]
    args.output = args.output or HERE / "results" / f"vector_search-{args.backend}-{args.n}.json"
    return args


def main(argv: list[str] | None = None) -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--_child":
        child_main(sys.argv[2], sys.argv[3])
    args = parse_args(argv)
    t_start = time.perf_counter()
    p = {"backend": args.backend, "pg_url": args.pg_url, "n": args.n, "dim": args.dim, "queries": args.queries,
         "k": args.k, "batch": args.batch, "m": args.hnsw_m, "ef_construction": args.hnsw_ef_construction,
         "ef_search": args.ef_search, "store_dir": str(args.work_dir / "store")}
    args.work_dir.mkdir(parents=True, exist_ok=True)
    cont = Contention()
    log(f"ground truth: exact search over {args.n:,} x {args.dim} for {args.queries} queries...")
    exact = exact_side(args, queries(args))
    cont.end("exact")
    log("baseline: raw faiss HNSW build and search...")
    fa = run_child("faiss", p)
    cont.end("faiss")
    log(f"store ({args.backend}): ingest...")
    ing = run_child("ingest", p)
    cont.end("ingest")
    reb = None
    if args.backend == "embedded" and not args.skip_rebuild:
        log("store: rebuild the graph from SQLite...")
        reb = run_child("rebuild", p)
        cont.end("rebuild")
    qry: dict[str, Any] = {"runs": {}}
    for ef in args.ef_search:
        log(f"store: queries, ef_search={ef}...")
        qry["runs"].update(run_child("query", {**p, "ef_search": [ef]})["runs"])
    cont.end("query")
    rows = build_rows(args, exact, fa, ing, reb, qry)
    files = {f.name: f.stat().st_size / 2**20 for f in sorted((args.work_dir / "store").glob("*"))} if args.backend == "embedded" else {}
    disk = sum(files.values()) if files else None
    total = time.perf_counter() - t_start
    print(f"\naifab vector search: {args.backend}, n={args.n:,} x {args.dim}, {args.queries} queries, k={args.k}, "
          f"M={args.hnsw_m}, efConstruction={args.hnsw_ef_construction}, batch={args.batch:,}, "
          f"{os.cpu_count()} CPUs, {total:.0f}s")
    print_table(rows)
    if disk is not None:
        print(f"\n  store directory on disk: {disk:,.0f} MiB (" + ", ".join(f"{k} {v:,.0f}" for k, v in files.items() if v >= 1) + ")")
    busy = ", ".join(f"{k} {v:.2f}" for k, v in cont.phases.items())
    print(f"  CPU used by other processes (cores, mean per phase): {busy}")
    if any(v > 0.2 for v in cont.phases.values()):
        print("  WARNING: the machine was not idle during the run; timings are unreliable")
    report = {"config": {k: v for k, v in vars(args).items() if k != "output"}, "rows": rows, "disk_mib": disk, "files_mib": files,
              "foreign_cpu_cores": cont.phases, "total_s": total, "ingest": ing, "rebuild": reb,
              "faiss_build_s": fa["build_s"],
              "latencies_ms": {ef: {name: [x * 1000 for x in v["lat"]] for name, v in run.items() if isinstance(v, dict) and "lat" in v}
                               for ef, run in qry["runs"].items()},
              "exact_latencies_ms": {name: [x * 1000 for x in v["lat"]] for name, v in exact.items()}}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=1, default=str) + "\n")
    print(f"\nwritten: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
