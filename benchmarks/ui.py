"""The web UI's figures, and its screenshots (docs/ui-<page>.png).

```sh
.venv/bin/python benchmarks/ui.py                 # ~3 min on 2 cores: figures + screenshots
.venv/bin/python benchmarks/ui.py --no-shots      # figures only
```

One ``aifab up`` (default models, a RAG app over two small documents) and Debian's Chromium driven by
Playwright, on loopback:

- **First contentful paint of ``/``**: a fresh browser context each time (empty cache), the page's own
  ``first-contentful-paint`` entry; p50 over ``--loads``. Target ≤ 300 ms.
- **Time to the first token on screen minus the API's TTFT**: the same prompt, model, ``max_tokens`` and
  ``temperature=0``, sent alternately through the chat page (from the Send click to the first text in the
  DOM: the page's ``data-first-token-ms``) and straight to the API with httpx (from the request to the
  first non-empty content delta); p50 of each and of the per-pair difference over ``--requests``. The
  baseline is the API measured in the same run. Target ≤ 50 ms.
- **Assets shipped**: every file of ``aifab/web/static`` as served (gzip) and what the chat page actually
  transferred on a cold load.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from aifab.registry.defaults import DEFAULTS, locate
from aifab.testing.server import RemoteAifabServer
from aifab.web import Assets

ROOT = Path(__file__).resolve().parents[1]
MODEL = "smollm2-135m-instruct"
CANARY = "smollm2-canary"
PROMPT = "Name three colours."
DOCS = {
    "tides.md": "# Tides\n\nTides are caused by the gravitational pull of the Moon and the Sun on the oceans. "
                "Most coasts see two high tides a day.\n",
    "bread.md": "# Baking bread\n\nKnead the dough for ten minutes, let it rise for an hour, then bake it at "
                "220 degrees for thirty minutes until the crust is brown.\n",
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def api_ttft(client: httpx.Client, max_tokens: int) -> float:
    """Milliseconds from sending the request to the first non-empty content delta. One client for all
    requests (a kept-alive connection, as the browser has): a new client costs its SSL context first."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": max_tokens,
            "temperature": 0, "stream": True}
    start = time.perf_counter()
    first = None
    with client.stream("POST", "/v1/chat/completions", json=body) as r:
        for line in r.iter_lines():
            if first is None and line.startswith("data: {"):
                chunk = json.loads(line[6:])
                if any((c.get("delta") or {}).get("content") for c in chunk.get("choices", [])):
                    first = (time.perf_counter() - start) * 1000
    assert first is not None, "no content streamed"
    return first


def ui_ttft(page: Any, max_tokens: int) -> float:
    """The chat page's own measure: from the Send click to the first text put in the page."""
    page.get_by_role("button", name="New conversation").click()
    page.get_by_label("Model or app").select_option(MODEL)
    page.get_by_label("Message").fill(PROMPT)
    page.get_by_role("button", name="Send").click()
    answer = page.locator("article.msg.assistant[data-done]").last
    answer.wait_for()
    return float(answer.get_attribute("data-first-token-ms"))


def first_paint(browser: Any, url: str, loads: int) -> tuple[list[float], int]:
    """FCP of cold loads of ``/``, and the bytes the last load transferred (page + every resource)."""
    times, transferred = [], 0
    for _ in range(loads):
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        page.goto(f"{url}/", wait_until="networkidle")
        page.get_by_label("Message").wait_for()
        times.append(page.evaluate("performance.getEntriesByName('first-contentful-paint')[0].startTime"))
        transferred = page.evaluate("""performance.getEntriesByType('navigation')[0].transferSize
            + performance.getEntriesByType('resource').reduce((n, r) => n + r.transferSize, 0)""")
        context.close()
    return times, transferred


def start_fine_tune(url: str) -> str:
    """A short LoRA fine-tune of the chat model through the OpenAI fine-tuning API: the fine-tuning page's
    screenshot then has a job with its loss curve and gate verdict."""
    rows = [{"messages": [{"role": "user", "content": f"What is the code word for item {i}?"},
                          {"role": "assistant", "content": f"The code word for item {i} is blue-{i % 3}."}]}
            for i in range(24)]
    jsonl = "".join(json.dumps(r) + "\n" for r in rows).encode()
    f = httpx.post(f"{url}/v1/files", files={"file": ("codes.jsonl", jsonl)}, data={"purpose": "fine-tune"}, timeout=60)
    f.raise_for_status()
    job = httpx.post(f"{url}/v1/fine_tuning/jobs", timeout=60, json={
        "model": MODEL, "training_file": f.json()["id"], "suffix": "codes",
        "hyperparameters": {"max_steps": 16, "batch_size": 4, "lr": 2e-3}})
    job.raise_for_status()
    return str(job.json()["id"])


def eval_runs(data: Path, work: Path) -> None:
    """Two runs of a small eval suite, measured by the running server (the Evals page's screenshot compares
    them); the second asks for more than retrieval gives, and fails."""
    (work / "qa.jsonl").write_text("".join(json.dumps({"question": q, "gold": g}) + "\n" for q, g in (
        ("What causes the tides?", "Tides are caused by the gravitational pull of the Moon and the Sun on the oceans."),
        ("How long should dough be kneaded?", "Knead the dough for ten minutes, let it rise for an hour"))))
    for limit in (0.5, 1.5):
        (work / "suite.toml").write_text(f'name = "helpdesk"\n[[retrieval]]\ncollection = "kb"\nqa = "qa.jsonl"\n'
                                         f'thresholds = {{ "recall@1" = {limit}, "mrr@10" = 0.5 }}\n')
        r = subprocess.run([sys.executable, "-m", "aifab.cli.main", "eval", "run", str(work / "suite.toml"),
                            "--data-dir", str(data)], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"aifab eval run failed: {r.stderr.strip()}")


