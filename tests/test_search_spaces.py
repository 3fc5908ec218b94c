"""The declared sweeps: plain data that builds valid configs and says what the research asks."""

from __future__ import annotations

from collections import Counter

import pytest

from motioncore.config import FIELDS, WEIGHTS, RunConfig, UsageError
from motioncore.metrics import NAMES
from orchestrator.plan import DRY_RUN, cell_config, seed_list, trials
from orchestrator.state import SweepState
from search_spaces import (
    Space,
    ablation,
    budget,
    demo,
    hpo,
    load,
    names,
    objective,
    search_bench,
    seed_table,
)
from search_spaces.space import (
    SAMPLERS,
    SCHEDULERS,
    Dist,
    choice,
    integer,
    loguniform,
    uniform,
)

MODULES = {"seed_table": seed_table, "ablation": ablation, "hpo": hpo, "demo": demo,
           "search_bench": search_bench, "objective": objective,
           "budget": budget}


def configs(space: Space, dry_run: bool = False) -> dict[str, RunConfig]:
    return {c.id: cell_config(space, c, dry_run=dry_run, sets={}) for c in space.cells}


def test_registry_lists_every_space_module_under_its_own_name():
    assert set(names()) == set(MODULES)
    for name in names():
        assert load(name).name == name
    with pytest.raises(KeyError):
        load("no_such_space")


# --- every space ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_key_a_space_sets_is_a_config_field(name):
    space = load(name)
    keys = set(space.base) | set(space.search)
    for cell in space.cells:
        keys |= set(cell.overrides)
    assert keys <= set(FIELDS), sorted(keys - set(FIELDS))


@pytest.mark.parametrize("dry_run", [False, True])
@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_cell_builds_a_valid_config_with_its_overrides(name, dry_run):
    space = load(name)
    for cell in space.cells:
        config = cell_config(space, cell, dry_run=dry_run, sets={}, seed=2)
        assert isinstance(config, RunConfig) and config.seed == 2
        for key, value in {**space.base, **cell.overrides}.items():
            if not (dry_run and key in DRY_RUN):  # the dry-run budget wins over the space's
                assert getattr(config, key) == value, (cell.id, key)
        if dry_run:
            for key, value in DRY_RUN.items():
                assert getattr(config, key) == value, (cell.id, key)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_cells_are_unique_named_and_the_baseline_is_one_of_them(name):
    space = load(name)
    ids = [c.id for c in space.cells]
    assert len(ids) == len(set(ids))
    assert space.baseline in ids
    assert all(c.id and c.design for c in space.cells)
    hashes = [cfg.hash() for cfg in configs(space).values()]
    assert len(hashes) == len(set(hashes)), "two cells run the same configuration"
    assert space.metric in NAMES  # Optuna and ASHA maximise a metric every trial reports


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_docstring_shows_its_launch_command(name):
    doc = MODULES[name].__doc__
    assert f"python -m orchestrator.sweep --space {name}" in doc
    assert load(name).description.startswith(doc.splitlines()[0].rstrip("."))  # may add details


@pytest.mark.parametrize("name", sorted(MODULES))
def test_dry_run_is_one_seed_per_cell_and_real_runs_share_the_seed_list(name):
    space = load(name)
    dry = trials(space, seeds=3, dry_run=True, sets={})
    assert [(t.cell.id, t.seed) for t in dry] == [(c.id, 0) for c in space.cells]
    real = trials(space, seeds=3, dry_run=False, sets={})
    assert Counter(t.cell.id for t in real) == {c.id: 3 for c in space.cells}
    for cell in space.cells:
        assert [t.seed for t in real if t.cell.id == cell.id] == [0, 1, 2]


# --- seed_table ------------------------------------------------------------------------------

def test_seed_table_is_the_twenty_cells_of_the_research_table():
    space = seed_table.space()
    cfgs = configs(space)
    assert len(space.cells) == 20
    rows = Counter((c.supervision, c.frames, c.attention, c.motion_range) for c in cfgs.values())
    want = [("supervised", 3, "none", r) for r in (1, 2, 3, 5)]
    want += [("unsupervised", 3, "none", r) for r in (1, 2, 3, 5)]
    want += [("unsupervised", 5, att, r) for att in ("none", "motion", "segmentation")
             for r in (1, 2, 3, 5)]
    assert rows == Counter(want)


