"""Fine-tuning datasets: built from the interaction log and its feedback, or imported from OpenAI-format
JSONL; deduplicated, split train/eval, versioned and hashed under ``<data_dir>/datasets``; and the lineage
from a fine-tuned model back to the interactions it learnt from."""

from aifab.finetune.datasets.build import build_from_logs
from aifab.finetune.datasets.dedup import dedupe
from aifab.finetune.datasets.importer import check_jsonl, import_jsonl, read_jsonl
from aifab.finetune.datasets.lineage import Lineage
from aifab.finetune.datasets.store import DatasetStore, DatasetVersion, Saved

__all__ = ["DatasetStore", "DatasetVersion", "Lineage", "Saved", "build_from_logs", "check_jsonl", "dedupe", "import_jsonl",
           "read_jsonl"]
