"""The training loop: epochs of shuffled batches sliced from device tensors, evaluated every epoch.

It knows no option by name: it asks the augmentation for a batch, the model for logits, the objective
for a loss, the schedule for the next rate. Losses and accuracies accumulate on the device and are read
every ``trainer.log_every`` steps and at the end of an epoch, so the step never waits for the host.

Everything else a run watches or keeps (diagnostics, weight averages, loggers) is a callback in
``run.callbacks``, called at the points ``runner.callbacks`` lists.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import signal
import time
from collections.abc import Iterator

import torch
from tqdm import tqdm

from runner.budget import MARGIN, Costs, Deadline, choose_length, measuring_seconds
from runner.device import autocast, synchronize
from runner.evaluate import evaluate
from runner.files import atomic_write_bytes
from runner.pace import Pace
from runner.resume import checkpoint_state, restore, restore_callbacks
from runner.run import Run

log = logging.getLogger("runner")


class StopNow(BaseException):
    """A second stop signal (StopRequest.SIGNALS): stop at once, without the current step's end (not an
    ``Exception``, so that nothing on the way catches it as an error)."""

    def __init__(self, number: int):
        super().__init__(signal.Signals(number).name)
        self.number = number


class StopRequest:
    """SIGINT, SIGTERM (and the schedulers' SIGUSR1 and SIGUSR2, below) as a flag that a run checks between its
    steps and between the stages of its start, so that it ends cleanly with its records written. A second signal
    means "now" (``StopNow``), except inside ``critical()``, which the final writes use so that they always
    complete.

    SIGUSR1 and SIGUSR2 too: schedulers send them before a job's time limit (``sbatch --signal``; submitit's
    SLURM jobs get SIGUSR2, or ``SUBMITIT_PREEMPT_SIGNAL``). A handler that was installed before (submitit's,
    which checkpoints the job and requeues it, then exits) is called with the signal at the end of the block,
    once the run has stopped and written its records; the requeued job continues from the run's checkpoint
    (``trainer.auto_resume``)."""

    SIGNALS = tuple(
        getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGUSR1", "SIGUSR2") if hasattr(signal, name)
    )  # Windows has no SIGUSR1 and SIGUSR2

    def __init__(self):
        self.signal: int | None = None
        self._previous: dict = {}
        self._critical = 0

    def __enter__(self) -> StopRequest:
        for number in self.SIGNALS:
            with contextlib.suppress(ValueError):  # not the main thread: leave handlers alone
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, number, frame) -> None:
        if self.signal is None:
            self.signal = number
            log.warning("Received %s: finishing the current step and saving.", signal.Signals(number).name)
        elif not self._critical:
            raise StopNow(number)

    def check(self) -> None:
        """Between the stages of a start, where there is no step to finish: stop now when asked to."""
        if self.signal is not None:
            raise StopNow(self.signal)

    @contextlib.contextmanager
    def critical(self) -> Iterator[None]:
        self._critical += 1
        try:
            yield
        finally:
            self._critical -= 1

    def __exit__(self, *exc) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        # The handler the signal would have reached without this block, now that the run has written its
        # records (Python's own SIGINT handler, which raises KeyboardInterrupt, excepted). Submitit's requeues
        # the job and exits (SystemExit), or raises its UncompletedJobError when the job may not be requeued.
        previous = self._previous.get(self.signal) if self.signal is not None else None
        if callable(previous) and previous is not signal.default_int_handler:
            previous(self.signal, None)

    def __bool__(self) -> bool:
        return self.signal is not None


def training_loss(run: Run, images: torch.Tensor, labels: torch.Tensor):
    """Augment a batch, run the network on it under the run's autocast, and score it: (logits, targets, loss)."""
    batch, targets = run.augment(images, labels, run.generator)
    with autocast(run.device, run.autocast_dtype):
        logits = run.model(batch)
    return logits, targets, run.objective(logits, targets, run.model)


def optimize(run: Run, loss: torch.Tensor, before_step=(), state: dict | None = None) -> None:
    """The backward pass and the optimizer step, through ``run.scaler``. Under float16 autocast it scales the
    loss up first, so that small gradients do not underflow float16's range (loss scaling, Micikevicius et
    al. 2018), unscales the gradients before the ``before_step`` hooks see them, and skips a step whose
    gradients overflowed, lowering the scale. Otherwise the scaler is disabled and passes everything through."""
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.unscale_(run.optimizer)
    for hook in before_step:
        hook(run, state)
    run.scaler.step(run.optimizer)
    run.scaler.update()


