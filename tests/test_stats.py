"""The paired difference to the baseline and its interval, against hand-computed cases."""

from __future__ import annotations

import math

import pytest

from orchestrator.report import PAIRED_METRICS, _delta, paired_rows
from orchestrator.stats import paired


def test_paired_interval_matches_a_hand_computed_case():
    # differences 0.10, 0.05, 0.15: mean 0.10, sd 0.05, t(0.975, 2) = 4.302653
    p = paired({0: 0.90, 1: 0.80, 2: 0.85, 7: 0.5}, {0: 0.80, 1: 0.75, 2: 0.70, 9: 0.1})
    half = 4.302653 * 0.05 / math.sqrt(3)
    assert p.n == 3  # seeds 7 and 9 have no partner
    assert p.mean == pytest.approx(0.10)
    assert (p.low, p.high) == (pytest.approx(0.10 - half, abs=1e-6), pytest.approx(0.10 + half, abs=1e-6))
    assert not p.significant  # [-0.024, 0.224] contains zero


def test_a_consistent_gain_is_significant_and_one_seed_has_no_interval():
    # differences 0.02, 0.03, 0.025, 0.021: sd is small next to the mean
    p = paired({0: 0.52, 1: 0.53, 2: 0.525, 3: 0.521}, {0: 0.5, 1: 0.5, 2: 0.5, 3: 0.5})
    assert p.significant and p.low > 0
    worse = paired({0: 0.4, 1: 0.41}, {0: 0.5, 1: 0.5})
    assert worse.significant and worse.high < 0
    one = paired({0: 0.9}, {0: 0.8, 1: 0.7})
    assert one.n == 1 and one.mean == pytest.approx(0.1) and math.isnan(one.low)
    assert not one.significant
    assert paired({0: float("nan")}, {0: 0.5}).n == 0  # a failed seed is no pair


def test_the_table_marks_significant_cells_and_says_n_a_below_two_seeds():
    base = {"cell": "b"}
    sig = {"cell": "x", "paired_acc_fg": paired({0: 0.6, 1: 0.61, 2: 0.62}, {0: 0.5, 1: 0.5, 2: 0.51})}
    lone = {"cell": "y", "paired_acc_fg": paired({0: 0.6}, {0: 0.5})}
    assert _delta("acc_fg", base, "b") == "baseline"
    assert _delta("acc_fg", sig, "b").endswith("]*") and _delta("acc_fg", sig, "b").startswith("+10.")
    assert _delta("acc_fg", lone, "b") == "n/a"
    rows = paired_rows([{**sig, **{f"paired_{m}": sig["paired_acc_fg"] for m in PAIRED_METRICS}}],
                       "b")
    assert {r["metric"] for r in rows} == {"acc", "acc_fg", "fg_net"}
    assert all(r["significant"] for r in rows)
    assert rows[0]["n_pairs"] == 3 and rows[0]["ci95_low_pct"] > 0
