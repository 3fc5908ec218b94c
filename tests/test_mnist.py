"""The MNIST reader on the real IDX files: parsing, splits, verification, download, errors."""

from __future__ import annotations

import functools
import gzip
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from motioncore import mnist

STEMS = tuple(mnist.FILES)


@functools.cache
def raw(directory: Path, stem: str) -> np.ndarray:
    """One real file parsed directly (not through the split logic)."""
    return mnist.parse_idx(gzip.decompress((directory / f"{stem}.gz").read_bytes()), stem)


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output clean
        pass


@contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve ``directory`` over HTTP on 127.0.0.1 (a free port); yield its base URL."""
    handler = functools.partial(QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def copy_files(src: Path, dst: Path, *stems: str) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for stem in stems:
        shutil.copyfile(src / f"{stem}.gz", dst / f"{stem}.gz")
    return dst


def assert_one_line_fix(message: str, directory: Path, filename: str) -> None:
    """A user-facing MnistError: one line naming the directory, the file and the fix."""
    assert "\n" not in message
    assert str(directory) in message
    assert filename in message
    assert mnist.ENV_VAR in message  # the fix: point $MOTIONCORE_DATA at good files


# --- parsing and splits --------------------------------------------------------------------

def test_real_files_parse_to_uint8_arrays(mnist_dir):
    train, test = raw(mnist_dir, STEMS[0]), raw(mnist_dir, STEMS[2])
    train_labels, test_labels = raw(mnist_dir, STEMS[1]), raw(mnist_dir, STEMS[3])
    assert train.shape == (60_000, 28, 28) and train.dtype == np.uint8
    assert test.shape == (10_000, 28, 28) and test.dtype == np.uint8
    assert train_labels.shape == (60_000,) and train_labels.dtype == np.uint8
    assert test_labels.shape == (10_000,) and test_labels.dtype == np.uint8
    assert set(np.unique(train_labels)) == set(range(10)) == set(np.unique(test_labels))
    assert train.max() == 255 and train.min() == 0
    assert test_labels[:5].tolist() == [7, 2, 1, 0, 4]  # the well-known first test digits
    assert train_labels[:5].tolist() == [5, 0, 4, 1, 9]


def test_splits_have_the_documented_sizes_and_sources(mnist_dir):
    train_file, test_file = raw(mnist_dir, STEMS[0]), raw(mnist_dir, STEMS[2])
    sizes = {s: mnist.load_split(s, mnist_dir).shape for s in ("train", "val", "test")}
    assert sizes == {"train": (50_000, 28, 28), "val": (10_000, 28, 28), "test": (10_000, 28, 28)}
    np.testing.assert_array_equal(mnist.load_split("train", mnist_dir), train_file[:50_000])
    np.testing.assert_array_equal(mnist.load_split("val", mnist_dir), train_file[50_000:])
    np.testing.assert_array_equal(mnist.load_split("test", mnist_dir), test_file)
    labels = {s: mnist.load_labels(s, mnist_dir) for s in ("train", "val", "test")}
    np.testing.assert_array_equal(labels["val"], raw(mnist_dir, STEMS[1])[50_000:])
    np.testing.assert_array_equal(labels["test"], raw(mnist_dir, STEMS[3]))
    assert [len(v) for v in labels.values()] == [50_000, 10_000, 10_000]


def test_default_directory_is_the_environment_variable(mnist_dir):
    assert mnist.data_dir() == mnist_dir
    assert mnist.data_dir("/elsewhere") == Path("/elsewhere")
    assert mnist.load_split("test").shape == (10_000, 28, 28)


def test_unknown_split_is_rejected(mnist_dir):
    with pytest.raises(mnist.MnistError, match="bogus.*train, val, test"):
        mnist.load_split("bogus", mnist_dir)


def test_parse_idx_reads_a_hand_made_file_and_rejects_bad_ones():
    pixels = bytes(range(12))
    images = b"\x00\x00\x08\x03" + (2).to_bytes(4, "big") + (2).to_bytes(4, "big") \
        + (3).to_bytes(4, "big") + pixels
    arr = mnist.parse_idx(images)
    assert arr.shape == (2, 2, 3) and arr.dtype == np.uint8
    assert arr.ravel().tolist() == list(range(12))
    labels = mnist.parse_idx(b"\x00\x00\x08\x01" + (3).to_bytes(4, "big") + bytes([7, 8, 9]))
    assert labels.tolist() == [7, 8, 9]
    for bad in (images[:-1], images + b"\x00", b"\x00\x00\x0d\x03" + images[4:], b"\x00\x00"):
        with pytest.raises(mnist.MnistError, match="bad header"):
            mnist.parse_idx(bad, "thing")


# --- verification errors -------------------------------------------------------------------

def test_checksum_mismatch_names_directory_file_problem_and_fix(mnist_dir, tmp_path):
    d = copy_files(mnist_dir, tmp_path / "mnist", "t10k-labels-idx1-ubyte").resolve()
    path = d / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(mnist.MnistError) as err:
        mnist.load_labels("test", d)
    message = str(err.value)
    assert_one_line_fix(message, d, "t10k-labels-idx1-ubyte.gz")
    assert "checksum" in message
    assert path.read_bytes() == bytes(data)  # reported, never silently replaced


def test_truncated_file_names_directory_file_problem_and_fix(mnist_dir, tmp_path):
    d = (tmp_path / "mnist").resolve()
    d.mkdir()
    full = (mnist_dir / "t10k-images-idx3-ubyte.gz").read_bytes()
    (d / "t10k-images-idx3-ubyte.gz").write_bytes(full[: len(full) // 2])
    with pytest.raises(mnist.MnistError) as err:
        mnist.load_split("test", d)
    message = str(err.value)
    assert_one_line_fix(message, d, "t10k-images-idx3-ubyte.gz")
    assert "truncated" in message


def test_truncated_plain_idx_file_is_reported_too(mnist_dir, tmp_path):
    d = (tmp_path / "plain").resolve()
    d.mkdir()
    plain = gzip.decompress((mnist_dir / "t10k-labels-idx1-ubyte.gz").read_bytes())
    (d / "t10k-labels-idx1-ubyte").write_bytes(plain[:-10])
    with pytest.raises(mnist.MnistError) as err:
        mnist.load_labels("test", d)
    assert_one_line_fix(str(err.value), d, "t10k-labels-idx1-ubyte")
    assert "checksum" in str(err.value)
    (d / "t10k-labels-idx1-ubyte").write_bytes(plain)  # and the intact plain file is accepted
    np.testing.assert_array_equal(mnist.load_labels("test", d), raw(mnist_dir, STEMS[3]))


def test_missing_directory_names_directory_file_problem_and_fix(tmp_path, monkeypatch):
    monkeypatch.setenv(mnist.MIRRORS_ENV_VAR, "http://127.0.0.1:9/")
    d = (tmp_path / "nowhere").resolve()
    with pytest.raises(mnist.MnistError) as err:
        mnist.load_split("test", d)
    message = str(err.value)
    assert_one_line_fix(message, d, "t10k-images-idx3-ubyte.gz")
    assert "missing" in message and "127.0.0.1:9" in message
    assert not d.exists() or not any(d.iterdir())  # nothing half-downloaded left behind


def test_uncreatable_directory_is_a_one_line_mnist_error(tmp_path, monkeypatch):
    monkeypatch.setenv(mnist.MIRRORS_ENV_VAR, "http://127.0.0.1:9/")
    (tmp_path / "a_file").write_text("not a directory")
    d = (tmp_path / "a_file" / "mnist").resolve()
    with pytest.raises(mnist.MnistError) as err:
        mnist.load_split("test", d)
    assert_one_line_fix(str(err.value), d, "t10k-images-idx3-ubyte.gz")


# --- download ------------------------------------------------------------------------------

def test_download_from_a_local_mirror_fills_an_empty_directory(mnist_dir, tmp_path, monkeypatch):
    target = (tmp_path / "cache" / "mnist").resolve()
    with serve(mnist_dir) as url:
        monkeypatch.setenv(mnist.MIRRORS_ENV_VAR, f"http://127.0.0.1:9/,{url}")  # first one fails
        train = mnist.load_split("train", target)
        test = mnist.load_split("test", target)
        labels = mnist.load_labels("train", target), mnist.load_labels("test", target)
    assert sorted(p.name for p in target.iterdir()) == sorted(f"{s}.gz" for s in STEMS)
    for stem in STEMS:
        assert (target / f"{stem}.gz").read_bytes() == (mnist_dir / f"{stem}.gz").read_bytes()
    np.testing.assert_array_equal(train, raw(mnist_dir, STEMS[0])[:50_000])
    np.testing.assert_array_equal(test, raw(mnist_dir, STEMS[2]))
    np.testing.assert_array_equal(labels[1], raw(mnist_dir, STEMS[3]))
    assert labels[0].shape == (50_000,)


def test_a_corrupt_mirror_leaves_no_file_with_the_real_name(mnist_dir, tmp_path, monkeypatch):
    stem = "t10k-labels-idx1-ubyte"
    bad = copy_files(mnist_dir, tmp_path / "bad_mirror", stem)
    data = bytearray((bad / f"{stem}.gz").read_bytes())
    data[100] ^= 0x01
    (bad / f"{stem}.gz").write_bytes(bytes(data))
    target = (tmp_path / "target").resolve()
    with serve(bad) as url:
        monkeypatch.setenv(mnist.MIRRORS_ENV_VAR, url)
        with pytest.raises(mnist.MnistError) as err:
            mnist.load_labels("test", target)
    assert_one_line_fix(str(err.value), target, f"{stem}.gz")
    assert "checksum" in str(err.value)
    assert not any(stem in p.name for p in target.iterdir())  # neither final nor partial file


def test_a_corrupt_mirror_falls_through_to_the_next(mnist_dir, tmp_path, monkeypatch):
    stem = "t10k-labels-idx1-ubyte"
    bad = copy_files(mnist_dir, tmp_path / "bad_mirror", stem)
    (bad / f"{stem}.gz").write_bytes(b"not gzip at all")
    target = (tmp_path / "target").resolve()
    with serve(bad) as bad_url, serve(mnist_dir) as good_url:
        monkeypatch.setenv(mnist.MIRRORS_ENV_VAR, f"{bad_url},{good_url}")
        labels = mnist.load_labels("test", target)
    np.testing.assert_array_equal(labels, raw(mnist_dir, STEMS[3]))
    assert [p.name for p in target.iterdir()] == [f"{stem}.gz"]


# --- the data CLI on missing data ----------------------------------------------------------

def test_data_cli_with_missing_data_dir_fails_with_one_line(tmp_path, run_cli, one_line_error):
    missing = tmp_path / "no_mnist_here"
    proc = run_cli("motioncore.data", "--data-dir", missing, "--n", "2",
                   env={mnist.MIRRORS_ENV_VAR: "http://127.0.0.1:9/"})
    assert proc.returncode != 0
    line = one_line_error(proc.stderr)
    assert str(missing) in line and mnist.ENV_VAR in line