def test_seed_table_carries_the_published_numbers_on_their_rows():
    space = seed_table.space()
    cfgs = configs(space)
    published = {}
    for cell in space.cells:
        c = cfgs[cell.id]
        if cell.published is not None:
            published[(c.supervision, c.frames, c.motion_range)] = cell.published
    assert published == {("supervised", 3, 1): 100, ("supervised", 3, 2): 100,
                         ("supervised", 3, 3): 98, ("supervised", 3, 5): 96,
                         ("unsupervised", 3, 3): 93}


def test_seed_table_unsupervised_rows_train_on_the_layered_teacher_and_see_the_layers():
    """One term at T=3; T=5 adds the attention's own term (which a headless design skips)."""
    for c in configs(seed_table.space()).values():
        if c.supervision != "unsupervised":
            assert c.inputs == "frames"
            continue
        on = {w: getattr(c, w) for w in WEIGHTS if getattr(c, w) > 0}
        expected = {"layer_weight": 1.0, **({"attend_weight": 1.0} if c.frames == 5 else {})}
        assert on == expected, c
        assert c.inputs == "layers"


def test_seed_table_cells_differing_only_in_motion_range_share_a_design():
    space = seed_table.space()
    cfgs = configs(space)
    by_design: dict[str, set] = {}
    for cell in space.cells:
        c = cfgs[cell.id]
        by_design.setdefault(cell.design, set()).add((c.supervision, c.frames, c.attention))
    assert len(by_design) == 5  # sup T=3, unsup T=3, unsup T=5 x 3 attention designs
    assert all(len(v) == 1 for v in by_design.values())


# --- ablation --------------------------------------------------------------------------------

def _changes(space: Space) -> dict[str, dict[str, object]]:
    """Cell id -> the config fields (and values) where it differs from the baseline cell."""
    cfgs = configs(space)
    base = cfgs[space.baseline].to_dict()
    return {cid: {k: v for k, v in c.to_dict().items() if v != base[k]}
            for cid, c in cfgs.items() if cid != space.baseline}


def test_ablation_baseline_is_unsupervised_t5_r3_noisy_segmentation():
    space = ablation.space()
    base = configs(space)[space.baseline]
    assert (base.supervision, base.frames, base.motion_range, base.noise, base.attention) == (
        "unsupervised", 5, 3, 0.5, "segmentation")


def test_ablation_cells_each_change_exactly_one_factor():
    changes = _changes(ablation.space())
    for cid, diff in changes.items():
        if diff.get("frames") == 3:  # one direction: nothing to fuse, no second side's term
            assert diff == {"frames": 3, "attention": "none"}, cid
        elif diff.get("motion_range") == 5:  # the research table's budget for r=5
            assert diff == {"motion_range": 5, "steps": 2000}, cid
        else:
            assert len(diff) == 1, (cid, diff)


def test_ablation_covers_every_axis_of_the_research_question():
    space = ablation.space()
    base = configs(space)[space.baseline]
    seen: dict[str, set] = {}
    for diff in _changes(space).values():
        for key, value in diff.items():
            seen.setdefault(key, {getattr(base, key)}).add(value)
    assert seen["noise"] == {0.0, 0.25, 0.5}
    assert seen["loss"] == {"l1", "l2"}
    assert seen["inputs"] == {"frames", "layers"}
    assert seen["attend_weight"] == {0.0, 1.0}
    assert seen["recon_weight"] == {0.0, 1.0}
    assert seen["network"] == {"shared", "joint"}
    assert seen["width"] == {16, 32}
    assert seen["attention"] == {"none", "motion", "segmentation"}
    assert seen["supervision"] == {"supervised", "unsupervised"}
    assert seen["motion_range"] == {1, 2, 3, 5}
    assert seen["frames"] == {3, 5}


# --- hpo -------------------------------------------------------------------------------------

