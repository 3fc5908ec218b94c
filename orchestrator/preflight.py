"""Checks before trials start on a multi-node cluster: shared storage, matching versions."""

from __future__ import annotations

import sys
from urllib.parse import urlparse

import ray

from motioncore.config import UsageError

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
