"""The cluster's tracking store: an MLflow server on a real PostgreSQL database outlives the server.

cluster.yaml's head runs ``mlflow server --backend-store-uri $MOTIONCORE_MLFLOW_DB`` (a
PostgreSQL database that ``ray down`` does not delete). Here a real PostgreSQL server (Debian's
package, run as its ``postgres`` user) backs a real ``mlflow server``; a sweep logs to it; the
server is stopped, as ``ray down`` would, and a new one on the same database still has every run.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import REPO, free_port, mlflow_process, stop_group

BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
pytestmark = pytest.mark.skipif(not BIN or os.geteuid() != 0,
                                reason="needs Debian's PostgreSQL package and root (runs it as postgres)")


@pytest.fixture(scope="module")
def postgres() -> str:
    """A PostgreSQL server on 127.0.0.1 with an empty ``mlflow`` database; yields its URI."""
    bin_dir = BIN[-1].parent
    user = pwd.getpwnam("postgres")
    root = Path(tempfile.mkdtemp(prefix="motioncore-pg-"))
    os.chown(root, user.pw_uid, user.pw_gid)

    def as_postgres(*args: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(["runuser", "-u", "postgres", "--", *args], capture_output=True,
                              text=True, timeout=120, **kw)

    done = as_postgres(str(bin_dir / "initdb"), "-D", str(root / "data"), "-U", "postgres",
                       "--auth=trust")
    assert done.returncode == 0, done.stderr
    port = free_port()
    proc = subprocess.Popen(["runuser", "-u", "postgres", "--", str(bin_dir / "postgres"), "-D",
                             str(root / "data"), "-p", str(port), "-k", str(root), "-c",
                             "listen_addresses=127.0.0.1"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while as_postgres(str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)).returncode:
            assert proc.poll() is None and time.monotonic() < deadline, "postgres did not start"
            time.sleep(0.5)
        made = as_postgres(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "mlflow")
        assert made.returncode == 0, made.stderr
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/mlflow"
    finally:
        stop_group(proc)
        shutil.rmtree(root, ignore_errors=True)


def _server(db: str, artifacts: Path) -> list[str]:
    return [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", db,
            "--default-artifact-root", str(artifacts), "--host", "127.0.0.1", "--workers", "1"]


def test_a_sweeps_runs_outlive_its_postgresql_backed_mlflow_server(postgres, tmp_path):
    from mlflow.tracking import MlflowClient

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "RAY_ADDRESS": "local",
           "MOTIONCORE_TRACKING_URI": "", "MOTIONCORE_STORAGE_PATH": ""}
    with mlflow_process(_server(postgres, tmp_path / "art"), tmp_path, free_port()) as url:
        done = subprocess.run([sys.executable, "-m", "orchestrator.sweep", "--space", "seed_table",
                               "--cells", "sup_T3_r1,sup_T3_r2", "--dry-run", "--tracking-uri", url,
                               "--out", str(tmp_path / "sweeps")], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        before = _runs(MlflowClient(url))
    assert len(before) == 3 and {r[1] for r in before.values()} == {"FINISHED"}  # parent, 2 trials
    # The server is gone (as with `ray down`); a new one on the same database has every run.
    with mlflow_process(_server(postgres, tmp_path / "art"), tmp_path, free_port()) as url:
        assert _runs(MlflowClient(url)) == before


def _runs(client) -> dict:
    exp = client.get_experiment_by_name("seed_table").experiment_id
    return {r.info.run_id: (r.info.run_name, r.info.status, r.data.metrics, r.data.params)
            for r in client.search_runs([exp])}
