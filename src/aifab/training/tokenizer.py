"""The tokenizer stage: byte-level BPE or character-level, trained on the training split only.

Both are ``tokenizers.Tokenizer`` objects saved as ``tokenizer.json``, so the exported package loads
with ``AutoTokenizer``. The character tokenizer is a word-level model over single characters (a
``Split`` pre-tokenizer isolates each character, ``Fuse`` joins them back); characters never seen in
training map to ``<unk>``. Special tokens come after the ordinary ones, so character ids start at 0.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from aifab.training.config import TokenizerConfig

EOS = "<|endoftext|>"
UNK = "<unk>"
TOKENIZER_FILE = "tokenizer.json"


class TextTokenizer:
    """A trained tokenizer: ids for text, text for ids, and the fast path used to shard the corpus."""

    def __init__(self, tokenizer, kind: str) -> None:  # type: ignore[no-untyped-def]
        self.tokenizer = tokenizer
        self.kind = kind
        vocab = tokenizer.get_vocab()
        self.vocab_size = tokenizer.get_vocab_size()
        self.eos_id = vocab[EOS]
        self.unk_id = vocab.get(UNK)
        self._lut: tuple[np.ndarray, np.ndarray] | None = None
        if kind == "char":
            chars = sorted((ord(t), i) for t, i in vocab.items() if len(t) == 1)
            self._lut = (np.array([c for c, _ in chars], dtype=np.uint32), np.array([i for _, i in chars]))

    def encode(self, text: str) -> np.ndarray:
        """Token ids of ``text`` (int64). Character-level text is mapped with a lookup table, not per
        token through the tokenizer: the same ids, about 50x faster."""
        if self._lut is not None:
            codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
            keys, ids = self._lut
            pos = np.searchsorted(keys, codes).clip(0, len(keys) - 1)
            return np.where(keys[pos] == codes, ids[pos], self.unk_id).astype(np.int64)
        return np.asarray(self.tokenizer.encode(text, add_special_tokens=False).ids, dtype=np.int64)

    def decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save(str(directory / TOKENIZER_FILE))
        (directory / "tokenizer_meta.json").write_text(json.dumps({"kind": self.kind}))

    @classmethod
    def load(cls, directory: Path) -> TextTokenizer:
        from tokenizers import Tokenizer

        meta = json.loads((directory / "tokenizer_meta.json").read_text())
        return cls(Tokenizer.from_file(str(directory / TOKENIZER_FILE)), meta["kind"])

    def to_transformers(self, model_max_length: int):  # type: ignore[no-untyped-def]
        """The same tokenizer as a ``PreTrainedTokenizerFast`` (what ``save_pretrained`` writes)."""
        from transformers import PreTrainedTokenizerFast

        extra = {"unk_token": UNK} if self.unk_id is not None else {}
        return PreTrainedTokenizerFast(
            tokenizer_object=self.tokenizer, eos_token=EOS, bos_token=EOS, pad_token=EOS,
            model_max_length=model_max_length, clean_up_tokenization_spaces=False, **extra,
        )


def train_tokenizer(train_file: Path, cfg: TokenizerConfig) -> TextTokenizer:
    """Train on ``train_file`` (the training split only, streamed line by line)."""
    if cfg.tokenizer == "char":
        return _train_char(train_file)
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency, special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train([str(train_file)], trainer)
    return TextTokenizer(tok, "bpe")


def _train_char(train_file: Path, chunk: int = 1 << 20) -> TextTokenizer:
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    counts: Counter[str] = Counter()
    with open(train_file, encoding="utf-8", newline="") as fh:
        while block := fh.read(chunk):
            counts.update(block)
    vocab = {c: i for i, c in enumerate(sorted(counts))}
    for special in (EOS, UNK):
        vocab[special] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens([EOS, UNK])
    return TextTokenizer(tok, "char")
