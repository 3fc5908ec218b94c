"""Before trials start: connect to Ray, then check a multi-node cluster (shared storage, versions).

Only Ray is imported here, so the sweep can start Ray while MLflow is still importing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from urllib.parse import urlparse

import ray

from motioncore import cli
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


def check_remote_storage(uri: str, timeout_s: float = 60) -> None:
    """Refuse remote Tune storage (s3://...) that cannot be reached or read, in one line."""
    import pyarrow.fs

    def probe():
        fs, path = pyarrow.fs.FileSystem.from_uri(uri)
        fs.get_file_info(path)

    pool = ThreadPoolExecutor(1)
    try:
        pool.submit(probe).result(timeout=timeout_s)
    except FutureTimeout:
        raise UsageError(f"--storage-path {uri}: no answer within {timeout_s:.0f} s") from None
    except (OSError, ValueError, pyarrow.ArrowException) as e:
        reason = cli.first_line(e)
        raise UsageError(f"--storage-path {uri}: cannot be used ({reason})") from None
    finally:
        pool.shutdown(wait=False)


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
    """Start a new local Ray (no ``--address``, or ``local``) or join ``--address``; refuse
    per-trial resources no node can ever offer.

    True when this call connected (and the sweep should disconnect when done).
    """
    started = not ray.is_initialized()
    local = state.address in (None, "", "local")
    if started:
        os.environ.setdefault("RAY_DEDUP_LOGS", "1")
        os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
        # A local Ray prestarts one idle worker per CPU for tasks; Tune's trial actors never use
        # them, and on a small machine starting them takes CPU from the first trials (~1.3 s).
        if local:
            os.environ.setdefault("RAY_prestart_worker_first_driver", "0")
        kwargs = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
        if local:
            # "local", not None: None would join the cluster RAY_ADDRESS or the last `ray start`
            # on this machine names (another user's), and run the sweep there.
            with _loopback():
                ray.init(address="local", **kwargs)
        else:
            check_reachable(state.address)
            # Ray retries joining 20 times, ~40 s each, printing warnings; the address answered
            # just now, so one attempt tells.
            with _env_default("RAY_gcs_server_port_wait_time_s", "1"):
                try:
                    ray.init(address=state.address, **kwargs)
                except (ConnectionError, RuntimeError, ValueError) as e:
                    raise UsageError(f"--address {state.address!r}: cannot join a Ray cluster "
                                     f"({cli.first_line(e)})") from None
    try:
        check_fits(state, local=local)
    except BaseException:
        if started:
            ray.shutdown()  # a refused sweep leaves no Ray of its own running
        raise
    return started


@contextlib.contextmanager
def _env_default(name: str, value: str):
    """``os.environ[name]`` is ``value`` inside (unless the user set it), as it was after."""
    if name in os.environ:
        yield
        return
    os.environ[name] = value
    try:
        yield
    finally:
        os.environ.pop(name, None)


@contextlib.contextmanager
def _loopback():
    """Every server of a local Ray (GCS, raylet, agents, workers) listens on 127.0.0.1 only,
    and Ray's notice that a new local cluster uses token authentication (its default, kept)
    stays off stderr, which a refused sweep keeps for its one line.

    Ray turns a node address of 127.0.0.1 (``_node_ip_address``) into the host's routable one,
    and its servers then listen on all interfaces, except where multi-node clusters are off
    (its default on Windows and macOS): there the node address stays 127.0.0.1 and each server
    binds it. The processes ray.init starts inherit the variable; this driver reads the flag."""
    from ray._private import ray_constants

    notices = logging.getLogger("ray._private.authentication.authentication_token_setup")
    flag, level = ray_constants.ENABLE_RAY_CLUSTER, notices.level
    ray_constants.ENABLE_RAY_CLUSTER = False
    notices.setLevel(logging.ERROR)
    try:
        with _env_default(ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR, "0"):
            yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = flag
        notices.setLevel(level)


# The client preface of HTTP/2 and an empty SETTINGS frame: a gRPC server (Ray's GCS) answers
# with a SETTINGS frame (type 4, the fourth byte of its 9-byte header).
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def check_reachable(address: str, timeout_s: float = 5) -> None:
    """Refuse in one line, within seconds, an ``--address`` where no Ray cluster answers (Ray
    itself retries for many minutes). ``auto``: the cluster RAY_ADDRESS or the last
    ``ray start`` on this machine names."""
    from ray._private.services import canonicalize_bootstrap_address

    try:
        target = (address.split("://", 1)[1] if "://" in address
                  else canonicalize_bootstrap_address(address))
    except (ConnectionError, ValueError) as e:
        raise UsageError(f"--address {address!r}: {cli.first_line(e)}") from None
    if target is None:  # auto, and RAY_ADDRESS=local: ray.init starts a local Ray
        return
    host, _, port = target.rpartition(":")
    grpc = os.environ.get("RAY_USE_TLS", "0") in ("0", "")  # under TLS: no cleartext preface
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s) as sock:
            if grpc:
                sock.sendall(_H2_PREFACE)
                header = sock.recv(9)
    except (OSError, ValueError) as e:
        raise UsageError(f"--address {address!r}: no Ray cluster answers at {target} ({e}); "
                         "start it (ray start --head, ray up) or check the address") from None
    if grpc and (len(header) < 4 or header[3] != 4):
        raise UsageError(f"--address {address!r}: {target} answers, but not as a Ray cluster (no "
                         "gRPC server there); give the head's GCS address, HOST:6379 by default")


