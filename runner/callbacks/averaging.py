"""Averages of one run's weights, statistics or predictions, taken during training (the ``averaging`` group, a
list like ``regularizer``: ``averaging=[ema]``, ``averaging=[lookahead]``, ``averaging=[ema,snapshots]``,
``averaging=[precise_bn]``).

``ExponentialMovingAverage`` and ``SnapshotEnsemble`` watch training and score what they keep beside the run's
own metrics; ``Lookahead`` changes training itself. Post-hoc ensembles of finished runs are
``python -m runner.ensemble``.
"""

from __future__ import annotations

import copy

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from runner.device import autocast
from runner.ensemble import ensemble_accuracy
from runner.errors import ConfigError
from runner.evaluate import evaluate
from runner.files import read_array


class ExponentialMovingAverage:
    """Polyak averaging as an exponential moving average of the weights (Polyak and Juditsky 1992; the EMA
    form as in Szegedy et al. 2016): after every optimizer step, average = decay * average + (1 - decay) *
    weights, starting from the weights after the first step (``torch.optim.swa_utils.AveragedModel`` with
    ``get_ema_multi_avg_fn``, one fused update on the training device). The averaged network is evaluated after
    every epoch (``ema_test_acc``, ``ema_val_acc`` in metrics.jsonl and summary.json); its test logits are
    kept as ``ema_test_logits.npy``.

    The norm layers' running statistics are averaged the same way (``use_buffers=True``, as timm's ModelEma
    does), so the statistics belong to averaged weights rather than to the last ones. The average forgets
    with a time constant of 1 / (1 - decay) steps: 0.999 suits runs of several thousand steps, 0.99 short ones.
    """

    test_evaluations = 1  # it scores the averaged network wherever the run scores its own

    def __init__(self, decay: float = 0.999):
        self.decay = decay
        self.averaged: AveragedModel | None = None
        self.last: dict = {}  # the ema_* scores of the last test evaluation

    def on_train_start(self, run, state: dict) -> None:
        self.averaged = AveragedModel(run.model, multi_avg_fn=get_ema_multi_avg_fn(self.decay), use_buffers=True)

    def on_step_end(self, run, state: dict, loss) -> None:
        self.averaged.update_parameters(run.model)

    def on_epoch_end(self, run, state: dict, row: dict) -> None:
        network = self.averaged.module
        if run.splits.val_images is not None:
            validation = evaluate(run, run.splits.val_images, run.splits.val_labels, network)
            row.update(ema_val_loss=validation["loss"], ema_val_acc=validation["acc"])
        if "test_acc" not in row:  # trainer.eval_every skipped this epoch's test evaluation
            return
        test = evaluate(run, run.splits.test_images, run.splits.test_labels, network)
        row.update(ema_test_loss=test["loss"], ema_test_acc=test["acc"])
        self.last = {key: value for key, value in row.items() if key.startswith("ema_")}
        # Written now, before the epoch's checkpoint, as the run's own test logits are.
        run.recorder.logits("ema_test_logits.npy", test["logits"])

    def on_train_end(self, run, state: dict, summary: dict) -> None:
        summary.update(ema_decay=self.decay, **self.last)

    # A checkpoint keeps the average and its last scores, so a resumed run goes on averaging where it stopped.
    def state_dict(self) -> dict:
        return {"averaged": self.averaged.state_dict(), "last": self.last}

    def load_state_dict(self, state: dict) -> None:
        self.averaged.load_state_dict(state["averaged"])
        self.last = dict(state["last"])


class Lookahead:
    """Lookahead averaging as airbench94 uses it (Zhang et al. 2019; Jordan 2024): from ``start`` of the run on,
    every ``every`` steps the slow weights move towards the trained ones, slow = rho * slow + (1 - rho) *
    weights, and training goes on from the slow weights. rho = decay^every * (step / total steps)^power grows
    over the run, so the weights move freely early and are averaged strongly at the end; at the end of each
    epoch the network takes the slow weights, so every evaluation sees them. Norm statistics are averaged too.
    """

    changes_training = True

    def __init__(self, decay: float = 0.95, every: int = 5, power: float = 3.0, start: float = 0.3):
        self.decay = decay
        self.every = every
        self.power = power
        self.start = start
        self.slow: list | None = None  # the slow weights, in the order of the network's state dict

    def on_train_start(self, run, state: dict) -> None:
        self.total_steps = max(1, run.total_steps)
        self.start_step = round(self.start * run.total_steps)

    def on_step_end(self, run, state: dict, loss) -> None:
        step = state["step"] + 1  # the loop counts this step after its hooks
        epoch_ends = step % run.steps_per_epoch == 0 or step == run.total_steps  # a budget's last epoch ends early
        if step < self.start_step or (step % self.every and not epoch_ends):
            return
        # The state dict's tensors share storage with the network's: parameters and norm statistics alike.
        weights = [tensor for tensor in run.model.state_dict().values() if tensor.is_floating_point()]
        if self.slow is not None and self.slow[0].device != weights[0].device:  # resumed from a CPU checkpoint
            self.slow = [slow.to(weight.device) for slow, weight in zip(self.slow, weights, strict=True)]
        with torch.no_grad():
            if self.slow is None:
                self.slow = [tensor.clone() for tensor in weights]
                return
            if step % self.every == 0:
                rho = self.decay**self.every * (step / self.total_steps) ** self.power
                torch._foreach_lerp_(self.slow, weights, 1 - rho)
            torch._foreach_copy_(weights, self.slow)

    def state_dict(self) -> dict:
        return {"slow": self.slow}

    def load_state_dict(self, state: dict) -> None:
        self.slow = state["slow"]


