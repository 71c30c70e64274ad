"""What a run leaves in its folder (runner.record): every file, with its keys, its types and its agreement
with the others."""

import json
import math

import numpy as np
import torch

from runner.files import read_jsonl
from tests.conftest import SMALL_MODEL, train_in_process

SUMMARY_KEYS = {
    "status",
    "test_acc",
    "best_test_acc",
    "test_loss",
    "train_loss",
    "train_acc",
    "epochs_completed",
    "train_time_s",
    "wall_time_s",
    "images_per_s",
    "params",
    "device",
    "seed",
    "choices",
    "overrides",
}
METRIC_KEYS = {
    "epoch",
    "step",
    "lr",
    "train_loss",
    "train_acc",
    "test_loss",
    "test_acc",
    "epoch_time_s",
    "images_per_s",
}


def test_run_writes_every_record_with_its_keys(tmp_path):
    summary = train_in_process(SMALL_MODEL + ["trainer.epochs=2", "data.val_size=50"], tmp_path)
    assert SUMMARY_KEYS <= summary.keys()
    assert summary == json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs_completed"] == 2
    assert 0 <= summary["test_acc"] <= 1 and summary["best_test_acc"] >= summary["test_acc"]

    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert [row["epoch"] for row in rows] == [1, 2]
    assert all(METRIC_KEYS | {"val_loss", "val_acc"} <= row.keys() for row in rows)
    assert rows[-1]["step"] == summary["steps_completed"] == 2 * (150 // 50)
    assert all(0 <= row[key] <= 1 for row in rows for key in ("train_acc", "test_acc", "val_acc"))

    logits = np.load(tmp_path / "test_logits.npy", allow_pickle=False)
    labels = np.load(tmp_path / "test_labels.npy", allow_pickle=False)
    assert logits.dtype == np.float16 and logits.shape == (100, 10) and labels.shape == (100,)
    assert math.isclose((logits.argmax(1) == labels).mean(), summary["test_acc"], abs_tol=0.011)

    checkpoint = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert {"model", "optimizer", "schedule", "epoch", "random_states"} <= checkpoint.keys()
    assert checkpoint["epoch"] == 2
    assert not list(tmp_path.glob(".*.tmp"))