def has_autoscaler(wait_s: float = 15) -> bool:
    """Whether the joined cluster can start nodes on demand, as a ``ray up`` cluster can.

    Its monitor publishes a status every few seconds. A cluster of ``ray start`` commands has
    none to publish or runs Ray's read-only provider, which names each node's type after the
    node: it never adds a node."""
    from ray.experimental.internal_kv import _internal_kv_get

    with contextlib.suppress(Exception):
        from ray.autoscaler.v2.utils import is_autoscaler_v2

        if is_autoscaler_v2():
            return True  # its status is kept elsewhere; assume it scales, as before
    deadline = time.monotonic() + wait_s
    while not (status := _internal_kv_get("__autoscaling_status")):
        if time.monotonic() > deadline:
            return False
        time.sleep(1)
    types = (json.loads(status).get("autoscaler_report") or {}).get("node_type_mapping") or {}
    return any(kind != f"node_{node}" for node, kind in types.items())


def check_fits(state: SweepState, *, local: bool) -> None:
    """Refuse a trial's CPUs or GPUs that no node offers, unless the cluster has an autoscaler
    that may add a node that does (for GPUs: ask it for one and wait, ``wait_for_gpus``)."""
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    most = {k: max((r.get(k, 0) for r in nodes), default=0) for k in ("CPU", "GPU")}
    gpus = state.gpus_per_trial
    short_gpu = (gpus == "auto" and most["GPU"] == 0) or (gpus != "auto" and gpus > most["GPU"])
    if not short_gpu and state.cpus_per_trial <= most["CPU"]:
        return
    if not local and has_autoscaler():
        if short_gpu and most["GPU"] == 0:  # it starts GPU workers on demand
            most["GPU"] = wait_for_gpus()
            if gpus != "auto" and gpus > most["GPU"]:
                raise UsageError(f"--gpus-per-trial {gpus:g}: this Ray cluster has no GPUs and "
                                 "its autoscaler started no GPU node; use --gpus-per-trial 0")
        return  # CPUs, or more GPUs than one node has now: a larger node type may come
    if gpus != "auto" and gpus > most["GPU"]:
        raise UsageError(f"--gpus-per-trial {gpus:g}: " + (
            f"the most GPUs one node of this Ray cluster offers is {most['GPU']:g}, and it has "
            f"no autoscaler to add more; use --gpus-per-trial {most['GPU']:g} or less"
            if most["GPU"] else "this Ray cluster has no GPUs, and no autoscaler to start a GPU "
            "node; use --gpus-per-trial 0"))
    if state.cpus_per_trial > most["CPU"]:
        raise UsageError(f"--cpus-per-trial {state.cpus_per_trial:g}: the most CPUs one node of "
                         f"this Ray cluster offers is {most['CPU']:g}, so no trial could ever "
                         f"start; use --cpus-per-trial {most['CPU']:g} or less")


def wait_for_gpus(timeout_s: float = 900) -> float:
    """Ask the autoscaler for one GPU and wait for it; 0 when none comes (no GPU node types)."""
    from ray.autoscaler.sdk import request_resources

    print("no GPU node is up yet: asking the autoscaler for one (up to "
          f"{timeout_s / 60:.0f} min)...", flush=True)
    try:
        request_resources(bundles=[{"GPU": 1}])
    except Exception as e:  # noqa: BLE001 - a cluster without an autoscaler just has no GPUs
        print(f"  the cluster cannot scale ({cli.first_line(e, 120)})", flush=True)
        return 0.0
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ray.cluster_resources().get("GPU", 0) > 0:
            return ray.cluster_resources()["GPU"]
        time.sleep(10)
    return 0.0
