"""Recipes, flags, configuration checks and learning-rate schedules."""

from __future__ import annotations

from pathlib import Path

import pytest

from resnetkit.cli.train_cmd import config_overrides
from resnetkit.cli.main import build_parser
from resnetkit.engine.config import TrainConfig, build_config, recipe_names
from resnetkit.engine.optim import build_optimizer, lr_factor

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def test_paper_recipe_follows_he_et_al():
    cfg = build_config(RECIPES / "cifar10_resnet20_paper.yaml")
    assert (cfg.model, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.batch_size) == ("resnet20", 0.1, 0.9, 1e-4, 128)
    assert cfg.max_steps == 64000 and cfg.milestones == [32000, 48000] and cfg.milestone_unit == "step"
    assert cfg.val_split == 0.1 and cfg.augment == "cifar"
    factors = [lr_factor(s, 64000, 352, cfg) for s in (0, 31999, 32000, 47999, 48000, 63999)]
    assert factors == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


def test_every_recipe_is_valid_and_addressable_by_name():
    names = recipe_names()
    assert {"cifar10_resnet20_fast", "cifar10_resnet20_paper", "fsdd_res15", "fsdd_resnet20"} <= set(names)
    assert sorted(p.stem for p in RECIPES.glob("*.yaml")) == names  # recipes/ is the packaged folder
    for name in names:
        assert build_config(name) == build_config(RECIPES / f"{name}.yaml")
    # A path that does not exist from here still finds the packaged recipe of that name.
    assert build_config("elsewhere/recipes/fsdd_res15.yaml").model == "res15_narrow"
    with pytest.raises(FileNotFoundError, match="not a packaged recipe .*cifar10_resnet20_fast"):
        build_config("no_such_recipe")


def test_flags_override_the_recipe():
    args = build_parser().parse_args(["train", "--recipe", str(RECIPES / "cifar10_resnet20_fast.yaml"),
                                      "--lr", "0.05", "--mixup", "0.2", "--drop-path-rate", "0.1", "--amp", "off"])
    cfg = build_config(args.recipe, config_overrides(args))
    # A setting no flag names keeps the recipe's value (read from the recipe, so a retuned recipe
    # does not need this test edited).
    assert cfg.lr == 0.05 and cfg.amp == "off" and cfg.epochs == build_config(args.recipe).epochs != TrainConfig().epochs
    # Mappings merge key by key: the flag adds to the recipe's options instead of replacing them.
    assert cfg.augment_args == {"crop_padding": 2, "pad_mode": "reflect", "flip_mode": "alternate", "mixup": 0.2}
    assert cfg.model_args == {"whiten": 2, "drop_path_rate": 0.1}


def test_unknown_recipe_key_suggests(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rate: 0.1\nepochs: 3\n")
    with pytest.raises(ValueError, match=r"unknown key\(s\): learning_rate"):
        build_config(bad)
    bad.write_text("epoch: 3\n")
    with pytest.raises(ValueError, match="did you mean epochs"):
        build_config(bad)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="must be a mapping"):
        build_config(bad)


@pytest.mark.parametrize("kwargs,match", [
    ({"optimizer": "rmsprop"}, "optimizer must be one of sgd, adamw"),
    ({"schedule": "step"}, "needs milestones"),
    ({"amp": "fp8"}, "amp must be one of"),
    ({"epochs": 0}, "epochs must be >= 1"),
])
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_warmup_cosine_and_onecycle():
    cfg = TrainConfig(schedule="cosine", warmup_epochs=1)
    assert lr_factor(0, 1000, 100, cfg) == pytest.approx(0.01)
    assert lr_factor(99, 1000, 100, cfg) == pytest.approx(1.0)
    assert lr_factor(550, 1000, 100, cfg) == pytest.approx(0.5, abs=0.01)
    assert lr_factor(999, 1000, 100, cfg) < 1e-4
    one = TrainConfig(schedule="onecycle")
    peak = max(range(1000), key=lambda s: lr_factor(s, 1000, 100, one))
    assert 250 <= peak <= 350 and lr_factor(0, 1000, 100, one) == pytest.approx(0.04)


def test_no_weight_decay_on_norms_and_biases():
    from resnetkit import create_model

    model = create_model("resnet20")
    opt = build_optimizer(model, TrainConfig(weight_decay=5e-4))
    # Conv and linear weights decay; biases and BatchNorm parameters (a group of their own, for
    # --norm-lr-mult) do not.
    decay = [p for g in opt.param_groups if g["weight_decay"] == 5e-4 for p in g["params"]]
    no_decay = [p for g in opt.param_groups if g["weight_decay"] == 0 for p in g["params"]]
    assert all(p.ndim > 1 for p in decay) and all(p.ndim == 1 for p in no_decay)
    assert len(decay) + len(no_decay) == len(list(model.parameters())) and decay and no_decay


def test_cli_default_train_prints_summary(tmp_path, capsys, monkeypatch):
    from resnetkit.cli.main import main

    monkeypatch.chdir(tmp_path)
    assert main(["train", "--epochs", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "validation accuracy" in out and "runs/resnet20-digits-" in out
    assert len(list((tmp_path / "runs").iterdir())) == 1
