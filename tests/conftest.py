"""Shared fixtures: the real MNIST directory, a tiny CPU run config and a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from motioncore.config import RunConfig, from_dict

torch.set_num_threads(1)  # tiny tensors: threads cost more than they give, and a core is busy

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MNIST = Path(__file__).parents[2] / "shared" / "mnist"
UNREACHABLE = "http://127.0.0.1:9/"  # the discard port: connection refused at once


@pytest.fixture(scope="session", autouse=True)
def mnist_dir() -> Iterator[Path]:
    """The real MNIST directory, exported as $MOTIONCORE_DATA (subprocesses inherit it).

    Mirrors point at an unreachable local URL so no test ever downloads from the internet.
    """
    path = Path(os.environ.get("MOTIONCORE_DATA") or DEFAULT_MNIST).resolve()
    if not any((path / f"t10k-images-idx3-ubyte{ext}").exists() for ext in (".gz", "")):
        pytest.exit(f"no MNIST IDX files in {path}: set MOTIONCORE_DATA to the MNIST directory",
                    returncode=2)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MOTIONCORE_DATA", str(path))
        mp.setenv("MOTIONCORE_MNIST_MIRRORS", UNREACHABLE)
        yield path


@pytest.fixture
def tiny_config() -> Callable[..., RunConfig]:
    """Build a tiny CPU config (width 4, depth 1, 6 steps); keyword arguments override fields."""

    def make(**changes) -> RunConfig:
        base = dict(width=4, depth=1, steps=6, eval_every=3, val_size=16, test_size=16,
                    batch_size=8, device="cpu")
        return from_dict({**base, **changes})

    return make


@pytest.fixture
def run_cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    """Run ``python -m MODULE ARGS...`` in ``tmp_path`` with one CPU thread; return the result."""

    def run(module: str, *args: str, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
        full_env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                    "PYTHONPATH": str(REPO), **(env or {})}
        return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=tmp_path,
                              env=full_env, capture_output=True, text=True, timeout=timeout)

    return run


@pytest.fixture
def one_line_error() -> Callable[[str], str]:
    """Check that a failing CLI's stderr is one line with no traceback, and return that line."""

    def check(stderr: str) -> str:
        assert "Traceback" not in stderr, stderr
        lines = stderr.strip().splitlines()
        assert len(lines) == 1, stderr
        return lines[0]

    return check
