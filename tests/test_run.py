"""Building a run from its config (runner.run): every part comes from its group's option, a component's own
refusal reaches the user as it is, the batch never exceeds the data, and compile works in place."""

import pytest
import torch

from runner.callbacks.averaging import ExponentialMovingAverage, Lookahead
from runner.callbacks.diagnostics import Diagnostics
from runner.errors import ConfigError
from runner.run import build, chosen, make
from tests.conftest import SMALL_MODEL, SMOKE, compose_config, train_in_process


def test_every_part_comes_from_its_groups_option(tmp_path):
    overrides = [*SMOKE, *SMALL_MODEL, "averaging=[ema,lookahead]", "tta=flip", "optimizer=adam", "data.val_size=50"]
    run = build(compose_config(overrides), tmp_path)
    assert isinstance(run.optimizer, torch.optim.Adam)
    assert [type(callback) for callback in run.callbacks] == [Lookahead, ExponentialMovingAverage, Diagnostics]
    assert run.predict is not None and run.splits.val_images.shape[0] == 50
    assert run.steps_per_epoch == 150 // 50 and run.total_steps == run.steps_per_epoch * run.config.trainer.epochs


def test_the_batch_is_at_most_the_training_images(tmp_path):
    run = build(compose_config([*SMOKE, *SMALL_MODEL, "data.batch_size=500"]), tmp_path)
    assert run.batch_size == 200 and run.steps_per_epoch == 1


def test_a_components_own_refusal_comes_out_as_itself(monkeypatch):
    # Hydra wraps what a target raises in its InstantiationException; a RunnerError reaches the user as it is.
    import runner.augment

    def refuses(*args, **kwargs):
        raise ConfigError("augmentation.crop: refused by the component")

    monkeypatch.setattr(runner.augment.RandomCrop, "__init__", refuses)
    with pytest.raises(ConfigError, match="refused by the component"):
        make(compose_config(["augmentation=[crop]"]).augmentation.crop)


def test_an_option_without_a_target_builds_nothing():
    config = compose_config(["diagnostics=off", "logger=none", "tta=none"])
    assert chosen(config.diagnostics) is None and chosen(config.logger) is None and chosen(config.tta) is None


def test_compile_compiles_the_model_in_place(tmp_path, monkeypatch):
    compiled = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda module, *args, **kwargs: compiled.append(module))
    train_in_process(SMALL_MODEL + ["trainer.compile=true"], tmp_path)
    assert len(compiled) == 1 and isinstance(compiled[0], torch.nn.Sequential)
