"""Transfer learning (runner.finetune) and class subsets (data.classes): weights really come from the
checkpoint, the head is new when it must be, a frozen backbone stays bitwise the same (weights and norm
statistics), and the head's learning rate is multiplied."""

import time

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from runner.data import DataError, load
from runner.errors import ConfigError
from runner.finetune import head_prefix
from runner.loop import fit
from runner.run import build
from runner.validate import check
from tests.conftest import SMALL_MODEL, SMOKE, compose_config, train_in_process

OPTIONS_TESTED = {"experiment": {"transfer_pretrain", "transfer_demo"}}

QUICK = SMALL_MODEL + ["diagnostics=off"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A 10-class run whose checkpoint the tests fine-tune."""
    folder = tmp_path_factory.mktemp("pretrained")
    summary = train_in_process(QUICK, folder)
    assert summary["status"] == "completed"
    return folder


def checkpoint_weights(folder):
    return torch.load(folder / "checkpoint.pt", map_location="cpu", weights_only=True)["model"]


def built(overrides, folder):
    return build(compose_config(SMOKE + QUICK + list(overrides)), folder)


def test_classes_keeps_the_named_classes_relabelled_in_the_given_order():
    config = compose_config(SMOKE)
    every = load(config.data)
    config.data.classes = [3, "class_1"]
    subset = load(config.data)
    assert subset.classes == ["class_3", "class_1"]
    for split in ("train", "test"):
        labels, images = getattr(every, f"{split}_labels"), getattr(every, f"{split}_images")
        new_labels, new_images = getattr(subset, f"{split}_labels"), getattr(subset, f"{split}_images")
        kept = (labels == 3) | (labels == 1)
        assert torch.equal(new_images, images[kept])  # the same images, in their original order
        assert torch.equal(new_labels, torch.where(labels[kept] == 3, 0, 1))


@pytest.mark.parametrize("classes", [["cat"], [10], [1, 1], []])
def test_classes_names_the_key_when_it_is_wrong(classes):
    config = compose_config(SMOKE)
    config.data.classes = classes
    with pytest.raises(DataError, match="data.classes"):
        load(config.data)


def test_another_number_of_classes_gets_a_new_head_and_every_other_weight(pretrained, tmp_path):
    weights = checkpoint_weights(pretrained)
    run = built([f"finetune.checkpoint={pretrained}", "data.classes=[0,1,2]"], tmp_path)
    prefix = head_prefix(run.model)
    own = run.model.state_dict()
    for key, value in weights.items():
        if not key.startswith(prefix + "."):
            assert torch.equal(own[key], value), key
    assert own[f"{prefix}.weight"].shape[0] == 3 and weights[f"{prefix}.weight"].shape[0] == 10


def test_same_classes_keep_the_head_unless_a_new_one_is_asked_for(pretrained, tmp_path):
    weights = checkpoint_weights(pretrained)
    kept = built([f"finetune.checkpoint={pretrained / 'checkpoint.pt'}"], tmp_path / "kept").model
    prefix = head_prefix(kept)
    assert torch.equal(kept.state_dict()[f"{prefix}.weight"], weights[f"{prefix}.weight"])
    new = built([f"finetune.checkpoint={pretrained}", "finetune.new_head=true"], tmp_path / "new").model
    fresh = built([], tmp_path / "fresh").model  # the same seed: the head this run's init gives
    assert torch.equal(new.state_dict()[f"{prefix}.weight"], fresh.state_dict()[f"{prefix}.weight"])
    assert not torch.equal(new.state_dict()[f"{prefix}.weight"], weights[f"{prefix}.weight"])


def test_frozen_backbone_is_bitwise_unchanged_after_training(pretrained, tmp_path):
    overrides = [f"finetune.checkpoint={pretrained}", "finetune.freeze=backbone", "data.classes=[0,1,2,3]"]
    config = compose_config(SMOKE + QUICK + overrides + ["trainer.epochs=2"])
    run = build(config, tmp_path)
    prefix = head_prefix(run.model)
    before = {key: value.clone() for key, value in run.model.state_dict().items()}
    norms = [m for m in run.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and all(not norm.training for norm in norms)
    trained = [p for group in run.optimizer.param_groups for p in group["params"]]
    head = [p for name, p in run.model.named_parameters() if name.startswith(prefix + ".")]
    assert {id(p) for p in trained} == {id(p) for p in head}

    summary = fit(run, {"choices": {}, "overrides": overrides, "seed": 0, "started": time.time()})
    assert summary["status"] == "completed"
    after = run.model.state_dict()
    for key, value in before.items():
        if key.startswith(prefix + "."):
            assert not torch.equal(after[key], value), f"the head {key} did not train"
        else:
            assert torch.equal(after[key], value), f"{key} changed although frozen"
    run.model.train()  # what the loop does every epoch
    assert all(not norm.training for norm in norms)


def test_head_learning_rate_is_multiplied_through_the_schedule(tmp_path):
    run = built(["finetune.head_lr_multiplier=10", "optimizer.lr=0.05", "schedule=constant"], tmp_path)
    prefix = head_prefix(run.model)
    head = {id(p) for name, p in run.model.named_parameters() if name.startswith(prefix + ".")}
    for group in run.optimizer.param_groups:
        in_head = {id(p) for p in group["params"]} <= head
        assert group["lr"] == pytest.approx(0.5 if in_head else 0.05)
    run.optimizer.step()
    run.schedule.step()
    rates = sorted(group["lr"] for group in run.optimizer.param_groups)
    assert rates[0] == pytest.approx(0.05) and rates[-1] == pytest.approx(0.5)


def test_a_checkpoint_of_another_network_is_refused_with_the_mismatch(pretrained, tmp_path):
    with pytest.raises(ConfigError, match="other shapes"):
        built([f"finetune.checkpoint={pretrained}", "model.widths=[8,32]"], tmp_path)
    with pytest.raises(ConfigError, match="no such checkpoint"):
        built([f"finetune.checkpoint={tmp_path / 'nowhere'}"], tmp_path)
    problems = check(compose_config(["finetune.freeze=everything", "finetune.head_lr_multiplier=0"]))
    assert any(problem.startswith("finetune.freeze='everything' is not allowed") for problem in problems)
    assert any(problem.startswith("finetune.head_lr_multiplier=0 is not allowed") for problem in problems)


def test_transfer_demo_fine_tunes_the_pretraining_network_on_the_other_classes():
    pretrain = compose_config(["experiment=transfer_pretrain"], return_hydra_config=True)
    demo = compose_config(["experiment=transfer_demo"])
    assert not set(pretrain.data.classes) & set(demo.data.classes)
    assert len(set(pretrain.data.classes) | set(demo.data.classes)) == 10
    assert OmegaConf.to_container(pretrain.model) == OmegaConf.to_container(demo.model)
    assert demo.finetune.new_head is True
    assert demo.finetune.checkpoint == pretrain.hydra.run.dir  # where the pretraining run lands
    assert np.isclose(demo.data.subset / len(demo.data.classes), 100)
