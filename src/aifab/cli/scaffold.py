"""What ``aifab init DIR`` writes: an application repository that works offline at once — a collection and
an app declared in ``aifab.toml``, sample documents, an eval suite with its question set, a README, and CI
workflows (GitHub Actions, GitLab CI) that apply the config and gate on the suite."""

from __future__ import annotations

import json

from aifab import __version__

DOCS = {
    "docs/getting-started.md": """# Getting started with Lumen

Lumen is a desk lamp that follows the daylight. Plug the power cable into the base and hold the dial for
three seconds to pair it with the Lumen app.

## Resetting

To reset the lamp, hold the dial and the power button together for ten seconds until the light blinks twice.
A reset removes the pairing and the saved schedules.
""",
    "docs/schedules.md": """# Schedules

A schedule changes the colour temperature over the day. The lamp keeps up to eight schedules in its own memory,
so they run without the app.

Warm light below 3000 kelvin is used after sunset by default. The sunrise schedule raises the brightness over
thirty minutes before the alarm time.
""",
    "docs/warranty.md": """# Warranty and repairs

Every Lumen lamp has a two-year warranty from the date of purchase. The warranty covers the LED panel, the dial
and the power supply, but not damage from water or drops.

To ask for a repair, send the serial number printed under the base to the support team.
""",
}

QUESTIONS = [
    ("How do I reset the lamp?", "To reset the lamp, hold the dial and the power button together for ten seconds "
                                 "until the light blinks twice."),
    ("How do I pair the lamp with the app?", "Plug the power cable into the base and hold the dial for three "
                                             "seconds to pair it with the Lumen app."),
    ("How many schedules can the lamp store?", "The lamp keeps up to eight schedules in its own memory, so they "
                                               "run without the app."),
    ("How long is the warranty?", "Every Lumen lamp has a two-year warranty from the date of purchase."),
    ("Does the warranty cover water damage?", "The warranty covers the LED panel, the dial and the power supply, "
                                              "but not damage from water or drops."),
    ("What do I need to send for a repair?", "To ask for a repair, send the serial number printed under the base "
                                             "to the support team."),
]

CONFIG = """# aifab configuration of this application: `aifab apply` makes the state match it, `aifab up` serves it.

[collections.handbook]
sources = ["docs"]                  # ingested and kept in sync by `aifab apply`

[apps.helpdesk]                     # a RAG app, called as a model: model = "helpdesk"
collection = "handbook"
temperature = 0.2
max_tokens = 200
"""

SUITE = """# The gate: `aifab eval run evals/suite.toml --gate` exits 1 when a check falls below its limit.
name = "helpdesk"

[[retrieval]]
collection = "handbook"
qa = "questions.jsonl"              # relative to this file
thresholds = { "recall@5" = 0.8, "mrr@10" = 0.6 }
regression = { "recall@5" = 0.05 }  # against --baseline last (or a committed baseline.json)

# Answers are slower (the model writes each one); add them when the gate runs on a machine for it:
# [[answers]]
# app = "helpdesk"
# qa = "questions.jsonl"
# thresholds = { cites_gold = 0.5 }
"""

README = """# {name}

An AI application on aifab: the `helpdesk` app answers questions from the documents in `docs/`, with
citations. It needs aifab {version} (the CI workflows install it from your package index).

```sh
aifab apply                                   # ingest docs/ into the "handbook" collection (again: only what changed)
aifab eval run evals/suite.toml --gate        # the quality gate: exit 1 when retrieval falls below its limits
aifab up                                      # serve it: OpenAI-compatible API and web UI on http://127.0.0.1:8000
```

Ask it from any OpenAI client, with `model="helpdesk"`, or from the command line:

```sh
aifab ask "How do I reset the lamp?" --app helpdesk
```

- `aifab.toml` declares the collection and the app; edit it and run `aifab apply` (with a server running, the
  server picks up apps and routes at once).
- `evals/suite.toml` is the gate; `evals/questions.jsonl` its questions, each with the passage that answers it.
- `.github/workflows/aifab.yml` and `.gitlab-ci.yml` run the same two commands on every push, with the
  gate's JUnit report.
- State (the collection, keys, logs) lives in `.aifab/`, which is not committed.
"""

GITHUB = """name: aifab
on: [push, pull_request]
jobs:
  gate:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with: {{python-version: "3.11"}}
      - run: pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
      - run: pip install "aifab=={version}"
      - run: aifab apply
      - run: aifab eval run evals/suite.toml --gate --junit evals.xml
      - uses: actions/upload-artifact@v4
        if: always()
        with: {{name: evals, path: evals.xml}}
"""

GITLAB = """gate:
  image: python:3.11
  script:
    - pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
    - pip install "aifab=={version}"
    - aifab apply
    - aifab eval run evals/suite.toml --gate --junit evals.xml
  artifacts:
    when: always
    reports:
      junit: evals.xml
"""

GITIGNORE = ".aifab/\nevals.xml\n"


def files(name: str) -> dict[str, str]:
    """The scaffold's files by path, for an application called ``name``."""
    qa = "".join(json.dumps({"question": q, "gold": g}) + "\n" for q, g in QUESTIONS)
    return {
        "aifab.toml": CONFIG,
        **DOCS,
        "evals/suite.toml": SUITE,
        "evals/questions.jsonl": qa,
        "README.md": README.format(name=name, version=__version__),
        ".github/workflows/aifab.yml": GITHUB.format(version=__version__),
        ".gitlab-ci.yml": GITLAB.format(version=__version__),
        ".gitignore": GITIGNORE,
    }
