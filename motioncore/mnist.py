"""Find, download, verify and read the four MNIST IDX files.

The data directory is, in order: the ``--data-dir`` flag, the ``MOTIONCORE_DATA``
environment variable, or a per-user cache (``~/.cache/motioncore/mnist``). Missing
files are downloaded from the public mirrors (checksums verified); a corrupt or
truncated file is reported with one line naming the directory, the file, the
problem and the fix.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import sys
import urllib.request
from functools import lru_cache
from pathlib import Path

import numpy as np

ENV_VAR = "MOTIONCORE_DATA"
MIRRORS_ENV_VAR = "MOTIONCORE_MNIST_MIRRORS"  # comma-separated base URLs, tried in order
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
CONNECT_TIMEOUT_S = 10.0

# Published SHA-256 of the .gz files and MD5 of their decompressed IDX contents.
FILES = {
    "train-images-idx3-ubyte": (
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "6bbc9ace898e44ae57da46a324031adb",
    ),
    "train-labels-idx1-ubyte": (
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "a25bea736e30d166cdddb491f175f624",
    ),
    "t10k-images-idx3-ubyte": (
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "2646ac647ad5339dbf082846283269ea",
    ),
    "t10k-labels-idx1-ubyte": (
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        "27ae3e4e09519cfbb04c329615203637",
    ),
}
# split -> (file stem, first image, end image)
SPLITS = {
    "train": ("train-images-idx3-ubyte", 0, 50_000),
    "val": ("train-images-idx3-ubyte", 50_000, 60_000),
    "test": ("t10k-images-idx3-ubyte", 0, 10_000),
}


class MnistError(Exception):
    """A user-fixable problem with the MNIST files; its message is one line."""


def user_cache() -> Path:
    """motioncore's per-user cache: ``$XDG_CACHE_HOME/motioncore``, default ``~/.cache/motioncore``."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "motioncore"


def data_dir(flag: str | os.PathLike | None = None) -> Path:
    """The directory holding the IDX files: flag, else $MOTIONCORE_DATA, else the user cache."""
    if flag:
        return Path(flag).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    return user_cache() / "mnist"


def _fix(directory: Path) -> str:
    return (
        f"put the four MNIST IDX files (.gz or plain) in {directory}, or point --data-dir / "
        f"${ENV_VAR} at a directory that has them"
    )


def _mirrors() -> list[str]:
    env = os.environ.get(MIRRORS_ENV_VAR)
    return [m.strip() for m in env.split(",") if m.strip()] if env else list(MIRRORS)


def _download(stem: str, directory: Path) -> Path:
    """Fetch ``stem.gz`` into ``directory``; only a verified file ever gets its final name."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MnistError(f"{directory}: {stem}.gz is missing and the directory cannot be created "
                         f"({e.strerror}); " + _fix(directory)) from None
    final = directory / f"{stem}.gz"
    # A part file of this process's own: concurrent trials may download into one directory.
    part = directory / f".{stem}.gz.{os.getpid()}.part"
    errors = []
    for base in _mirrors():
        url = base.rstrip("/") + f"/{stem}.gz"
        try:
            with urllib.request.urlopen(url, timeout=CONNECT_TIMEOUT_S) as resp, open(part, "wb") as f:
                total = int(resp.headers.get("Content-Length") or 0)
                done = 0
                while chunk := resp.read(1 << 20):
                    f.write(chunk)
                    done += len(chunk)
                    if total:
                        print(f"\rdownloading {url}: {done * 100 // total:3d}%", end="", file=sys.stderr)
                print(file=sys.stderr)
            if hashlib.sha256(part.read_bytes()).hexdigest() != FILES[stem][0]:
                raise OSError("checksum mismatch")
            part.replace(final)
            return final
        except (OSError, ValueError) as e:
            errors.append(f"{url}: {getattr(e, 'reason', e)}")
        finally:
            part.unlink(missing_ok=True)
    raise MnistError(
        f"{directory}: {stem}.gz is missing and could not be downloaded ({'; '.join(errors)}); "
        + _fix(directory)
    )


def _read_verified(stem: str, directory: Path) -> bytes:
    """The decompressed IDX bytes of one file, checked against the published checksums."""
    gz, plain = directory / f"{stem}.gz", directory / stem
    if gz.exists():
        raw = gz.read_bytes()
        if hashlib.sha256(raw).hexdigest() != FILES[stem][0]:
            raise MnistError(
                f"{directory}: {gz.name} fails its SHA-256 checksum (corrupt or truncated); "
                f"delete it to re-download, or " + _fix(directory)
            )
        return gzip.decompress(raw)
    if plain.exists():
        data = plain.read_bytes()
        if hashlib.md5(data).hexdigest() != FILES[stem][1]:
            raise MnistError(
                f"{directory}: {plain.name} fails its MD5 checksum (corrupt or truncated); "
                + _fix(directory)
            )
        return data
    return gzip.decompress(_download(stem, directory).read_bytes())


def parse_idx(data: bytes, name: str = "IDX data") -> np.ndarray:
    """Parse IDX bytes (magic 2051 images / 2049 labels, big-endian) into a uint8 array."""
    if len(data) < 8 or data[0] != 0 or data[1] != 0 or data[2] != 0x08 or data[3] not in (1, 3):
        raise MnistError(f"{name}: bad header (not an unsigned-byte IDX1/IDX3 file)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise MnistError(f"{name}: bad header (truncated)")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        raise MnistError(f"{name}: bad header (declares {shape}, {expected} bytes; file has {len(data)})")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


@lru_cache(maxsize=8)
def _load_file(stem: str, directory: Path) -> np.ndarray:
    return parse_idx(_read_verified(stem, directory), f"{directory}/{stem}")


def load_split(split: str, directory: str | os.PathLike | None = None) -> np.ndarray:
    """The digit images of one split as uint8 ``(N, 28, 28)``: train 50k, val 10k, test 10k."""
    if split not in SPLITS:
        raise MnistError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
    stem, start, end = SPLITS[split]
    return _load_file(stem, data_dir(directory).resolve())[start:end]


def load_labels(split: str, directory: str | os.PathLike | None = None) -> np.ndarray:
    """The digit classes (0-9) of one split, aligned with ``load_split``."""
    if split not in SPLITS:
        raise MnistError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
    stem, start, end = SPLITS[split]
    return _load_file(stem.replace("images-idx3", "labels-idx1"), data_dir(directory).resolve())[
        start:end
    ]
