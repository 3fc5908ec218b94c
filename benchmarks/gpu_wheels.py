"""Wheels for an offline GPU machine whose image has PyTorch but not the sweep's other packages.

    python benchmarks/gpu_wheels.py [--python 3.12] [--have FILE] [--out wheelhouse] [--part-mib 56]

Resolves the project's dependencies (all but torch, from pyproject.toml) for the target's Python
on manylinux x86-64, keeps those the target lacks (``--have``: package names, one per line or
``pip freeze`` lines; default ``benchmarks/gpu_image_packages.txt``, a CUDA PyTorch image), and
downloads them. Wheels are packed into folders ``OUT/1``, ``OUT/2``, ... of at most
``--part-mib`` MiB each, for machines that take files in limited batches; a wheel larger than
that (Ray's) is cut into chunks that ``gpu_session.sh`` joins again. ``gpu_session.sh`` installs
whatever it finds under ``wheelhouse/*/`` before its first part. Prints one JSON object: the
parts, their sizes and the wheels in each.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64",
             "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64")
MIB = 1 << 20


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_have(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            names.add(canonical(re.split(r"[=<>!~ @]", line, maxsplit=1)[0]))
    return names


def requirements() -> list[str]:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return [d for d in deps if canonical(re.split(r"[=<>!~\[ ]", d, maxsplit=1)[0]) != "torch"]


def target_flags(python: str) -> list[str]:
    flags = ["--only-binary=:all:", "--python-version", python, "--implementation", "cp"]
    for p in PLATFORMS:
        flags += ["--platform", p]
    return flags


def resolve(python: str) -> list[tuple[str, str]]:
    """(name, version) of every package the requirements need on the target, by pip's resolver."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
                        "--quiet", "--report", str(report), "--target", f"{tmp}/t",
                        *target_flags(python), *requirements()], check=True)
        installs = json.loads(report.read_text())["install"]
    return [(i["metadata"]["name"], i["metadata"]["version"]) for i in installs]


def pack(files: list[Path], limit: int) -> list[list[Path]]:
    """First-fit decreasing into parts of at most ``limit`` bytes; larger files are cut first."""
    pieces: list[Path] = []
    for f in files:
        if f.stat().st_size <= limit:
            pieces.append(f)
            continue
        data = f.read_bytes()
        for i in range(0, len(data), limit):
            chunk = f.with_name(f"{f.name}.chunk{i // limit:02d}")
            chunk.write_bytes(data[i:i + limit])
            pieces.append(chunk)
        f.unlink()
    parts: list[list[Path]] = []
    sizes: list[int] = []
    for p in sorted(pieces, key=lambda p: -p.stat().st_size):
        size = p.stat().st_size
        k = next((k for k, s in enumerate(sizes) if s + size <= limit), None)
        if k is None:
            parts.append([])
            sizes.append(0)
            k = len(parts) - 1
        parts[k].append(p)
        sizes[k] += size
    return parts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--python", default="3.12", help="the target's Python version (default 3.12)")
    p.add_argument("--have", type=Path, default=REPO / "benchmarks" / "gpu_image_packages.txt",
                   help="packages the target already has (names or pip freeze lines)")
    p.add_argument("--out", type=Path, default=REPO / "wheelhouse")
    p.add_argument("--part-mib", type=float, default=56,
                   help="the most one folder may hold, in MiB (default 56)")
    a = p.parse_args()
    have = read_have(a.have)
    missing = [(n, v) for n, v in resolve(a.python) if canonical(n) not in have]
    if a.out.exists() and any(a.out.iterdir()):
        raise SystemExit(f"--out {a.out} is not empty: remove it or name another folder")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp,
                        *target_flags(a.python), *(f"{n}=={v}" for n, v in missing)], check=True)
        parts = pack(sorted(Path(tmp).iterdir()), int(a.part_mib * MIB))
        summary = []
        for k, files in enumerate(parts, start=1):
            folder = a.out / str(k)
            folder.mkdir(parents=True)
            for f in files:
                f.rename(folder / f.name)
            mib = sum((folder / f.name).stat().st_size for f in files) / MIB
            summary.append({"folder": str(folder), "mib": round(mib, 1),
                            "files": sorted(f.name for f in files)})
    print(json.dumps({"python": a.python, "packages": len(missing),
                      "missing": [f"{n}=={v}" for n, v in missing], "parts": summary}))


if __name__ == "__main__":
    main()