@contextlib.contextmanager
def throwaway(run: Run) -> Iterator[None]:
    """Whatever trains inside this block trains for nothing: weights, norm statistics, the optimizer's and the
    loss scaler's state and every random stream are put back at its end, so the run then trains exactly as it
    would have without it."""
    weights = {name: tensor.clone() for name, tensor in run.model.state_dict().items()}
    optimizer_state = copy.deepcopy(run.optimizer.state_dict())
    scaler_state = run.scaler.state_dict()
    generator_state = run.generator.get_state()
    try:
        with torch.random.fork_rng(devices=[run.device] if run.device.type == "cuda" else []):
            run.model.train()
            yield
    finally:
        run.optimizer.zero_grad(set_to_none=True)
        run.model.load_state_dict(weights)
        run.optimizer.load_state_dict(optimizer_state)
        if run.scaler.is_enabled():
            run.scaler.load_state_dict(scaler_state)
        run.generator.set_state(generator_state)


def warm_up(run: Run, steps: int = 3) -> float:
    """A few throwaway training steps and one test batch before the clock starts, so that one-off costs
    (cuDNN's search for the fastest kernels, lazy loading of CUDA kernels, ``torch.compile``) stay out of
    ``train_time_s``, as airbench's warm-up run keeps them out of its clock. Returns the seconds it took."""
    synchronize(run.device)
    started = time.perf_counter()
    images, labels = run.splits.train_images[: run.batch_size], run.splits.train_labels[: run.batch_size]
    with throwaway(run):
        for _ in range(steps):
            optimize(run, training_loss(run, images, labels)[2])
        size = min(run.eval_batch_size, len(run.splits.test_labels))
        evaluate(run, run.splits.test_images[:size], run.splits.test_labels[:size])
    synchronize(run.device)
    return time.perf_counter() - started


def measure(run: Run, seconds: float = 2.0, test_batches: int = 4) -> tuple[Costs, float]:
    """What a time budget needs to know before it fixes the run's length: after ``warm_up``, throwaway steps
    on random batches for about ``seconds`` (at least 5), ``test_batches`` test batches through the run's
    test-time views, and one checkpoint's worth of bytes written as the records are (flushed to disk).
    Returns the costs and the seconds the measurement took."""
    started = time.perf_counter()
    warm_up(run)
    with throwaway(run):
        synchronize(run.device)
        steps, clock = 0, time.perf_counter()
        while steps < 5 or time.perf_counter() - clock < seconds:
            indices = torch.randint(len(run.splits.train_labels), (run.batch_size,), device=run.device)
            optimize(run, training_loss(run, run.splits.train_images[indices], run.splits.train_labels[indices])[2])
            steps += 1
        synchronize(run.device)
        step_s = (time.perf_counter() - clock) / steps
        size = min(run.eval_batch_size * test_batches, len(run.splits.test_labels))
        clock = time.perf_counter()
        evaluate(run, run.splits.test_images[:size], run.splits.test_labels[:size])
        image_s = (time.perf_counter() - clock) / size
        probe = run.recorder.path(".write-probe.pt")
        clock = time.perf_counter()
        atomic_write_bytes(
            probe, lambda handle: torch.save([run.model.state_dict(), run.optimizer.state_dict()], handle)
        )
        write_s = time.perf_counter() - clock
        probe.unlink()
    costs = Costs(
        step_s=step_s,
        image_s=image_s,
        write_s=write_s,
        steps_per_epoch=run.steps_per_epoch,
        test_images=len(run.splits.test_labels),
        validation_images=0 if run.splits.val_labels is None else len(run.splits.val_labels),
        # The averages that score their own network beside the run's (an EMA) say how many they add.
        evaluations=1 + sum(getattr(callback, "test_evaluations", 0) for callback in run.callbacks),
    )
    return costs, time.perf_counter() - started


