"""RAG: hybrid retrieval over the corpus's collections and grounded, cited answers (``aifab.rag``)."""

from aifab.rag.protocol import Passage, Reranker
from aifab.rag.service import Prepared, Rag

__all__ = ["Passage", "Prepared", "Rag", "Reranker"]
