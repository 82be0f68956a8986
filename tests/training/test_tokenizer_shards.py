from __future__ import annotations

import numpy as np
import torch

from aifab.training.config import TokenizerConfig
from aifab.training.shards import BatchSampler, dtype_for, write_shard
from aifab.training.tokenizer import TextTokenizer, train_tokenizer

TEXT = "To be, or not to be: that is the question.\nWhether 'tis nobler in the mind to suffer\n" * 30


def test_char_tokenizer_fast_path_equals_the_tokenizer_and_round_trips(tmp_path):
    (tmp_path / "train.txt").write_text(TEXT)
    tok = train_tokenizer(tmp_path / "train.txt", TokenizerConfig(tokenizer="char"))
    assert tok.vocab_size == len(set(TEXT)) + 2  # + end-of-text and unknown
    sample = "Whether to be:\nthat"
    ids = tok.encode(sample)
    assert ids.tolist() == tok.tokenizer.encode(sample).ids
    assert tok.decode(ids.tolist()) == sample
    assert tok.encode("Z")[0] == tok.unk_id  # never seen in training
    tok.save(tmp_path / "tok")
    assert TextTokenizer.load(tmp_path / "tok").encode(sample).tolist() == ids.tolist()


def test_bpe_learns_merges_from_the_training_split_and_loads_in_transformers(tmp_path):
    (tmp_path / "train.txt").write_text(TEXT)
    tok = train_tokenizer(tmp_path / "train.txt", TokenizerConfig(vocab_size=300))
    ids = tok.encode("to be or not to be")
    assert len(ids) < len("to be or not to be") / 2  # merges learned
    assert tok.decode(ids.tolist()) == "to be or not to be"
    assert tok.decode(tok.encode("ünïcödé 🙂").tolist()) == "ünïcödé 🙂"  # byte-level: nothing is unknown
    tok.to_transformers(64).save_pretrained(tmp_path / "hf")
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert hf("to be or not to be")["input_ids"] == ids.tolist()
    assert hf.eos_token_id == tok.eos_id


def test_shard_is_streamed_in_pieces_with_the_same_ids(tmp_path):
    (tmp_path / "train.txt").write_text(TEXT)
    tok = train_tokenizer(tmp_path / "train.txt", TokenizerConfig(tokenizer="char"))
    n = write_shard(tmp_path / "train.txt", tok, tmp_path / "train.bin", piece_chars=100)
    ids = np.fromfile(tmp_path / "train.bin", dtype=np.uint16)
    assert n == len(TEXT) == len(ids)
    assert ids.tolist() == tok.encode(TEXT).tolist()
    assert dtype_for(50_000) is np.uint16 and dtype_for(70_000) is np.uint32


def test_sampler_is_reproducible_from_its_state():
    data = np.arange(1000, dtype=np.uint16)
    s = BatchSampler(data, block_size=16, batch_size=4, seed=3)
    next(s)
    state = s.state()
    x1, y1 = next(s)
    assert torch.equal(y1[:, :-1], x1[:, 1:]) and torch.equal(y1[:, -1], x1[:, -1] + 1)
    s2 = BatchSampler(data, block_size=16, batch_size=4, seed=99)
    s2.restore(state)
    x2, _ = next(s2)
    assert torch.equal(x1, x2)