def screenshots(browser: Any, url: str, out: Path, data: Path, work: Path) -> dict[str, int]:
    job = start_fine_tune(url)
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(120_000)
    sizes = {}

    def shot(name: str) -> None:
        path = out / f"ui-{name}.png"
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(path))
        sizes[path.name] = path.stat().st_size

    page.goto(f"{url}/#/chat")
    page.get_by_label("Model or app").select_option("helpdesk")
    page.get_by_label("Message").fill("What causes the tides?")
    page.get_by_role("button", name="Send").click()
    page.locator("article.msg.assistant[data-done]").last.wait_for()
    shot("chat")
    page.goto(f"{url}/#/documents")
    page.get_by_label("Query").fill("how long to knead dough")
    page.get_by_role("button", name="Search").click()
    page.locator(".hit").first.wait_for()
    shot("documents")
    httpx.post(f"{url}/v1/admin/rollouts", json={"name": CANARY, "canary": 10, "as": MODEL}, timeout=30).raise_for_status()
    page.goto(f"{url}/#/models")
    page.get_by_role("button", name=CANARY, exact=True).click()
    page.get_by_role("region", name="Lineage").wait_for()
    shot("models")
    httpx.post(f"{url}/v1/admin/rollouts/{MODEL}/rollback", timeout=30).raise_for_status()
    page.goto(f"{url}/#/finetune")
    page.locator(f'tr[data-job="{job}"]').wait_for()
    page.get_by_text(re.compile(r"^Evaluation gate: (passed|failed|none recorded)")).wait_for(timeout=900_000)
    shot("finetune")
    eval_runs(data, work)
    page.goto(f"{url}/#/evals")
    page.get_by_role("table", name=re.compile("Verdicts of run")).wait_for()
    shot("evals")
    page.goto(f"{url}/#/keys")  # last: the first key ends keyless access
    page.get_by_label("Name").fill("admin")
    page.get_by_label("admin", exact=True).check()
    page.get_by_role("button", name="Create key").click()
    page.locator("code.secret").wait_for()
    page.locator("svg.chart").wait_for()
    shot("keys")
    context.close()
    return sizes


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=10, help="pairs of streamed requests (UI, API)")
    ap.add_argument("--loads", type=int, default=5, help="cold loads of / for the first paint")
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument("--work-dir", type=Path, default=Path("/tmp/aifab-bench-ui"))
    ap.add_argument("--shots", type=Path, default=ROOT / "docs", help="where the screenshots go")
    ap.add_argument("--no-shots", action="store_true")
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    shutil.rmtree(args.work_dir, ignore_errors=True)
    data = args.work_dir / "data"
    weights = locate(DEFAULTS[0])
    assert weights is not None, "the default chat model is not installed"
    subprocess.run([sys.executable, "-m", "aifab.cli.main", "models", "import", str(weights), "--name", CANARY,
                    "--no-copy", "--data-dir", str(data)], check=True, capture_output=True)
    cfg = args.work_dir / "aifab.toml"
    cfg.write_text('[apps.helpdesk]\ncollection = "kb"\ntemperature = 0\nmax_tokens = 64\n')
    raw, gz = Assets().total()
    log("starting aifab up ...")
    with RemoteAifabServer(data, args=["--config", str(cfg)]) as server, sync_playwright() as p:
        url = server.url
        files = [("file", (n, t.encode(), "text/markdown")) for n, t in DOCS.items()]
        httpx.post(f"{url}/v1/collections/kb/documents?wait=true", files=files, timeout=300).raise_for_status()
        browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
        log("first contentful paint ...")
        fcp, transferred = first_paint(browser, url, args.loads)
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        page.set_default_timeout(120_000)
        page.goto(f"{url}/#/chat")
        page.get_by_text("Options").click()
        page.get_by_label("Max tokens").fill(str(args.max_tokens))
        page.get_by_label("Temperature").fill("0")
        client = httpx.Client(base_url=url, timeout=120)
        api_ttft(client, args.max_tokens), ui_ttft(page, args.max_tokens)  # warm-up, both sides
        log(f"time to first token, {args.requests} pairs ...")
        ui, api, diff = [], [], []
        for i in range(args.requests):  # alternate which side goes first: neither always gets the warmer cache
            if i % 2:
                a, u = api_ttft(client, args.max_tokens), ui_ttft(page, args.max_tokens)
            else:
                u, a = ui_ttft(page, args.max_tokens), api_ttft(client, args.max_tokens)
            ui.append(u)
            api.append(a)
            diff.append(u - a)
        context.close()
        client.close()
        sizes = {} if args.no_shots else screenshots(browser, url, args.shots, data, args.work_dir)
        browser.close()
    print("\n| figure | value | target |\n|---|---|---|")
    print(f"| first contentful paint of / (cold, p50 of {len(fcp)}) | {statistics.median(fcp):.0f} ms "
          f"(min {min(fcp):.0f}, max {max(fcp):.0f}) | ≤ 300 ms |")
    print(f"| TTFT on screen, p50 of {len(ui)} (UI) | {statistics.median(ui):.1f} ms | |")
    print(f"| TTFT of the API, p50 of {len(api)} (baseline: httpx, same prompt) | {statistics.median(api):.1f} ms | |")
    print(f"| UI minus API, p50 of the per-pair differences | {statistics.median(diff):.1f} ms "
          f"(p90 {pct(diff, 90):.1f}) | ≤ 50 ms |")
    print(f"| every static file, raw / gzip | {raw:,} / {gz:,} bytes | |")
    print(f"| transferred by a cold load of the chat page | {transferred:,} bytes | |")
    for name, size in sizes.items():
        print(f"| {name} | {size:,} bytes | < 200 KB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