def train_epoch(run: Run, epoch: int, state: dict, stop: StopRequest, pace: Pace | None = None) -> dict:
    """One pass over a fresh permutation of the training split, or its first steps where the run's length ends
    inside this epoch (a time budget's, ``Run.fix_length``). Returns the epoch's train metrics and,
    under ``stopped``, why it ended early (``diverged`` or ``interrupted``), if it did; under ``cut``, the steps
    that a budget's deadline (``run.deadline``) took off the run's end, which then ends with this epoch. The bar
    moves at every step (a host-side count); the loss it shows is read from the device every ``trainer.log_every``
    steps."""
    trainer = run.config.trainer
    images, labels = run.splits.train_images, run.splits.train_labels
    batch_size = run.batch_size
    steps = min(run.steps_per_epoch, run.total_steps - epoch * run.steps_per_epoch)
    order = torch.randperm(len(labels), device=run.device, generator=run.generator)
    run.augment.start_epoch(epoch, order, run.generator)  # for augmentations that follow each example
    loss_sum = torch.zeros((), device=run.device)
    correct = torch.zeros((), device=run.device)
    seen = 0
    stopped = cut = None
    run.model.train()
    bar = tqdm(
        total=steps,
        desc=f"epoch {epoch + 1}/{trainer.epochs}",
        unit="step",
        leave=False,
        dynamic_ncols=True,
        disable=not run.progress,
    )
    before_step, step_end = run.hooks("on_before_step"), run.hooks("on_step_end")
    synchronize(run.device)
    started = time.perf_counter()
    if pace is not None:
        pace.start_epoch()
    for step in range(steps):
        if stop:
            stopped = "interrupted"
            break
        if run.deadline is not None and state["step"] + 1 < run.total_steps:
            observed = (time.perf_counter() - started) / step if step else 0.0
            if run.deadline.last_step(time.time(), observed):
                # The run's last step: its hooks see the end (lookahead hands its average over), its schedule
                # stays the one it was built for, cut short.
                cut = run.total_steps - state["step"] - 1
                run.total_steps = state["step"] + 1
                steps = step + 1
        indices = order[step * batch_size : (step + 1) * batch_size]
        logits, targets, loss = training_loss(run, images[indices], labels[indices])
        optimize(run, loss, before_step, state)
        run.schedule.step()
        for hook in step_end:
            hook(run, state, loss)

        hard_targets = targets if targets.ndim == 1 else targets.argmax(1)
        loss_sum += loss.detach() * len(indices)
        correct += (logits.argmax(1) == hard_targets).sum()
        seen += len(indices)
        state["step"] += 1
        if state["first_loss"] is None:
            state["first_loss"] = loss.item()
        bar.update()
        if pace is not None:
            pace.step(len(indices))

        last = step + 1 == steps
        if (step + 1) % trainer.log_every == 0 or last:
            current, total_loss, total_correct = torch.stack([loss.detach(), loss_sum, correct]).tolist()
            # The lectures' rule of thumb: a loss that is not finite or above 3x its start has diverged. The
            # epoch's running mean catches a loss that exploded between two reads and came back down (dead units).
            worst = max(current, total_loss / seen)
            if not math.isfinite(worst) or worst > trainer.divergence_factor * state["first_loss"]:
                stopped = "diverged"
                log.warning(
                    "Loss %.4g at step %d is above %gx the first loss %.4g (or not finite): diverged.",
                    worst,
                    state["step"],
                    trainer.divergence_factor,
                    state["first_loss"],
                )
                break
            bar.set_postfix(
                loss=f"{total_loss / seen:.3f}",
                acc=f"{total_correct / seen:.3f}",
                lr=f"{run.optimizer.param_groups[0]['lr']:.3g}",
            )
        if cut is not None and last:
            break
    synchronize(run.device)
    elapsed = time.perf_counter() - started
    bar.close()
    total_loss, total_correct = torch.stack([loss_sum, correct]).tolist()
    return {
        "train_loss": total_loss / max(seen, 1),
        "train_acc": total_correct / max(seen, 1),
        "epoch_time_s": elapsed,
        "images_per_s": seen / elapsed if elapsed > 0 else None,
        "images": seen,
        "stopped": stopped,
        "cut": cut,
    }


