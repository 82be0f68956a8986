"""The LiteLLM proxy as a baseline gateway: one worker, its default settings, one OpenAI-compatible upstream.

Runs ``litellm --config CFG --port P --num_workers 1`` from ``benchmarks/.venv-litellm`` (built by
``setup_litellm.sh``). The only settings are the ones it needs to start offline and accept calls: the
model entry, a master key, ``LITELLM_LOCAL_MODEL_COST_MAP`` (no fetch of the cost map) and
``LITELLM_TELEMETRY_DISABLED``. Everything else (its logging, callbacks, uvicorn access log) is left
as a plain deployment has it.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from aifab.testing.server import free_port, terminate, wait_ready

VENV = Path(__file__).resolve().parents[1] / ".venv-litellm"
MASTER_KEY = "sk-bench-master"

CONFIG = """model_list:
  - model_name: {model}
    litellm_params:
      model: openai/{model}
      api_base: {api_base}
      api_key: x
"""


class LiteLLMMissing(RuntimeError):
    pass


class LiteLLMProxy:
    """A LiteLLM proxy process in front of ``api_base`` (…/v1), serving ``model``; a context manager."""

    def __init__(self, api_base: str, *, model: str = "fake", venv: Path = VENV, work_dir: Path | None = None,
                 startup_timeout: float = 120.0) -> None:
        self.venv = venv
        exe = venv / "bin" / "litellm"
        if not exe.exists():
            raise LiteLLMMissing(f"{exe} not found: run `bash benchmarks/baselines/setup_litellm.sh`")
        self.work = Path(work_dir or tempfile.mkdtemp(prefix="litellm-bench-"))
        self.work.mkdir(parents=True, exist_ok=True)
        cfg = self.work / "litellm.yaml"
        cfg.write_text(CONFIG.format(model=model, api_base=api_base))
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.base}/v1"
        self.headers = {"Authorization": f"Bearer {MASTER_KEY}"}
        self.log_path = self.work / "litellm.log"
        env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY_DISABLED": "True",
               "LITELLM_MASTER_KEY": MASTER_KEY}
        env.pop("PYTHONPATH", None)  # aifab's source tree is nothing to LiteLLM's interpreter
        self._log = open(self.log_path, "wb")
        cmd = [str(exe), "--config", str(cfg), "--host", "127.0.0.1", "--port", str(self.port), "--num_workers", "1"]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=self.work)
        try:
            wait_ready(f"{self.base}/health/liveliness", self.proc, startup_timeout, "litellm", self.log)
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    def version(self) -> str:
        out = subprocess.run([str(self.venv / "bin" / "python"), "-c",
                              "from importlib.metadata import version; print(version('litellm'))"],
                             capture_output=True, text=True, check=False)
        return out.stdout.strip() or "?"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        terminate(self.proc)
        self._log.close()

    def __enter__(self) -> LiteLLMProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
