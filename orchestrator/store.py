"""The MLflow tracking store: its URI, a client that checks it answers, waits out a tracking
server's absence, and makes a new sqlite store once when two sweeps start together."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from motioncore import cli
from motioncore.config import UsageError
from orchestrator import console

if TYPE_CHECKING:  # mlflow takes seconds to import: the sweep imports it while Ray starts
    from mlflow.tracking import MlflowClient


def default_uri(root: Path) -> str:
    return f"sqlite:///{(root / 'mlflow.db').resolve()}"


def is_local(uri: str) -> bool:
    """A store in a file on this host (created on first use)."""
    return uri.startswith("sqlite:")


def sqlite_file(uri: str) -> Path | None:
    """The file of a ``sqlite:///PATH`` store, None for any other store."""
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def client_for(uri: str) -> MlflowClient:
    """A client for ``uri``, after checking the store answers (one clear line when it does not)."""
    if uri.startswith(("http://", "https://")):
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    db = sqlite_file(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
        if not os.access(db.parent, os.W_OK) or (db.exists() and not os.access(db, os.W_OK)):
            raise UsageError(f"--tracking-uri {uri!r}: the store is read-only here (sqlite needs "
                             "to write the file and its directory)")
    elif not uri.startswith(("http://", "https://", "postgresql", "mysql", "databricks")):
        raise UsageError(f"--tracking-uri {uri!r}: use sqlite:///PATH, http(s)://HOST:PORT or a "
                         "database URI (MLflow 3 has no file store)")
    for name in ("mlflow.store.db.utils", "alembic", "alembic.runtime.migration"):
        logging.getLogger(name).setLevel(logging.WARNING)  # schema set-up chatter on a new store
    from mlflow.tracking import MlflowClient

    if uri.startswith("postgresql"):
        os.environ.setdefault("PGCONNECT_TIMEOUT", "10")  # libpq: an unreachable host fails fast
    try:
        if not uri.startswith(("sqlite:", "http://", "https://", "databricks")):
            _ping_database(uri)  # once: MLflow itself retries an unreachable database for ~100 s
        with _creating(uri):  # a new sqlite store gets its schema here
            client = MlflowClient(tracking_uri=uri)  # a database URI needs its driver installed
            client.search_experiments(max_results=1)
    except Exception as e:  # any failure here means no trial could be logged
        reason = cli.first_line(e, 400)
        raise UsageError(f"--tracking-uri {uri!r}: the tracking store does not answer ({reason})") \
            from None
    return PatientClient(client, uri) if uri.startswith(("http://", "https://")) else client


def _ping_database(uri: str) -> None:
    """Connect to a database store once (its driver, host and credentials), or raise."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(uri, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect():
            pass
    finally:
        engine.dispose()


@contextlib.contextmanager
def _creating(uri: str):
    """Hold ``<store>.lock`` while a sqlite store is first opened: two sweeps creating the same
    new store at once would both run MLflow's schema migrations ("duplicate column name")."""
    db = sqlite_file(uri)
    if db is None:
        yield
        return
    import fcntl

    with open(f"{db}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


WAIT_ENV = "MOTIONCORE_TRACKING_WAIT_S"  # how long a sweep waits for a tracking server that went away
UNREACHABLE = ("Connection refused", "Max retries exceeded", "Failed to establish a new connection",
               "Read timed out", "RemoteDisconnected", "Connection aborted", "status code 502",
               "status code 503", "status code 504")


class PatientClient:
    """An ``MlflowClient`` for a tracking server that waits out the server's absence.

    A call that cannot reach the server (connection refused or cut, a gateway error) is tried
    again every few seconds for up to ``$MOTIONCORE_TRACKING_WAIT_S`` (default 15 minutes),
    saying once that it waits, so a server restarted mid-sweep costs the sweep nothing. A
    refused request never reached the server, so trying it again records nothing twice.
    """

    def __init__(self, client: MlflowClient, uri: str):
        self._client, self._uri = client, uri

    def __getattr__(self, name: str):

        method = getattr(self._client, name)
        if not callable(method):
            return method

        def patient(*args, **kwargs):
            since, limit = None, float(os.environ.get(WAIT_ENV, 900))
            while True:
                try:
                    result = method(*args, **kwargs)
                except Exception as e:
                    if not any(m in str(e) for m in UNREACHABLE):
                        raise
                    if since is None:
                        since = time.monotonic()
                        console.say(f"MLflow server {self._uri} does not answer; waiting for it (up to "
                                    f"{limit:.0f} s)...")
                    elif time.monotonic() - since >= limit:
                        raise
                    time.sleep(2.0)
                    continue
                if since is not None:
                    console.say(f"MLflow server {self._uri} is back after "
                                f"{time.monotonic() - since:.0f} s")
                return result

        return patient