def test_hpo_searches_lr_width_depth_batch_size_and_weight_decay():
    space = hpo.space()
    assert set(space.search) == {"lr", "width", "depth", "batch_size", "weight_decay"}
    assert [c.overrides for c in space.cells] == [{"motion_range": 3}, {"motion_range": 5}]
    assert space.num_samples >= 1


def test_hpo_search_bounds_are_well_formed_and_every_value_builds_a_config():
    space = hpo.space()
    cell = space.cells[0]
    for key, dist in space.search.items():
        assert isinstance(dist, Dist), key
        for value in dist.values:
            for dry_run in (False, True):
                cfg = cell_config(space, cell, dry_run=dry_run, sets={key: value})
                assert getattr(cfg, key) == value


@pytest.mark.parametrize("dist, kind, want", [
    (loguniform(1e-4, 1e-2), "FloatDistribution", dict(low=1e-4, high=1e-2, log=True)),
    (uniform(0.0, 0.5), "FloatDistribution", dict(low=0.0, high=0.5, log=False)),
    (integer(1, 3), "IntDistribution", dict(low=1, high=3, log=False)),
    (choice([8, 16, 32]), "CategoricalDistribution", dict(choices=(8, 16, 32))),
])
def test_a_typed_distribution_becomes_the_optuna_distribution_it_says(dist, kind, want):
    import optuna

    from orchestrator.search import to_optuna

    converted = to_optuna(dist)
    assert type(converted).__name__ == kind
    assert {k: getattr(converted, k) for k in want} == want
    trial = optuna.create_study().ask({"x": converted})  # Optuna samples inside the bounds
    x = trial.params["x"]
    assert x in dist.choices if dist.choices else dist.low <= x <= dist.high


@pytest.mark.parametrize("make, named", [
    (lambda: uniform(1.0, 1.0), "low < high"), (lambda: loguniform(0.0, 1.0), "low > 0"),
    (lambda: integer(1, 2.5), "int bounds"), (lambda: choice([1]), "two or more"),
    (lambda: choice([1, 1]), "distinct"), (lambda: uniform(0, float("inf")), "finite"),
])
def test_a_malformed_distribution_is_refused_when_declared(make, named):
    with pytest.raises(ValueError, match=named):
        make()


def test_sampler_and_scheduler_are_each_one_line_of_a_space():
    from orchestrator.search import make_sampler

    space = hpo.space()
    assert (space.sampler, space.scheduler) == ("random", "asha")  # the defaults
    assert set(SAMPLERS) == {"tpe", "random", "gp"} and set(SCHEDULERS) == {"asha", "none"}
    kinds = {name: type(make_sampler(name, 0, dims=4)).__name__ for name in SAMPLERS}
    assert kinds == {"tpe": "TPESampler", "random": "RandomSampler", "gp": "GPSampler"}


def test_the_parent_run_names_a_model_based_samplers_random_start():
    from orchestrator.search import sampler_label

    assert sampler_label("tpe", dims=4) == "tpe, its first 5 trials random"
    assert sampler_label("gp", dims=2) == "gp, its first 3 trials random"
    assert sampler_label("random", dims=4) == "random"


@pytest.mark.parametrize("name", ["tpe", "gp"])
def test_a_model_based_sampler_draws_one_more_random_trial_than_it_searches_then_its_model(name):
    import optuna

    from orchestrator.search import make_sampler

    def suggestions(sampler):
        study = optuna.create_study(sampler=sampler, direction="maximize")
        study.optimize(lambda t: -(t.suggest_float("x", 0, 1) - 0.3) ** 2
                       - (t.suggest_float("y", 0, 1) - 0.7) ** 2, n_trials=5)
        return [(t.params["x"], t.params["y"]) for t in study.trials]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    model = suggestions(make_sampler(name, 7, dims=2))
    random = suggestions(make_sampler("random", 7, dims=2))
    assert model[:3] == random[:3]  # dims + 1 trials at random, the same as random search's
    assert model[3] != random[3]  # then the model's


