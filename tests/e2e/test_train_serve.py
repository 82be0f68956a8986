"""`aifab train` → model package in the registry → plain transformers → `aifab up` → /v1/completions."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from openai import OpenAI

from aifab.testing.server import RemoteAifabServer
from aifab.testing.text import write_text_corpus
from aifab.training.config import ModelConfig
from aifab.training.model import Transformer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SMALL = ["--n-layer", "2", "--n-head", "2", "--n-embd", "32", "--block-size", "64", "--batch-size", "8",
         "--steps", "30", "--warmup", "5", "--eval-every", "10", "--eval-batches", "4", "--log-every", "10",
         "--sample-tokens", "8", "--threads", "1"]
MODELS = {
    # aifab's defaults (byte-level BPE, RoPE, RMSNorm, SwiGLU) -> Llama
    "shakes-llama": ["--vocab-size", "300"],
    # nanoGPT's shape (characters, learned positions, LayerNorm, GELU) -> GPT-2
    "shakes-gpt2": ["--tokenizer", "char", "--positions", "learned", "--norm", "layernorm", "--mlp", "gelu"],
}


def ours(package_dir, run_dir):
    manifest = json.loads((package_dir / "aifab.json").read_text())
    model = Transformer(ModelConfig.from_dict(manifest["lineage"]["model_config"]))
    model.load_state_dict(torch.load(run_dir / "train" / "best.pt", weights_only=False)["model"])
    return model.eval()


def test_trained_model_is_packaged_loads_in_transformers_and_is_served(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    corpus = write_text_corpus(tmp_path / "corpus")
    data = tmp_path / "data"
    for name, flags in MODELS.items():
        r = subprocess.run([sys.executable, "-m", "aifab.cli.main", "train", str(corpus), "--data-dir", str(data),
                            "--name", name, "--json", *SMALL, *flags], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        summary = json.loads(r.stdout)
        package = summary["package"]
        assert package["architecture"] == ("LlamaForCausalLM" if "llama" in name else "GPT2LMHeadModel")

        shown = subprocess.run([sys.executable, "-m", "aifab.cli.main", "models", "show", name, "--data-dir",
                                str(data), "--json"], capture_output=True, text=True, timeout=120)
        manifest = json.loads(shown.stdout)
        assert manifest["format"] == "safetensors" and manifest["kind"] == "completion"
        assert manifest["lineage"]["data_sha256"] == summary["data"]["sha256"]
        assert manifest["lineage"]["metrics"]["best_val_loss"] == summary["outcome"]["best_val_loss"]
        assert manifest["lineage"]["config"]["model"]["n_layer"] == 2 and manifest["context_length"] == 64

        # plain transformers, nothing of aifab: same logits as aifab's own model on the same text
        hf = AutoModelForCausalLM.from_pretrained(package["path"]).eval()
        tok = AutoTokenizer.from_pretrained(package["path"])
        ids = tok("HAMLET\nThe king shall speak", return_tensors="pt")["input_ids"]
        with torch.no_grad():
            expected = ours(tmp_path / package["path"], data / "runs" / name)(ids)[0]
            assert torch.allclose(hf(input_ids=ids).logits, expected, atol=1e-5)
        first_eval = next(json.loads(line) for line in (data / "runs" / name / "train" / "metrics.jsonl")
                          .read_text().splitlines() if '"eval"' in line)
        assert summary["outcome"]["best_val_loss"] < first_eval["val_loss"]  # it learned something

    with RemoteAifabServer(data, env={"AIFAB_MODELS__EXTRA": json.dumps(list(MODELS))}) as srv:
        client = OpenAI(base_url=f"{srv.url}/v1", api_key="unused", max_retries=0)
        assert set(MODELS) <= {m.id for m in client.models.list()}
        for name in MODELS:
            r = client.completions.create(model=name, prompt="HAMLET\n", max_tokens=8, temperature=0,
                                          extra_body={"ignore_eos": True})
            assert r.usage.completion_tokens == 8 and r.choices[0].text
            # greedy decoding through the server equals transformers' greedy generate on the package
            hf = AutoModelForCausalLM.from_pretrained(data / "models" / name).eval()
            tok = AutoTokenizer.from_pretrained(data / "models" / name)
            prompt = tok("HAMLET\n", return_tensors="pt")
            out = hf.generate(**prompt, max_new_tokens=8, min_new_tokens=8, do_sample=False)
            assert r.choices[0].text == tok.decode(out[0, prompt["input_ids"].shape[1]:])
