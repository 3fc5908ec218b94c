"""The README's recipes for extending the project, followed literally on a copy of the code.

Each test copies a package into ``tmp_path``, makes exactly the edits the README names, and runs
the real entry points with the copy first on ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from motioncore.attention import DESIGNS
from motioncore.config import RunConfig
from search_spaces import names

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def copy_package(name: str, tmp_path: Path) -> Path:
    shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path / name


def run_python(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=180)


def test_the_published_designs_and_documented_spaces_are_registered():
    """Independent of the registries: the three designs of the research table, the four spaces
    the README documents."""
    assert {"none", "motion", "segmentation"} <= set(DESIGNS)
    assert {"seed_table", "ablation", "hpo", "demo"} <= set(names())
    on_disk = {p.stem for p in (REPO / "search_spaces").glob("*.py")} - {"__init__", "space"}
    assert set(names()) == on_disk  # every space module is registered, nothing else


def test_the_readme_recipe_for_a_loss_term_works_as_written(tmp_path):
    """"Adding your own idea": one function and one ``Term`` in losses.py, ``mine_weight: float
    = 0`` in RunConfig; then ``--set mine_weight=0.1`` reaches the objective, and at 0 no run id
    changes."""
    assert 'Term("mine", mine, "mine_weight")' in README and "mine_weight: float = 0`" in README
    package = copy_package("motioncore", tmp_path)
    losses_py = package / "losses.py"
    text = losses_py.read_text()
    text = text.replace("UNSUPERVISED = (\n", 'UNSUPERVISED = (\n    Term("mine", mine, "mine_weight"),\n')
    losses_py.write_text(text.replace("# --- the quantities the terms take",
                                      "def mine(*, probs, target):\n"
                                      "    return (probs.sum(2).mean() - target.mean()).abs()\n\n\n"
                                      "# --- the quantities the terms take"))
    config_py = package / "config.py"
    anchor = "    # --- optimisation ---\n"
    config_py.write_text(config_py.read_text().replace(anchor, "    mine_weight: float = 0\n" + anchor))
    script = (
        "import torch\n"
        "from motioncore.config import RunConfig, from_dict\n"
        "from motioncore.losses import objective\n"
        "from orchestrator.plan import parse_sets\n"
        "sets = parse_sets(['mine_weight=0.1'])\n"
        "cfg = from_dict(dict(supervision='unsupervised', motion_range=1, **sets))\n"
        "frames = torch.rand(2, 3, 8, 8)\n"
        "loss, parts = objective(frames=frames, labels=None, logits=torch.randn(2, 1, 9, 8, 8),\n"
        "                        attention=None, config=cfg)\n"
        "print(sets['mine_weight'], 'loss_mine' in parts, RunConfig().hash())\n")
    r = run_python(tmp_path, "-c", script)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["0.1", "True", RunConfig().hash()]


def test_the_readme_recipe_for_an_attention_design_works_as_written(tmp_path):
    """"Adding an attention design": one function and one ``Design`` entry in attention.py; the
    config accepts it, the model fuses with it, and seed_table gains its four T=5 cells."""
    assert 'Design(mine_features, lambda k: 2)' in README
    attention_py = copy_package("motioncore", tmp_path) / "attention.py"
    text = attention_py.read_text().replace(
        "DESIGNS = {\n", 'DESIGNS = {\n    "mine": Design(mine_features, lambda k: 2),\n')
    attention_py.write_text(text.replace(
        "@dataclass(frozen=True)\nclass Design:",
        "def mine_features(*, probs, r):\n"
        "    return probs.amax(2)  # (N, 2, H, W): each side's confidence\n\n\n"
        "@dataclass(frozen=True)\nclass Design:"))
    script = (
        "import torch\n"
        "from motioncore.config import from_dict\n"
        "from motioncore.model import MotionNet\n"
        "from search_spaces import load\n"
        "cfg = from_dict(dict(frames=5, attention='mine', motion_range=1, width=4, depth=1))\n"
        "out = MotionNet(cfg)(torch.rand(3, 5, 12, 12))\n"
        "print(tuple(out.attention.shape), float(out.attention.std()) > 0)\n"
        "print(' '.join(c.id for c in load('seed_table').cells if 'mine' in c.id))\n")
    r = run_python(tmp_path, "-c", script)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["(3, 12, 12) True",
                                     "unsup_T5_mine_r1 unsup_T5_mine_r2 unsup_T5_mine_r3 "
                                     "unsup_T5_mine_r5"]


def test_a_new_sweep_is_one_file(tmp_path):
    """A module in search_spaces/ with a ``space()`` is a ``--space`` of the sweep CLI."""
    package = copy_package("search_spaces", tmp_path)
    (package / "mine.py").write_text(
        '"""One cell.\n\n    python -m orchestrator.sweep --space mine --seeds 3\n"""\n'
        "from search_spaces.space import Cell, Space\n\n\n"
        "def space() -> Space:\n"
        "    return Space(name='mine', description='one cell', baseline='only',\n"
        "                 cells=(Cell('only', {'motion_range': 2}),))\n")
    r = run_python(tmp_path, "-m", "orchestrator.sweep", "--space", "mine", "--plan", "--seeds", "2")
    assert r.returncode == 0, r.stderr
    assert "1 cells, 2 trials" in r.stdout and "only" in r.stdout