def fit(
    run: Run,
    context: dict,
    checkpoint: dict | None = None,
    stop: StopRequest | None = None,
    budget_from: float | None = None,
) -> dict:
    """Train for ``trainer.epochs`` epochs, recording each one; returns the summary it wrote.

    With a ``checkpoint``, the run continues from it: ``metrics.jsonl`` is rewritten to the epochs the
    checkpoint holds, so epochs trained after it and lost to the interruption are trained again. ``stop``:
    the signal handling already installed by the caller; without one, the run installs its own. The test
    logits are written with every test evaluation, before the checkpoint of that epoch, so that a run killed
    at any point leaves (or its resume completes) every file an uninterrupted run has. A run without a schedule
    yet has a time budget, which fixes its length first (``budget_length``), counted from ``budget_from`` (on
    ``time.time()``; the run's start in ``context`` without one).
    """
    trainer = run.config.trainer
    recorder = run.recorder
    state = {"epoch": 0, "step": 0, "first_loss": None, "train_time_s": 0.0, "resumes": 0, "budget": None}
    history: list[dict] = []
    base = {
        "params": sum(parameter.numel() for parameter in run.model.parameters()),
        "test_images": len(run.splits.test_labels),  # compare says when runs were tested on different counts
        "device": torch.cuda.get_device_name(run.device) if run.device.type == "cuda" else "cpu",
        "output_dir": str(recorder.folder),
        **context,
    }
    started = base.pop("started")
    status = "completed"
    with contextlib.nullcontext(stop) if stop is not None else StopRequest() as stop:
        try:
            if run.schedule is None:  # a time budget: the length is chosen now, and the schedule built for it
                state["budget"] = budget_length(run, checkpoint, budget_from or started, base)
            if checkpoint is not None:
                history = restore(run, state, checkpoint)
            # After the restore, so that a callback knows a resumed run (state["step"] > 0) from a new one.
            for hook in run.hooks("on_train_start"):
                hook(run, state)
            if checkpoint is not None:
                restore_callbacks(run, checkpoint)
            # The first write to the folder: everything before it may still refuse the run (runner.train).
            recorder.summary({"status": "running", **base})
            if checkpoint is not None:
                recorder.rewrite_metrics(history)
                log.info("Resuming %s after epoch %d.", recorder.folder, state["epoch"])
            elif recorder.path("metrics.jsonl").exists():
                # Killed before its first checkpoint: the run starts over, so the epochs it recorded go too.
                recorder.rewrite_metrics([])
            warmup = trainer.get("device_warmup", "auto")
            wanted = warmup is True or (warmup == "auto" and run.device.type == "cuda")
            # A budget's measurement has warmed the device up already.
            if wanted and "warmup_time_s" not in base and state["epoch"] < trainer.epochs:
                base["warmup_time_s"] = warm_up(run)
            steps_left = run.total_steps - state["step"]  # a time budget's last epoch may be part of one
            pace = Pace(steps_left * run.batch_size, steps_left / run.steps_per_epoch, run.device.type == "cpu")
            while state["epoch"] < trainer.epochs:
                outcome = train_epoch(run, state["epoch"], state, stop, pace)
                if outcome["stopped"]:
                    status = outcome["stopped"]
                    break
                if outcome["cut"]:
                    cut_short(run, state, outcome, base)
                row = end_epoch(run, state, history, outcome)
                epochs_left = (run.total_steps - state["step"]) / run.steps_per_epoch
                pace.epoch_end(state["epoch"], epochs_left, row["epoch_time_s"], evaluation_time(row))
                if stop:
                    status = "interrupted"
                    break
        except StopNow as now:
            status = "interrupted"
            stop.signal = stop.signal or now.number
        with stop.critical():
            summary = summarize(run, state, history, status, time.time() - started, base)
            if stop.signal is not None:
                summary["signal"] = signal.Signals(stop.signal).name
            for hook in run.hooks("on_train_end"):
                hook(run, state, summary)
            recorder.summary(summary)
    return summary


def cut_short(run: Run, state: dict, outcome: dict, base: dict) -> None:
    """A budget run whose steps ran slower than measured ends with the epoch just trained: its test evaluation
    and checkpoint follow, and the summary says how many steps the deadline took off."""
    run.config.trainer.epochs = state["epoch"] + 1
    base["budget_cut_steps"] = outcome["cut"]
    log.warning(
        "trainer.time_budget=%g s: steps took %.3g s where %.3g s were measured, so training ends %d steps early, "
        "after step %d, with its schedule unfinished, for the run to end within its budget.",
        run.config.trainer.time_budget,
        outcome["epoch_time_s"] * run.batch_size / max(1, outcome["images"]),
        run.deadline.step_s,
        outcome["cut"],
        run.total_steps,
    )


def budget_length(run: Run, checkpoint: dict | None, started: float, base: dict) -> dict:
    """Fix the length of a run under a time budget (``runner.budget``) and build its schedule: measured now, or,
    for a resumed run, the length its first start chose, which its checkpoint holds (measuring again would give
    another length than the one its schedule was built for). ``started``: the command's start, on ``time.time()``.
    Returns the choice, also added to ``base``."""
    if checkpoint is not None:
        choice = checkpoint["budget"]
    else:
        costs, base["warmup_time_s"] = measure(run, seconds=measuring_seconds(run.config.trainer.time_budget))
        choice = choose_length(run.config.trainer, time.time() - started, costs)
        # Only where the length was measured now: a resumed run's budget was its first start's.
        finish = (1 + MARGIN) * costs.finish_s()
        run.deadline = Deadline(started + choice["time_budget_s"], costs.step_s, finish)
    # A checkpoint written before lengths were counted in steps holds whole epochs.
    steps = choice.get("budget_steps", choice["budget_epochs"] * run.steps_per_epoch)
    run.fix_length(steps)
    base.update(choice)
    log.info(
        "trainer.time_budget=%g s: %g epochs (%d steps) in place of trainer.epochs=%d, predicted to end at %.0f s.",
        choice["time_budget_s"],
        choice["budget_epochs"],
        steps,
        choice["trainer_epochs"],
        choice["budget_predicted_s"],
    )
    return choice


