"""The run config: loud rejection of typos and bad values, derived values, parsing, hashing."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import typing

import pytest

from motioncore.config import (
    FIELDS,
    RunConfig,
    UsageError,
    add_config_flags,
    config_from_flags,
    from_dict,
    parse_value,
)


def test_defaults_are_valid_and_round_trip():
    cfg = RunConfig()
    assert from_dict(cfg.to_dict()) == cfg
    assert tuple(cfg.to_dict()) == FIELDS
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.frames = 5  # never mutated: replace() makes a new one


def test_unknown_key_is_rejected_with_the_valid_keys():
    with pytest.raises(UsageError) as err:
        from_dict({"motion_rnage": 2})
    message = str(err.value)
    assert "'motion_rnage'" in message and "\n" not in message
    for name in FIELDS:
        assert name in message


@pytest.mark.parametrize("changes,named", [
    ({"frames": 4}, "frames=4"),
    ({"noise": 2}, "noise=2"),
    ({"noise": -0.1}, "noise=-0.1"),
    ({"supervision": "x"}, "supervision='x'"),
    ({"attention": "magic", "frames": 5}, "attention='magic'"),
    ({"motion_range": 0}, "motion_range=0"),
    ({"batch_size": 0}, "batch_size=0"),
    ({"eval_every": 0}, "eval_every=0"),
    ({"lr": 0}, "lr=0"),
    ({"lr": -1e-3}, "lr=-0.001"),
    ({"ema": 1.0}, "ema=1.0"),
    ({"device": "tpu"}, "device='tpu'"),
])
def test_bad_values_are_rejected_naming_them(changes, named):
    with pytest.raises(UsageError) as err:
        from_dict(changes)
    assert named in str(err.value) and "\n" not in str(err.value)


def test_choices_are_listed_when_rejected():
    with pytest.raises(UsageError, match="supervised, unsupervised"):
        from_dict({"supervision": "x"})
    with pytest.raises(UsageError, match="3, 5"):
        from_dict({"frames": 4})


@pytest.mark.parametrize("changes", [
    {"frames": 3.0},
    {"frames": "three"},
    {"width": True},
    {"noise": True},
    {"supervision": 1},
    {"disappear": 1},
    {"disappear": "maybe"},
    {"lr": [0.1]},
    {"device": None},
])
def test_wrong_types_are_rejected(changes):
    with pytest.raises(UsageError, match=next(iter(changes))):
        from_dict(changes)


def test_strings_and_ints_are_converted_to_the_field_type():
    cfg = from_dict({"frames": "5", "lr": "0.01", "noise": 1, "disappear": "true", "ema": 0})
    assert cfg.frames == 5 and cfg.lr == 0.01 and cfg.disappear is True
    assert isinstance(cfg.noise, float) and cfg.noise == 1.0 and isinstance(cfg.ema, float)


@pytest.mark.parametrize("attention", ["motion", "segmentation"])
def test_attention_needs_five_frames(attention):
    with pytest.raises(UsageError, match="frames=5"):
        from_dict({"frames": 3, "attention": attention})
    assert from_dict({"frames": 5, "attention": attention}).attention == attention


@pytest.mark.parametrize("changes", [{"lr": "nan"}, {"lr": float("inf")}, {"recon_weight": "nan"}])
def test_non_finite_floats_are_rejected(changes):
    with pytest.raises(UsageError):
        from_dict(changes)


@pytest.mark.parametrize("r,k", [(1, 9), (2, 25), (3, 49), (5, 121)])
def test_num_classes_is_derived_from_the_motion_range(r, k):
    cfg = from_dict({"motion_range": r})
    assert cfg.num_classes == k
    assert cfg.num_outputs == k
    assert from_dict({"motion_range": r, "disappear": True}).num_outputs == k + 1
    assert "num_classes" not in cfg.to_dict()  # derived, never stored twice


def test_directions_follow_frames():
    assert from_dict({"frames": 3}).directions == 1
    assert from_dict({"frames": 5}).directions == 2


@pytest.mark.parametrize("text,value", [
    ("true", True), ("True", True), ("1", True), ("yes", True), ("on", True),
    ("false", False), ("0", False), ("no", False), ("OFF", False),
])
def test_parse_value_bools(text, value):
    assert parse_value("disappear", text) is value


def test_parse_value_numbers_and_strings():
    assert parse_value("width", "32") == 32 and isinstance(parse_value("width", "32"), int)
    assert parse_value("lr", "1e-3") == 1e-3
    assert parse_value("norm", "group") == "group"
    for name, text in [("width", "3.5"), ("width", "wide"), ("lr", "fast"), ("disappear", "maybe")]:
        with pytest.raises(UsageError, match=name):
            parse_value(name, text)
    with pytest.raises(UsageError, match="valid keys"):
        parse_value("nope", "1")


def test_hash_ignores_seed_and_device_but_nothing_else():
    base = RunConfig()
    assert base.hash() == base.replace(seed=7).hash() == base.replace(device="cpu").hash()
    assert base.hash() != base.replace(lr=1e-3).hash()
    assert base.hash() != base.replace(eval_seed=1).hash()
    assert len(base.hash()) == 12
    assert base.hash() == RunConfig().hash()  # stable


def test_only_fields_away_from_their_default_enter_the_hash():
    """So a field added later (at a default that keeps the old behaviour) changes no recorded
    run's id, and resuming a sweep still finds its trials: by rule, with no list to keep."""
    def sha(d: dict) -> str:
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]

    assert RunConfig().hash() == sha({})
    assert RunConfig(lr=1e-3, frames=5, seed=3).hash() == sha({"frames": 5, "lr": 1e-3})
    for field in FIELDS:
        default = getattr(RunConfig, field)
        assert RunConfig(**{field: default}).hash() == sha({}), field


def test_replace_validates():
    assert RunConfig().replace(frames=5).frames == 5
    with pytest.raises(UsageError):
        RunConfig().replace(frames=4)


def test_config_flags_override_the_base():
    parser = argparse.ArgumentParser()
    add_config_flags(parser)
    args = parser.parse_args(["--motion-range", "2", "--disappear", "true", "--lr", "0.01"])
    cfg = config_from_flags(args, RunConfig(width=8))
    assert (cfg.motion_range, cfg.disappear, cfg.lr, cfg.width) == (2, True, 0.01, 8)
    with pytest.raises(UsageError, match="frames"):
        config_from_flags(parser.parse_args(["--frames", "4"]))


def test_a_field_typed_float_with_an_int_default_takes_floats():
    """Types come from the annotations: ``mine_weight: float = 0`` is a float field."""

    @dataclasses.dataclass(frozen=True)
    class Probe:
        mine_weight: float = 0

    assert typing.get_type_hints(Probe)["mine_weight"] is float
    assert parse_value("noise", "0") == 0.0 and isinstance(parse_value("noise", "0"), float)
