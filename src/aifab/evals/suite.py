"""An eval suite: a TOML file that lists checks, each a harness run with limits on its metrics.

    name = "helpdesk"                      # letters, digits, . _ -; runs are kept (and compared) by it
    [[retrieval]]                          # `aifab eval retrieval` on a collection
    collection = "handbook"
    qa = "evals/questions.jsonl"           # relative to the suite file
    mode = "hybrid"                        # optional: mode, reranker, mmr, limit
    thresholds = { "recall@5" = 0.6 }      # metric -> limit
    regression = { "recall@5" = 0.02 }     # metric -> allowed worsening against the baseline (absolute)
    [[answers]]                            # `aifab eval answers`: app = "..." or collection = "..."
    app = "helpdesk"
    qa = "evals/questions.jsonl"           # optional: limit, mode, top_k
    [[task]]                               # a model on a dataset's eval split (the fine-tuning evaluation)
    model = "smollm2-135m-instruct"
    dataset = "support@v1"                 # optional: adapter, generate, max_new_tokens, match, max_length

A threshold is a minimum for a metric where higher is better and a maximum where lower is better
(``loss``, ``abstained``): ``loss = 2.5`` means loss at most 2.5. A regression limit counts worsening
the same way: a drop, or for those two a rise. Every metric name is checked against the ones the
check's harness reports, so a misspelt one is an error, not a limit that never applies. Each check has an
id (``name``, else ``KIND:TARGET``) by which a baseline's metrics are found; ids are unique per suite.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from aifab.config import describe_error
from aifab.errors import InvalidRequest

# the metrics each kind of check reports that a limit may name (counts such as ``questions`` are kept, not judged)
METRICS: dict[str, tuple[str, ...]] = {
    "retrieval": ("recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10"),
    "answers": ("cites_gold", "gold_in_sources", "exact_match", "f1", "supported", "grounded", "attributed",
                "abstained"),
    "task": ("loss", "exact_match", "preference_accuracy", "logprob_margin"),
}
LOWER_IS_BETTER = frozenset({"loss", "abstained"})
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class Check(BaseModel):
    """What every check has: an optional name and its limits."""

    model_config = ConfigDict(extra="forbid")
    kind: ClassVar[str]

    name: str | None = Field(None, description="the check's id in tables and baselines [default: KIND:TARGET]")
    thresholds: dict[str, float] = Field(default_factory=dict, description="metric -> minimum (maximum for "
                                                                           "lower-is-better metrics)")
    regression: dict[str, float] = Field(default_factory=dict, description="metric -> allowed worsening "
                                                                           "against the baseline, absolute")
    _root: Path = PrivateAttr(default=Path("."))  # the suite file's folder: where relative paths start

    @field_validator("thresholds", "regression")
    @classmethod
    def _known_metrics(cls, limits: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(limits) - set(METRICS[cls.kind]))
        if unknown:
            raise ValueError(f"unknown metric {', '.join(map(repr, unknown))} for a {cls.kind} check "
                             f"(known: {', '.join(METRICS[cls.kind])})")
        return limits

    @field_validator("regression")
    @classmethod
    def _not_negative(cls, limits: dict[str, float]) -> dict[str, float]:
        bad = [m for m, v in limits.items() if v < 0]
        if bad:
            raise ValueError(f"an allowed worsening is 0 or more ({bad[0]} = {limits[bad[0]]})")
        return limits

    @property
    def target(self) -> str:
        raise NotImplementedError

    def file(self, path: Path) -> Path:
        """A path of the suite file, as the suite file's folder makes it."""
        return path if path.is_absolute() else self._root / path

    @property
    def id(self) -> str:
        return self.name or f"{self.kind}:{self.target}"

    def limited(self) -> list[str]:
        """The metrics this check has a limit on, in the harness's order."""
        return [m for m in METRICS[self.kind] if m in self.thresholds or m in self.regression]