def evaluation_time(row: dict) -> float | None:
    """Seconds an epoch spent after its training, on the test set and the callbacks' epoch-end work; None when
    the epoch had no test evaluation (``trainer.eval_every``), which the next ones will have."""
    if "eval_time_s" not in row:
        return None
    return row["eval_time_s"] + row.get("callbacks_time_s", 0.0)


def end_epoch(run: Run, state: dict, history: list[dict], outcome: dict) -> dict:
    """Evaluate the epoch just trained, record it, and checkpoint it; returns its metrics row."""
    trainer = run.config.trainer
    epoch = state["epoch"]
    state["train_time_s"] += outcome["epoch_time_s"]
    row = {
        "epoch": epoch + 1,
        "step": state["step"],
        "lr": run.optimizer.param_groups[0]["lr"],
        "train_loss": outcome["train_loss"],
        "train_acc": outcome["train_acc"],
    }
    if run.splits.val_images is not None:
        validation = evaluate(run, run.splits.val_images, run.splits.val_labels)
        row.update(val_loss=validation["loss"], val_acc=validation["acc"])
    if hasattr(run.schedule, "epoch_end"):
        # Schedules that follow the results (reduce on plateau) see train and validation, never test.
        run.schedule.epoch_end(dict(row))
    row.update(epoch_time_s=outcome["epoch_time_s"], images_per_s=outcome["images_per_s"])
    tested = None
    if (epoch + 1) % trainer.eval_every == 0 or epoch + 1 == trainer.epochs:
        test_started = time.perf_counter()
        tested = evaluate(run, run.splits.test_images, run.splits.test_labels)
        row.update(test_loss=tested["loss"], test_acc=tested["acc"], eval_time_s=time.perf_counter() - test_started)
    hooks = run.hooks("on_epoch_end")
    if hooks:
        # Recorded because it is evaluation too (the diagnostics score training images and probe the layers):
        # how long is left, and what a sweep's runs spend besides training, count it.
        callbacks_started = time.perf_counter()
        for hook in hooks:
            hook(run, state, row)
        row["callbacks_time_s"] = time.perf_counter() - callbacks_started
    if tested is not None:
        run.recorder.test_logits(tested["logits"], run.splits.test_labels)
    history.append(row)
    run.recorder.metrics(row)
    state["epoch"] = epoch + 1
    log.info(
        "epoch %d/%d  train loss %.4f acc %.4f | %s%s%.1f s, %.0f img/s",
        epoch + 1,
        trainer.epochs,
        row["train_loss"],
        row["train_acc"],
        f"val acc {row['val_acc']:.4f} | " if "val_acc" in row else "",
        f"test loss {row['test_loss']:.4f} acc {row['test_acc']:.4f} | " if "test_acc" in row else "",
        row["epoch_time_s"],
        row["images_per_s"] or 0,
    )
    if state["epoch"] % trainer.checkpoint_every == 0 or state["epoch"] == trainer.epochs:
        run.recorder.checkpoint(checkpoint_state(run, state, history))
    return row


def summarize(run: Run, state: dict, history: list[dict], status: str, wall_time: float, base: dict) -> dict:
    """The summary of the epochs in ``history``."""
    last = history[-1] if history else {}
    # With trainer.eval_every, an interrupted run's last epoch may have no test evaluation: report the latest.
    tested = [row for row in history if "test_acc" in row]
    return {
        "status": status,
        "test_acc": tested[-1]["test_acc"] if tested else None,
        "best_test_acc": max(row["test_acc"] for row in tested) if tested else None,
        "test_loss": tested[-1]["test_loss"] if tested else None,
        "train_loss": last.get("train_loss"),
        "train_acc": last.get("train_acc"),
        "val_acc": last.get("val_acc"),
        "val_loss": last.get("val_loss"),
        "epochs_completed": state["epoch"],
        "resumes": state["resumes"],
        "steps_completed": state["step"],
        "first_loss": state["first_loss"],
        "train_time_s": state["train_time_s"],
        "wall_time_s": wall_time,
        "images_per_s": (
            sum(row["images_per_s"] * row["epoch_time_s"] for row in history) / state["train_time_s"]
            if state["train_time_s"] > 0
            else None
        ),
        **base,
    }
