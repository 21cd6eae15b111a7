"""scripts/train_default.py: every shipped model has a recipe that makes its layout in its
arithmetic, and every start a recipe names is in the repository (or is another recipe)."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import pytest

from idfzip.zoo import PRESETS, SHIPPED

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "train_default.py"
_spec = importlib.util.spec_from_file_location("train_default", SCRIPT)
recipes = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("train_default", recipes)  # dataclasses look their module up there
_spec.loader.exec_module(recipes)


def preset_of(recipe: dict) -> str:
    args = recipe["args"]
    return args[args.index("--preset") + 1]


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_shipped_model_has_a_recipe_for_its_preset_and_arithmetic(name):
    recipe = recipes.RECIPES[name]
    assert preset_of(recipe) == SHIPPED[name].preset
    assert recipe["arithmetic"] == SHIPPED[name].arithmetic


@pytest.mark.parametrize("name", sorted(recipes.RECIPES))
def test_every_recipe_starts_from_a_file_in_the_repository_or_another_recipe(name):
    recipe = recipes.RECIPES[name]
    assert preset_of(recipe) in PRESETS
    seen = {name}
    init = recipe["init"]
    while isinstance(init, recipes.After):  # a chain of stages ends, and in a file
        assert init.stage in recipes.RECIPES and init.stage not in seen
        seen.add(init.stage)
        init = recipes.RECIPES[init.stage]["init"]
    if isinstance(init, recipes.FloatWeights):
        assert init.checkpoint.is_file(), init.checkpoint
    elif init is not None:
        assert Path(init).is_file(), init


def test_an_earlier_stage_is_trained_first_to_its_own_end(monkeypatch, tmp_path):
    calls = []

    def run(name, args):
        calls.append((name, vars(args)))
        return tmp_path / name

    monkeypatch.setattr(recipes, "run", run)
    args = argparse.Namespace(steps=100, minutes=5.0, out="runs/x", device="cuda", threads=4)
    start = recipes.RECIPES["cifar10"]["init"]
    assert start(args) == tmp_path / start.stage / "model.pt"
    assert calls == [(start.stage, {"steps": None, "minutes": None, "out": None,
                                    "device": "cuda", "threads": 4})]
    assert args.steps == 100 and args.out == "runs/x"  # the later stage's own arguments kept


@pytest.mark.parametrize("name", sorted(recipes.RECIPES))
def test_every_recipe_is_what_idfzip_train_accepts(name):
    """A recipe's arguments parse as `idfzip train`'s options (a misspelt or removed option
    would otherwise fail only when the recipe is run, hours into a session)."""
    from idfzip.cli import train
    recipe = recipes.RECIPES[name]
    context = train.make_context("train", [*recipe["args"], "--data", "x",
                                           "--steps", str(recipe["steps"])])
    assert context.params["preset"] == preset_of(recipe)
    assert context.params["steps"] == recipe["steps"]
