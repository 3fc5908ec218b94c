"""Shared fixtures: the real MNIST directory, a tiny CPU run config, a CLI runner, an MLflow server."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from motioncore.config import RunConfig, from_dict

torch.set_num_threads(1)  # tiny tensors: threads cost more than they give, and a core is busy

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MNIST = Path(__file__).parents[2] / "shared" / "mnist"
UNREACHABLE = "http://127.0.0.1:9/"  # the discard port: connection refused at once
# Nothing from the developer's shell may redirect a test's sweep: its tracking store, its storage,
# or a Ray cluster someone started with `ray start` on this machine.
ISOLATED = {"MOTIONCORE_TRACKING_URI": "", "MOTIONCORE_STORAGE_PATH": "", "RAY_ADDRESS": "local"}


def isolated_env(**extra: str) -> dict[str, str]:
    """The environment of a test's CLI subprocess: this one with ``ISOLATED``, one CPU thread and
    the repository importable; ``extra`` on top (read when called: fixtures' variables included)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO),
            **ISOLATED, **extra}


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_group(proc: subprocess.Popen, grace: float = 15) -> None:
    """End a process started with ``start_new_session=True`` and everything it spawned."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextlib.contextmanager
def mlflow_process(args: list[str], cwd: Path, port: int) -> Iterator[str]:
    """Run an MLflow server command (``args`` without ``--port``) until its /health answers;
    yield its URL; stop it and everything it spawned at the end."""
    url = f"http://127.0.0.1:{port}"
    log_path = cwd / f"mlflow-{port}.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([*args, "--port", str(port)], cwd=cwd, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 180
        try:
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"{' '.join(args)} did not answer /health:\n"
                                + log_path.read_text()[-3000:])
                time.sleep(0.5)
            yield url
        finally:
            stop_group(proc)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``mlflow server`` on 127.0.0.1 (sqlite store, local artifact root); yields its URL."""
    root = tmp_path_factory.mktemp("mlflow-server")
    args = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root}/srv.db",
            "--default-artifact-root", str(root / "art"), "--host", "127.0.0.1", "--workers", "1"]
    with mlflow_process(args, root, free_port()) as url:
        yield url
