"""benchmarks/gpu_wheels.py's packing: folders within the limit, big wheels cut and whole again."""

from __future__ import annotations

import importlib.util

from conftest import REPO

spec = importlib.util.spec_from_file_location("gpu_wheels", REPO / "benchmarks" / "gpu_wheels.py")
gpu_wheels = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_wheels)


def test_wheels_are_packed_into_folders_within_the_limit_and_big_ones_cut(tmp_path):
    sizes = {"big-1.0-py3-none-any.whl": 250, "a-1.0-py3-none-any.whl": 60,
             "b-1.0-py3-none-any.whl": 50, "c-1.0-py3-none-any.whl": 40}
    contents = {}
    for name, size in sizes.items():
        contents[name] = bytes(range(256)) * (size // 256 + 1)
        contents[name] = contents[name][:size]
        (tmp_path / name).write_bytes(contents[name])
    parts = gpu_wheels.pack(sorted(tmp_path.iterdir()), limit=100)
    assert all(sum(p.stat().st_size for p in part) <= 100 for part in parts)
    pieces = sorted(p.name for part in parts for p in part)
    chunks = [p for p in pieces if p.startswith("big-")]
    assert chunks == [f"big-1.0-py3-none-any.whl.chunk{i:02d}" for i in range(3)]
    joined = b"".join((tmp_path / c).read_bytes() for c in chunks)  # what gpu_session.sh does
    assert joined == contents["big-1.0-py3-none-any.whl"]
    assert {"a-1.0-py3-none-any.whl", "b-1.0-py3-none-any.whl", "c-1.0-py3-none-any.whl"} <= set(pieces)
    assert len(parts) == 4  # 250 + 150 bytes cannot fit in fewer folders of 100


def test_what_the_target_has_is_read_from_names_or_freeze_lines(tmp_path):
    have = tmp_path / "have.txt"
    have.write_text("# a comment\nNumPy==2.5.2\ntyping_extensions\nray @ file:///x.whl\n\n")
    assert gpu_wheels.read_have(have) == {"numpy", "typing-extensions", "ray"}