def test_the_search_choice_round_trips_through_the_sweep_state(tmp_path):
    state = SweepState(space="hpo", dry_run=True, seeds=[3, 4], sets={}, cells=None, samples=2,
                       max_concurrent=2, cpus_per_trial=1, gpus_per_trial=0, max_failures=1,
                       tracking_uri="sqlite:///x.db", experiment="hpo", address=None,
                       storage_path=str(tmp_path / "ray"), data_dir=None,
                       sweep_dir=str(tmp_path), sampler="random", scheduler="none",
                       search_seed=99)
    state.save()
    loaded = SweepState.load(tmp_path)
    assert (loaded.sampler, loaded.scheduler, loaded.seeds, loaded.search_seed) == (
        "random", "none", [3, 4], 99)


def test_the_demo_runs_research_table_recipes_and_says_its_budget_is_not_theirs():
    table = {c.id: c for c in seed_table.space().cells}
    space = load("demo")
    assert "DEMO BUDGET" in space.description
    for cell in space.cells:
        real = table[cell.id]
        assert cell.published == real.published and cell.design == real.design
        budget = (*demo.BUDGET[cell.id], *demo.SHARED)
        cut = {k: v for k, v in cell.overrides.items() if k not in budget}
        assert cut == {k: v for k, v in real.overrides.items() if k not in budget}  # same recipe
        assert cell.overrides["steps"] < real.overrides["steps"]
        assert f"{cell.id} {cell.overrides['steps']} x " in space.description


@pytest.mark.parametrize("max_t, grace, rf", [(3, 1, 2), (9, 2, 2), (17, 4, 2), (41, 10, 3), (2, 1, 2)])
def test_search_trials_checkpoint_at_the_rungs_asha_lays_out(max_t, grace, rf):
    """``asha_rungs`` restates where Ray's ASHAScheduler may stop a trial; if Ray changes its
    layout, this fails and the checkpoints no longer line up with the stopping decisions."""
    from ray.tune.schedulers import ASHAScheduler

    from orchestrator.search import asha_rungs

    asha = ASHAScheduler(time_attr="training_iteration", metric="m", mode="max", max_t=max_t,
                         grace_period=grace, reduction_factor=rf)
    laid_out = sorted(rung for bracket in asha._brackets for rung, _ in bracket._rungs)
    assert asha_rungs(max_t, grace, rf) == laid_out


@pytest.mark.parametrize("evaluations, grace, rf, expected", [
    (12, 0.25, 2, dict(max_t=13, grace_period=3, reduction_factor=2)),
    (12, 0.5, 2, dict(max_t=13, grace_period=6, reduction_factor=2)),
    (3, 0.25, 3, dict(max_t=4, grace_period=1, reduction_factor=3)),  # never a rung at 0
    (1, 0.25, 2, dict(max_t=2, grace_period=1, reduction_factor=2))])
def test_asha_settings_let_unstopped_trials_reach_their_final_report(evaluations, grace, rf,
                                                                     expected):
    """One report per evaluation and the final one with the test metrics: ``max_t`` is one past
    the evaluations, the first rung a fraction of them (the sweep and the search benchmark both
    read ASHA's settings from here)."""
    from orchestrator.search import asha_settings

    assert asha_settings(evaluations, grace, rf) == expected


@pytest.mark.parametrize("text, seeds", [("3", [0, 1, 2]), ("1", [0]), ("3,4,5", [3, 4, 5]),
                                         ("7,", [7]), (" 2, 9 ", [2, 9])])
def test_seeds_are_a_count_or_named(text, seeds):
    assert seed_list(text) == seeds
    specs = trials(load("seed_table"), seeds=seeds, dry_run=False, sets={}, cells=["sup_T3_r1"])
    assert [s.config.seed for s in specs] == seeds
    dry = trials(load("seed_table"), seeds=seeds, dry_run=True, sets={}, cells=["sup_T3_r1"])
    assert [s.config.seed for s in dry] == seeds[:1]


@pytest.mark.parametrize("text, named", [("0", ">= 1"), ("-1,2", "seeds >= 0"), ("1,1", "twice"),
                                         ("a", "'a'"), (",", "','")])
def test_bad_seed_lists_are_refused_naming_them(text, named):
    with pytest.raises(UsageError, match=named):
        seed_list(text)


def test_cells_that_name_nothing_are_refused():
    with pytest.raises(UsageError, match="names no cell"):
        trials(load("seed_table"), seeds=1, dry_run=False, sets={}, cells=[])
