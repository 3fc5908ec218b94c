"""Before trials start: connect to Ray, then check a multi-node cluster (shared storage, versions).

Only Ray is imported here, so the sweep can start Ray while MLflow is still importing.
"""

from __future__ import annotations

import os
import sys
import time
from urllib.parse import urlparse

import ray

from motioncore.config import UsageError
from orchestrator.state import SweepState

REMOTE_SCHEMES = {"s3", "gs", "gcs", "hdfs", "abfs", "az", "http", "https", "postgresql",
                  "mysql", "mssql", "databricks"}


def hosts() -> list[str]:
    """Distinct host addresses of the live nodes."""
    return sorted({n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive")})


def is_remote(uri: str) -> bool:
    """True when every node can reach ``uri`` without sharing this host's disk."""
    scheme = urlparse(uri).scheme.split("+")[0]
    return scheme in REMOTE_SCHEMES


def check_shared(tracking_uri: str, storage_path: str, host_list: list[str]) -> None:
    """Refuse a local tracking store or storage path while nodes live on different hosts."""
    if len(host_list) <= 1:
        return
    if not is_remote(storage_path):
        raise UsageError(f"--storage-path {storage_path!r} is local to this host, but the cluster "
                         f"spans {len(host_list)} hosts; use s3://BUCKET/PATH (or another shared store)")
    if not is_remote(tracking_uri):
        raise UsageError(f"--tracking-uri {tracking_uri!r} is local to this host, but the cluster "
                         f"spans {len(host_list)} hosts; use the head's MLflow server "
                         "(http://HEAD:5000)")


@ray.remote(num_cpus=0)
def _versions() -> tuple[str, str, str]:
    import socket

    import torch

    return socket.gethostname(), ray.__version__, torch.__version__


def node_versions() -> list[tuple[str, str, str]]:
    """(host, ray version, torch version) of every live node."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    refs = [_versions.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        n["NodeID"], soft=False)).remote() for n in ray.nodes() if n.get("Alive")]
    return ray.get(refs, timeout=120)


def warn_versions(versions: list[tuple[str, str, str]], out=None) -> bool:
    """Print a warning when nodes differ in Ray or torch; True when they do."""
    rays, torches = {v[1] for v in versions}, {v[2] for v in versions}
    if len(rays) > 1 or len(torches) > 1:
        print("warning: nodes run different versions: " + "; ".join(
            f"{h}: ray {r}, torch {t}" for h, r, t in versions), file=out or sys.stderr)
        return True
    return False


def run(tracking_uri: str, storage_path: str) -> None:
    """All checks for the connected cluster (a no-op on a one-host cluster that runs trials).

    A head that offers no CPUs (cluster.yaml's) runs no trial itself: its trials will run on
    workers the autoscaler has yet to start, on other hosts, so the storage checks apply.
    """
    alive = [n for n in ray.nodes() if n.get("Alive")]
    here = ray.get_runtime_context().get_node_id()
    head_runs_nothing = any(n["NodeID"] == here and n["Resources"].get("CPU", 0) == 0 for n in alive)
    host_list = hosts()
    if head_runs_nothing and len(host_list) == 1:
        host_list = [*host_list, "(autoscaled workers)"]
    check_shared(tracking_uri, storage_path, host_list)
    if len(alive) > 1:
        warn_versions(node_versions())


def connect_ray(state: SweepState) -> bool:
    """Start a local Ray (default) or join ``--address``; refuse GPUs the cluster lacks.

    True when this call connected (and the sweep should disconnect when done).
    """
    started = not ray.is_initialized()
    if started:
        os.environ.setdefault("RAY_DEDUP_LOGS", "1")
        os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
        # A local Ray prestarts one idle worker per CPU for tasks; Tune's trial actors never use
        # them, and on a small machine starting them takes CPU from the first trials (~1.3 s).
        if not state.address:
            os.environ.setdefault("RAY_prestart_worker_first_driver", "0")
        kwargs = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
        if state.address:
            try:
                ray.init(address=state.address, **kwargs)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise UsageError(f"--address {state.address!r}: cannot join a Ray cluster "
                                 f"({str(e).splitlines()[0][:200]})") from None
        else:
            ray.init(**kwargs)
    gpus = ray.cluster_resources().get("GPU", 0)
    wants = state.gpus_per_trial == "auto" or state.gpus_per_trial > 0
    if wants and gpus == 0 and state.address:
        gpus = wait_for_gpus()  # an autoscaling cluster starts its GPU workers on demand
    if state.gpus_per_trial != "auto" and state.gpus_per_trial > 0 and gpus == 0:
        raise UsageError(f"--gpus-per-trial {state.gpus_per_trial}: this Ray cluster has no GPUs; "
                         "use --gpus-per-trial 0")
    return started


def wait_for_gpus(timeout_s: float = 900) -> float:
    """Ask the autoscaler for one GPU and wait for it; 0 when none comes (no GPU node types)."""
    from ray.autoscaler.sdk import request_resources

    print("no GPU node is up yet: asking the autoscaler for one (up to "
          f"{timeout_s / 60:.0f} min)...", flush=True)
    try:
        request_resources(bundles=[{"GPU": 1}])
    except Exception as e:  # noqa: BLE001 - a cluster without an autoscaler just has no GPUs
        print(f"  the cluster cannot scale ({str(e).splitlines()[0][:120]})", flush=True)
        return 0.0
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ray.cluster_resources().get("GPU", 0) > 0:
            return ray.cluster_resources()["GPU"]
        time.sleep(10)
    return 0.0