class RetrievalCheck(Check):
    kind: ClassVar[str] = "retrieval"

    collection: str
    qa: Path = Field(description="JSONL question set, relative to the suite file")
    mode: Literal["hybrid", "dense", "lexical"] | None = None
    reranker: str | None = None
    mmr: bool | None = None
    limit: int | None = Field(None, ge=1, description="only the first N questions")

    @property
    def target(self) -> str:
        return self.collection


class AnswersCheck(Check):
    kind: ClassVar[str] = "answers"

    app: str | None = None
    collection: str | None = None
    qa: Path = Field(description="JSONL question set, relative to the suite file")
    mode: Literal["hybrid", "dense", "lexical"] | None = None
    top_k: int | None = Field(None, ge=1, le=100)
    limit: int | None = Field(None, ge=1, description="only the first N questions")

    @model_validator(mode="after")
    def _one_source(self) -> AnswersCheck:
        if (self.app is None) == (self.collection is None):
            raise ValueError("an answers check names either app or collection")
        return self

    @property
    def target(self) -> str:
        return self.app or self.collection or ""


class TaskCheck(Check):
    kind: ClassVar[str] = "task"

    model: str = Field(description="a registered chat model")
    dataset: str = Field(description="NAME, NAME@vN, a dataset directory or a .jsonl file")
    adapter: str | None = None
    generate: int | None = Field(None, ge=0, description="eval examples answered for exact_match [default: all]")
    max_new_tokens: int = Field(16, ge=1)
    match: Literal["exact", "first_word"] = "exact"
    max_length: int = Field(512, ge=16)

    @property
    def target(self) -> str:
        return f"{self.model}@{self.dataset}"


class Suite(BaseModel):
    """A parsed suite. ``path`` resolves the files it names (relative to the suite file)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME.pattern)
    description: str | None = None
    retrieval: list[RetrievalCheck] = Field(default_factory=list)
    answers: list[AnswersCheck] = Field(default_factory=list)
    task: list[TaskCheck] = Field(default_factory=list)

    @model_validator(mode="after")
    def _checks(self) -> Suite:
        ids = [c.id for c in self.checks]
        if not ids:
            raise ValueError("a suite lists at least one check: [[retrieval]], [[answers]] or [[task]]")
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"two checks have the id {twice[0]!r}: give one a distinct name = \"...\"")
        return self

    @property
    def checks(self) -> list[Check]:
        return [*self.retrieval, *self.answers, *self.task]

    def root(self) -> Path:
        """The folder the checks' relative paths start from (the suite file's)."""
        return next((c.file(Path(".")).resolve() for c in self.checks), Path(".").resolve())

    def rooted(self, root: Path) -> Suite:
        """This suite with its relative paths starting from ``root`` (a stored run's suite, run again)."""
        for check in self.checks:
            check._root = root
        return self

    def files(self) -> dict[str, Path]:
        """The data files the checks read themselves (question sets): as written -> where they are."""
        return {str(qa): check.file(qa) for check in self.checks if (qa := getattr(check, "qa", None)) is not None}

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


def load_suite(path: Path) -> tuple[Suite, str]:
    """The suite in ``path`` and the sha256 of its bytes. Any problem is one line naming the file and the
    field: a TOML error, an unknown key, a bad value, a question set that is not there."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise InvalidRequest(f"cannot read eval suite {path}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InvalidRequest(f"{path}: not valid TOML: {exc}") from None
    try:
        suite = Suite.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequest(f"{path}: {describe_error(exc, Suite, noun='key').replace('Value error, ', '')}") from None
    suite.rooted(Path(path).parent)
    for kind in ("retrieval", "answers"):
        for i, check in enumerate(getattr(suite, kind)):
            if not check.file(check.qa).is_file():
                raise InvalidRequest(f"{path}: {kind}.{i}.qa: no such file {check.file(check.qa)}")
    return suite, hashlib.sha256(raw).hexdigest()

