"""Process-wide settings that must be in place before any model runtime is loaded."""

from __future__ import annotations

import logging
import os

# torch and llama.cpp share one libgomp in this process. Once both have a thread team, libgomp sees
# more threads than cores and cuts every barrier's spin to almost nothing, so llama.cpp's decode
# (a barrier per graph node) sleeps and wakes at each one: 2.5x slower, measured. An active wait
# policy keeps barriers spinning, and a bounded spin count lets idle workers sleep soon after a
# step, so the event loop that streams tokens is not starved either.
OPENMP_DEFAULTS = {"OMP_WAIT_POLICY": "ACTIVE", "GOMP_SPINCOUNT": "100000"}


def configure_openmp() -> None:
    """Apply :data:`OPENMP_DEFAULTS` unless the user set them. libgomp reads them once, when it is
    first loaded, so this runs first thing in the CLI."""
    for key, value in OPENMP_DEFAULTS.items():
        os.environ.setdefault(key, value)


# Libraries that narrate their own start-up at INFO: faiss's loader tries its AVX512/AVX2 builds and logs
# each ModuleNotFoundError, alembic announces every migration step, model loaders draw progress bars.
# None of it is news to the person who ran `aifab up`; from WARNING up it is, and still shown.
CHATTY_LOGGERS = ("alembic", "faiss", "sentence_transformers", "transformers", "huggingface_hub", "httpx",
                  "filelock", "urllib3")
# uvicorn's own start-up and shutdown lines repeat what aifab's banner says
UVICORN_CHATTER = ("Started server process", "Waiting for application", "Application startup complete",
                   "Uvicorn running on", "Finished server process", "Application shutdown complete",
                   "Shutting down")


def quiet_libraries(level: str) -> None:
    """Keep a server's log to aifab's own lines and to what goes wrong: libraries' INFO chatter and
    weight-loading progress bars are off unless ``level`` is ``debug`` (then everything is shown). Runs
    before any library is imported: progress bars are read from the environment once."""
    if logging.getLevelName(level.upper()) == logging.DEBUG:
        return
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # huggingface_hub and transformers
    os.environ.setdefault("TQDM_DISABLE", "1")  # any other tqdm bar (sentence-transformers' own)
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("uvicorn.error").addFilter(_drop_uvicorn_chatter)


def _drop_uvicorn_chatter(record: logging.LogRecord) -> bool:
    return not (record.levelno <= logging.INFO and str(record.msg).startswith(UVICORN_CHATTER))
