"""cluster.yaml validity, its pinned versions, multi-node preflight and GPU packing arithmetic."""

from __future__ import annotations

import contextlib
import os
import re
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from motioncore.config import UsageError
from orchestrator import gpu, preflight

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def test_cluster_yaml_passes_rays_own_preparation_and_schema(cluster):
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(cluster)
    validate_config(prepared)
    assert prepared["provider"]["type"] == "aws"
    workers = prepared["available_node_types"]["gpu_worker"]
    assert workers["min_workers"] == 0 and workers["max_workers"] >= 1
    assert workers["node_config"]["InstanceType"].startswith(("g5", "g6", "p"))


def _pins_in_pyproject() -> dict[str, str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = {}
    for dep in deps:
        m = re.match(r"([a-zA-Z0-9_-]+)(\[[^\]]*\])?==(\S+)", dep)
        if m:
            pins[m.group(1).lower()] = m.group(3)
    return pins


def test_setup_commands_install_exactly_the_pinned_versions(cluster):
    pins = _pins_in_pyproject()
    assert {"torch", "ray", "optuna", "mlflow", "pyarrow", "numpy"} <= set(pins)
    text = " ".join(cluster["setup_commands"])
    found = {m.group(1).lower(): m.group(3)
             for m in re.finditer(r"([a-zA-Z0-9_-]+)(\[[^\]]*\])?==([^\s\"']+)", text)}
    for name, version in pins.items():
        assert found.get(name) == version, f"{name}: cluster.yaml has {found.get(name)}, pyproject {version}"
    # The project itself goes in without re-resolving its dependencies.
    assert "--no-deps -e ~/motioncore" in text


def test_only_ssh_is_open_to_the_world_and_services_bind_privately(cluster):
    rules = cluster["provider"]["security_group"]["IpPermissions"]
    for rule in rules:
        world = any(r.get("CidrIp") == "0.0.0.0/0" for r in rule.get("IpRanges", []))
        if world:
            assert (rule["FromPort"], rule["ToPort"]) == (22, 22)
    head = " ".join(cluster["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head
    assert "mlflow server" in head and "--host 0.0.0.0" not in head
    assert "--host $(hostname -I" in head  # the head's private address


def test_bucket_is_named_in_one_place():
    text = (ROOT / "cluster.yaml").read_text()
    assert len(re.findall(r"s3://[a-z0-9.-]+", text)) == 1


@pytest.mark.parametrize("uri,remote", [
    ("s3://bucket/ray", True), ("gs://b/x", True), ("http://10.0.0.1:5000", True),
    ("postgresql://u@h/db", True), ("/home/me/ray", False), ("sqlite:///tmp/m.db", False),
    ("file:///tmp/x", False), ("relative/dir", False)])
def test_remote_uris(uri, remote):
    assert preflight.is_remote(uri) is remote


def test_local_stores_are_refused_across_hosts():
    two = ["10.0.0.1", "10.0.0.2"]
    with pytest.raises(UsageError, match="--storage-path '/tmp/ray' is local"):
        preflight.check_shared("http://10.0.0.1:5000", "/tmp/ray", two)
    with pytest.raises(UsageError, match="--tracking-uri 'sqlite:///m.db' is local"):
        preflight.check_shared("sqlite:///m.db", "s3://b/ray", two)
    preflight.check_shared("http://10.0.0.1:5000", "s3://b/ray", two)
    preflight.check_shared("sqlite:///m.db", "/tmp/ray", ["10.0.0.1"])  # one host: all local is fine


def test_version_mismatch_warns(capsys):
    assert not preflight.warn_versions([("a", "2.60.0", "2.13.0"), ("b", "2.60.0", "2.13.0")])
    assert preflight.warn_versions([("a", "2.60.0", "2.13.0"), ("b", "2.59.0", "2.13.0")])
    assert "different versions" in capsys.readouterr().err


GiB = 2**30


@pytest.mark.parametrize("peak,total,expected", [
    (0.4 * GiB, 80 * GiB, gpu.MAX_PER_GPU),  # tiny trials: capped
    (10 * GiB, 80 * GiB, 6),  # 64 GiB usable / (10 + 0.59) GiB
    (30 * GiB, 80 * GiB, 2),
    (70 * GiB, 80 * GiB, 1),  # does not fit twice; never below one
    (2 * GiB, 24 * GiB, 7),  # an A10G: 19.2 GiB usable / 2.59 GiB
])
def test_trials_per_gpu(peak, total, expected):
    assert gpu.trials_per_gpu(int(peak), int(total)) == expected


def test_fraction_leaves_room_for_every_packed_trial():
    for per in range(1, 9):
        f = gpu.fraction(per)
        assert f * per <= 1.0 and f > 0
        assert int(1 / f + 1e-9) >= per
    assert gpu.fraction(1) == 1.0 and gpu.fraction(3) == 0.33


def test_packing_rejects_nonsense():
    with pytest.raises(ValueError):
        gpu.trials_per_gpu(-1, GiB)
    with pytest.raises(ValueError):
        gpu.trials_per_gpu(GiB, 0)


def test_mps_is_detected_by_its_control_pipe(tmp_path):
    env = {"CUDA_MPS_PIPE_DIRECTORY": str(tmp_path)}
    assert not gpu.mps_running(env)
    (tmp_path / "control").touch()  # the daemon's named pipe
    assert gpu.mps_running(env)
    assert gpu.mps_running({}) == (Path("/tmp/nvidia-mps") / "control").exists()


def test_gpu_workers_start_mps_before_ray(cluster):
    commands = cluster["worker_start_ray_commands"]
    mps = next(i for i, c in enumerate(commands) if "nvidia-cuda-mps-control -d" in c)
    assert mps < next(i for i, c in enumerate(commands) if "ray start" in c)


def test_the_clusters_mlflow_server_keeps_runs_in_a_database_ray_down_leaves(cluster):
    """Named once (setup_commands), a PostgreSQL URI; no sqlite file on the head's disk."""
    setup = " ".join(cluster["setup_commands"])
    named = re.findall(r"export MOTIONCORE_MLFLOW_DB=(\S+)'", setup)
    assert len(named) == 1 and named[0].startswith("postgresql+psycopg2://")
    head = " ".join(cluster["head_start_ray_commands"])
    assert "--backend-store-uri $MOTIONCORE_MLFLOW_DB" in head
    assert "sqlite" not in (ROOT / "cluster.yaml").read_text()
    assert "psycopg2-binary" in setup  # MLflow's PostgreSQL driver


def _listening_on(port: int) -> set[str]:
    """The local addresses (hex, as /proc/net/tcp* gives them) of sockets listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for row in list(f)[1:]:
                local, state = row.split()[1], row.split()[3]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    found.add(local.rsplit(":", 1)[0])
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's socket tables")
def test_a_local_sweep_starts_its_own_ray_listening_on_loopback_only(monkeypatch):
    import ray

    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")  # a cluster someone else named: not joined
    monkeypatch.delenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", raising=False)
    state = SimpleNamespace(address=None, cpus_per_trial=1.0, gpus_per_trial=0.0)
    assert preflight.connect_ray(state)
    try:
        node = ray.nodes()[0]
        assert node["NodeManagerAddress"] == "127.0.0.1"
        ports = [int(ray.get_runtime_context().gcs_address.rsplit(":", 1)[1]),
                 node["NodeManagerPort"], node["ObjectManagerPort"]]
        for port in ports:
            hosts = _listening_on(port)
            # 127.0.0.1, alone or IPv4-mapped in an IPv6 socket; never all interfaces
            assert hosts and all(h.endswith("0100007F") for h in hosts), (port, hosts)
    finally:
        ray.shutdown()
    assert "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" not in os.environ  # only Ray's processes had it