class SnapshotEnsemble:
    """Snapshot ensembles (Huang et al., "Snapshot ensembles: train 1, get M for free", 2017): at the end of
    every cycle of a cosine schedule with restarts, where the learning rate is lowest, evaluate the network on
    the test set and keep its logits (``snapshot_<k>_test_logits.npy``); at the end, report every snapshot's
    accuracy and the accuracy of their averaged probabilities (``snapshot_ensemble_acc`` in summary.json).

    The schedule says where its cycles end (``cycle_ends``, set by ``runner.schedules.cosine_restarts``).
    Snapshots live on disk only, so a resumed run still has those taken before it stopped.
    """

    def __init__(self):
        self.ends: list[int] = []

    @staticmethod
    def file_name(cycle: int) -> str:
        return f"snapshot_{cycle}_test_logits.npy"

    def on_train_start(self, run, state: dict) -> None:
        ends = getattr(run.schedule, "cycle_ends", None)
        if ends is None:
            raise ConfigError(
                "averaging=[snapshots] takes its snapshots at the ends of the learning-rate cycles: use "
                "schedule=cosine_restarts (its schedule.cycle_epochs and schedule.cycle_multiplier set the cycles)."
            )
        if len(ends) < 2:
            schedule = run.config.schedule
            raise ConfigError(
                f"averaging=[snapshots]: {len(ends)} cycle(s) of schedule.cycle_epochs={schedule.cycle_epochs} "
                f"(cycle_multiplier={schedule.cycle_multiplier}) end within trainer.epochs="
                f"{run.config.trainer.epochs}; a snapshot ensemble needs at least 2: shorten the cycles or train "
                "longer."
            )
        self.ends = list(ends)

    def on_step_end(self, run, state: dict, loss) -> None:
        completed = state["step"] + 1  # the loop counts this step once its hooks have run
        if completed not in self.ends:
            return
        logits = evaluate(run, run.splits.test_images, run.splits.test_labels)["logits"]
        run.model.train()  # evaluation switched to eval mode in the middle of the epoch
        run.recorder.logits(self.file_name(self.ends.index(completed) + 1), logits)

    def on_train_end(self, run, state: dict, summary: dict) -> None:
        taken = [(cycle, end) for cycle, end in enumerate(self.ends, start=1) if end <= state["step"]]
        paths = [run.recorder.path(self.file_name(cycle)) for cycle, _ in taken]
        if not taken or not all(path.is_file() for path in paths):
            summary["snapshots"] = []
            return
        labels = run.splits.test_labels.cpu().numpy()
        scores = ensemble_accuracy([read_array(path, "snapshot logits") for path in paths], labels)
        summary["snapshots"] = [
            {"cycle": cycle, "epoch": end / run.steps_per_epoch, "step": end, "test_acc": accuracy_value}
            for (cycle, end), accuracy_value in zip(taken, scores["member_accuracies"], strict=True)
        ]
        summary["snapshot_mean_acc"] = scores["mean_member_accuracy"]
        summary["snapshot_ensemble_acc"] = scores["ensemble_accuracy"]


class PreciseNorms:
    """Batch-norm statistics recomputed over training batches ("precise BN": Wu and Johnson, "Rethinking
    'batch' in batchnorm", 2021). A norm layer's running statistics are an exponential average over the last
    steps, taken while the weights were moving; after few steps (a very large batch) they are far from the
    statistics of the trained network. At each test evaluation, a copy of the network gets, in every norm
    layer, the plain average of the batch statistics of ``batches`` training batches (no augmentation, in
    training mode, no gradient), and is scored beside the run's own: ``precise_bn_test_acc``. It watches
    training and changes nothing."""

    test_evaluations = 1  # a recalibrated copy scored at each test evaluation

    def __init__(self, batches: int = 20):
        self.batches = batches
        self.last: dict = {}

    def recalibrated(self, run) -> torch.nn.Module:
        network = copy.deepcopy(run.model)
        norms = [module for module in network.modules() if isinstance(module, torch.nn.modules.batchnorm._BatchNorm)]
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None  # None: the cumulative average of the batches seen
        network.train()
        with torch.no_grad(), autocast(run.device, run.autocast_dtype):
            for index in range(min(self.batches, run.steps_per_epoch)):
                start = index * run.batch_size
                network(run.splits.train_images[start : start + run.batch_size])
        return network

    def on_epoch_end(self, run, state: dict, row: dict) -> None:
        if "test_acc" not in row:
            return
        test = evaluate(run, run.splits.test_images, run.splits.test_labels, self.recalibrated(run))
        row.update(precise_bn_test_loss=test["loss"], precise_bn_test_acc=test["acc"])
        self.last = {"precise_bn_test_loss": test["loss"], "precise_bn_test_acc": test["acc"]}

    def on_train_end(self, run, state: dict, summary: dict) -> None:
        summary.update(self.last)

    def state_dict(self) -> dict:
        return {"last": self.last}

    def load_state_dict(self, state: dict) -> None:
        self.last = dict(state["last"])
