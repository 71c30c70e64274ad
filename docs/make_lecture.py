"""Regenerate the lecture gallery, docs/lecture.md, with the runner's own commands: every experiment in
conf/experiment/lecture/ is trained (runner.train -m), then compared (runner.compare), diagnosed
(runner.diagnose) and ensembled (runner.ensemble) into the page's tables and figures.

    python docs/make_lecture.py --data ../shared/data/cifar10-jpeg.tar.gz   # a CIFAR-10 folder or archive
    python docs/make_lecture.py                                             # the official CIFAR-10 (data/)
    python docs/make_lecture.py --only activations,schedules                # some sections (a partial page)

Runs land in outputs/lecture/<experiment>/ and stay there: a second call skips every run that completed (the
runner resumes a run started again in its own folder), so an interrupted regeneration continues where it
stopped, and rebuilding the page after editing its text takes minutes, not the hour of training. Delete
outputs/lecture/ to train everything again.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Gallery:
    data: list[str]  # the overrides every training and diagnose command gets (the data to use)
    runs: Path = ROOT / "outputs" / "lecture"
    page: Path = ROOT / "docs" / "lecture.md"

    @property
    def figures(self) -> Path:
        return self.page.parent / "lecture"

    def command(self, module: str, *arguments: str) -> str:
        """Run ``python -m runner.<module>`` from the project root; return its standard output."""
        # Paths inside the project are given relative to it, so that the page shows no machine's folders.
        arguments = tuple(argument.replace(f"{ROOT}/", "") for argument in arguments)
        shown = f"python -m runner.{module} " + " ".join(arguments)
        print(f"\n$ {shown}", flush=True)
        completed = subprocess.run(
            [sys.executable, "-m", f"runner.{module}", *arguments],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        print(completed.stdout, end="", flush=True)
        # A sweep with a failed or diverged job still exits 1 after finishing the others: the page shows them.
        if completed.returncode not in (0, 1):
            raise SystemExit(f"`{shown}` exited with {completed.returncode}")
        return completed.stdout

    def sweep(self, experiment: str) -> Path:
        folder = self.runs / experiment
        self.command("train", "-m", f"experiment=lecture/{experiment}", f"hydra.sweep.dir={folder}", *self.data)
        return folder

    def single(self, experiment: str) -> Path:
        folder = self.runs / experiment
        self.command("train", f"experiment=lecture/{experiment}", f"hydra.run.dir={folder}", *self.data)
        return folder

    def table(self, *folders: Path, sort: str = "best_test_acc", metrics: str = "") -> str:
        arguments = [*map(str, folders), "--format", "markdown", "--sort", sort]
        arguments += ["--metrics", metrics] if metrics else []
        return self.command("compare", *arguments).strip()

    def results(self, name: str, *folders: Path, sort: str = "best_test_acc", metrics: str = "") -> str:
        """The comparison table of these runs, then their learning curves."""
        return self.table(*folders, sort=sort, metrics=metrics) + "\n\n" + self.curves(name, *folders)

    def curves(self, name: str, *folders: Path) -> str:
        """The learning curves of these runs, overlaid, as a figure of the page."""
        figure = self.figures / f"{name}.png"
        self.command("compare", *map(str, folders), "--sort", "run", "--plot", str(figure))
        return f"![Test accuracy and train loss per epoch: {name}](lecture/{figure.name})"


def summaries(folder: Path) -> list[dict]:
    """The summary.json of every run under a folder (a sweep) or of the folder itself, in job order."""
    paths = sorted(folder.glob("*/summary.json"), key=lambda path: int(path.parent.name)) or [folder / "summary.json"]
    return [json.loads(path.read_text()) for path in paths if path.exists()]


def override(summary: dict, key: str) -> str | None:
    """The value a run's command line (or its sweep) gave ``key``, from the ``overrides`` of its summary."""
    for entry in summary.get("overrides") or []:
        name, _, value = entry.partition("=")
        if name == key:
            return value
    return None


def percent(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def command_block(*commands: str) -> str:
    return "```bash\n" + "\n".join(commands) + "\n```"


def section(heading: str, claim: str, commands: tuple[str, ...], *body: str) -> str:
    """One claim of the page: its heading, what the lecture says, the commands a student types (when they come
    before anything else), then what came out."""
    return "\n\n".join(
        [f"## {heading}", f"**Lecture:** {claim}", *([command_block(*commands)] if commands else []), *body]
    )


# --- The sections: one per claim of the lectures --------------------------------------------------------
# Each returns its markdown: the claim, the commands a student types, the table and figure that came out,
# and a reading of the result.


def activations(gallery: Gallery) -> str:
    folder = gallery.sweep("activations")
    return section(
        "1. Activation functions",
        "sigmoid and tanh train slower and end worse than ReLU; leaky ReLU, ELU, SELU, GELU and "
        "swish (SiLU) land within about a point of ReLU. Ramachandran et al. (2018) report, for a ResNet-164 on "
        "CIFAR-10: ReLU 93.8, leaky ReLU 94.2, PReLU 94.1, softplus 94.6, ELU 94.1, SELU 93.0, GELU 94.3, "
        "swish 94.7.",
        (
            "python -m runner.train -m experiment=lecture/activations",
            "python -m runner.compare outputs/multirun/<date>/<time> --format markdown",
        ),
        gallery.results("activations", folder),
        VERDICTS["activations"],
    )


DIAGNOSE_CASES = {
    "tanh_small": ("tanh", "small", []),
    "tanh_large": ("tanh", "large", ["init.std=1.0"]),
    "tanh_xavier": ("tanh", "xavier", []),
    "relu_xavier": ("relu", "xavier", []),
    "relu_kaiming": ("relu", "kaiming", []),
}


DEEP_PLAIN_NET = ["model=mlp", "model.depth=10", "model.width=500", "norm=none"]


def initialization(gallery: Gallery) -> str:
    figures, commands = [], []
    statistics = [
        "| activation | init | std, layer 1 | std, layer 10 | saturated (tanh) or dead (ReLU), layer 10 | warnings |",
        "|---|---|---:|---:|---:|---|",
    ]
    for name, (activation, init, extra) in DIAGNOSE_CASES.items():
        run = gallery.runs / "diagnose" / name
        described = " ".join([init, *extra])
        arguments = [*DEEP_PLAIN_NET, f"activation={activation}", f"init={init}", *extra]
        commands.append("python -m runner.diagnose " + " ".join(arguments))
        gallery.command("diagnose", *arguments, f"hydra.run.dir={run}", *gallery.data)
        gallery.figures.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run / "activations.png", gallery.figures / f"diagnose_{name}.png")
        layers = json.loads((run / "activations.json").read_text())
        warnings = json.loads((run / "diagnose.json").read_text()).get("warnings") or ["-"]
        # Saturation is measured for squashing units (tanh), dead units for rectifiers (ReLU).
        stuck = layers[-1].get("saturated_fraction")
        stuck = layers[-1].get("dead_fraction") if stuck is None else stuck
        statistics.append(
            f"| {activation} | {described} | {layers[0]['std']:.3g} | {layers[-1]['std']:.3g} | "
            f"{'-' if stuck is None else f'{100 * stuck:.0f}%'} | {'; '.join(warnings)} |"
        )
        figures.append(f"![{activation} with init={described}](lecture/diagnose_{name}.png)")
    folder = gallery.sweep("initialization")
    fixup = gallery.sweep("fixup")
    return section(
        "2. Weight initialization",
        "all-zero weights never break the symmetry between units; weights drawn with std 0.01 or "
        "0.05 fail in a deep plain network (the activations shrink to zero or saturate); Xavier suits tanh and "
        "Kaiming suits ReLU; Fixup trains a deep residual network without normalisation.",
        (),
        "First, without training: the activation statistics of each layer of a 10-layer, 500-wide MLP fed unit "
        "Gaussian inputs (the lectures' experiment), from `runner.diagnose`:",
        command_block(*commands),
        "\n".join(statistics),
        "\n\n".join(figures),
        VERDICTS["initialization_statistics"],
        "Then trained, the same network for 4 epochs on 10,000 images:",
        command_block("python -m runner.train -m experiment=lecture/initialization"),
        gallery.results("initialization", folder, metrics="train_acc"),
        VERDICTS["initialization"],
        "Fixup against batch norm on a ResNet-20 at learning rate 0.1 (5,000 images, 4 epochs):",
        command_block("python -m runner.train -m experiment=lecture/fixup"),
        gallery.results("fixup", fixup),
        VERDICTS["fixup"],
    )


def preprocessing(gallery: Gallery) -> str:
    folder = gallery.sweep("preprocessing")
    return section(
        "3. Data preprocessing",
        "zero-centre the data (subtract the mean image, or the per-channel mean), and scale it; "
        "PCA and ZCA whitening decorrelate the pixels but are rarely used for images.",
        ("python -m runner.train -m experiment=lecture/preprocessing",),
        gallery.results("preprocessing", folder),
        VERDICTS["preprocessing"],
    )


def batchnorm(gallery: Gallery) -> str:
    rates = gallery.sweep("batchnorm_lr")
    inits = gallery.sweep("batchnorm_init")
    return section(
        "4. Batch normalization",
        "batch normalization allows higher learning rates and makes the network far less "
        "dependent on its initialization (Ioffe and Szegedy 2015).",
        (
            "python -m runner.train -m experiment=lecture/batchnorm_lr",
            "python -m runner.train -m experiment=lecture/batchnorm_init",
        ),
        "Learning rates, with and without batch norm:",
        gallery.results("batchnorm_lr", rates, sort="run"),
        "Initializations, with and without batch norm:",
        gallery.results("batchnorm_init", inits, sort="run"),
        VERDICTS["batchnorm"],
    )


def regularization(gallery: Gallery) -> str:
    plain = gallery.sweep("regularization")
    augmented = gallery.sweep("regularization_augment")
    return section(
        "5. Regularization",
        "on a model that overfits, L2, dropout, DropConnect, stochastic depth, cutout and mixup "
        "each close part of the gap between training and test accuracy.",
        (
            "python -m runner.train -m experiment=lecture/regularization",
            "python -m runner.train -m experiment=lecture/regularization_augment",
        ),
        "`train acc` is measured during the last epoch, on the regularized network and the augmented images; "
        "`train test gap` is it minus the test accuracy.",
        gallery.results("regularization", plain, augmented, metrics="train_acc,train_test_gap"),
        VERDICTS["regularization"],
    )


def schedules(gallery: Gallery) -> str:
    folder = gallery.sweep("schedules")
    rates = gallery.sweep("learning_rate")
    warnings = []
    for summary in summaries(rates):
        rate = override(summary, "optimizer.lr")
        lines = summary.get("warnings") or ["(none)"]
        status = summary.get("status")
        warnings.append(f"- **lr={rate}** ({status}, test {percent(summary.get('test_acc'))}): " + " ".join(lines))
    return section(
        "6. Learning-rate schedules, and babysitting the learning rate",
        "decay the learning rate (step, cosine, linear, one-cycle) rather than keep it constant; "
        "warm it up at the start. Too high a rate makes the loss explode, too low a rate leaves it flat.",
        ("python -m runner.train -m experiment=lecture/schedules",),
        gallery.results("schedules", folder),
        VERDICTS["schedules"],
        "Too high and too low, on a plain CNN without normalisation:",
        command_block("python -m runner.train -m experiment=lecture/learning_rate"),
        gallery.results("learning_rate", rates, sort="run"),
        "The babysitting warnings each run wrote (`summary.json`, and its log):",
        "\n".join(warnings),
        VERDICTS["learning_rate"],
    )


def large_batch(gallery: Gallery) -> str:
    fixed = gallery.sweep("large_batch")
    scaled = gallery.sweep("large_batch_scaled")
    return section(
        "7. Large-batch training",
        "with a larger batch, scale the learning rate linearly with the batch size and warm it up "
        "(Goyal et al. 2017); keep the rate fixed and large batches train worse in the same number of epochs.",
        (
            "python -m runner.train -m experiment=lecture/large_batch",
            "python -m runner.train -m experiment=lecture/large_batch_scaled",
        ),
        gallery.results("large_batch", fixed, scaled, sort="run"),
        VERDICTS["large_batch"],
    )


def search_figure(grid: list[dict], random: list[dict], folder: Path) -> str:
    """Bergstra and Bengio's picture: the points each search tried, coloured by validation accuracy."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4.2), layout="constrained")
    axes = figure.subplots(1, 2, sharey=True)
    best = max(100 * (run.get("val_acc") or 0) for run in grid + random)  # one colour scale for both
    for axis, runs, title in ((axes[0], grid, "grid search, 9 runs"), (axes[1], random, "random search, 9 runs")):
        rates = [float(override(run, "optimizer.lr")) for run in runs]
        decays = [float(override(run, "regularizer.l2.weight_decay")) for run in runs]
        scores = [100 * (run.get("val_acc") or 0) for run in runs]
        points = axis.scatter(rates, decays, c=scores, cmap="viridis", vmin=10, vmax=max(best, 11), s=80)
        for rate, decay, score in zip(rates, decays, scores, strict=True):
            axis.annotate(f"{score:.0f}", (rate, decay), textcoords="offset points", xytext=(6, 4), fontsize=8)
        axis.set(xscale="log", yscale="log", xlabel="learning rate", title=title, xlim=(1e-3, 1), ylim=(1e-5, 1e-2))
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("L2 strength")
    figure.colorbar(points, ax=axes, label="validation accuracy (%)")
    folder.mkdir(parents=True, exist_ok=True)
    figure.savefig(folder / "search.png", dpi=110)
    return "![The rates and L2 strengths each search tried, coloured by validation accuracy](lecture/search.png)"


def search(gallery: Gallery) -> str:
    grid_folder = gallery.sweep("search_grid")
    random_folder = gallery.sweep("search_random")
    grid, random = summaries(grid_folder), summaries(random_folder)
    best = {
        name: max(runs, key=lambda run: run.get("val_acc") or 0) for name, runs in (("grid", grid), ("random", random))
    }
    lines = [
        f"- **{name}:** best validation accuracy {percent(run.get('val_acc'))} at learning rate "
        f"{float(override(run, 'optimizer.lr')):.3g} and L2 {float(override(run, 'regularizer.l2.weight_decay')):.3g}"
        f" (test {percent(run.get('test_acc'))}); {len({override(each, 'optimizer.lr') for each in runs})} distinct "
        "learning rates tried"
        for name, (run, runs) in {"grid": (best["grid"], grid), "random": (best["random"], random)}.items()
    ]
    return section(
        "8. Random against grid search",
        "at the same budget, random search beats grid search, because a grid tries only a few "
        "distinct values of the parameter that matters most (Bergstra and Bengio 2012).",
        (
            "python -m runner.train -m experiment=lecture/search_grid     # Hydra's basic sweeper: a 3 x 3 grid",
            "python -m runner.train -m experiment=lecture/search_random   # the Optuna sweeper: 9 random trials",
        ),
        "\n".join(lines),
        search_figure(grid, random, gallery.figures),
        gallery.table(grid_folder, random_folder, sort="val_acc"),
        VERDICTS["search"],
    )


def ensembles(gallery: Gallery) -> str:
    seeds = gallery.sweep("ensembles")
    snapshot = gallery.single("snapshot")
    output = gallery.command("ensemble", str(seeds), "--output", str(gallery.runs / "ensembles_result.json"))
    summary = summaries(snapshot)[0]
    cycles = ", ".join(percent(entry.get("test_acc")) for entry in summary.get("snapshots", []))
    return section(
        "9. Ensembles and weight averaging",
        "the average prediction of several independently trained models beats their average "
        "member, typically by a point or two; a snapshot ensemble gets some of that from one run; an "
        "exponential moving average of the weights helps for free.",
        (
            "python -m runner.train -m experiment=lecture/ensembles",
            "python -m runner.ensemble outputs/multirun/<date>/<time>",
            "python -m runner.train experiment=lecture/snapshot",
        ),
        "Five seeds, each with the EMA of its weights evaluated beside it:",
        gallery.table(seeds, sort="run", metrics="ema_test_acc"),
        "```\n" + "\n".join(line for line in output.strip().splitlines() if not line.startswith("Wrote")) + "\n```",
        "Snapshot ensemble, one run of the same length with the rate restarted every 2 epochs: the snapshots "
        f"at the end of each cycle score {cycles}; their mean {percent(summary.get('snapshot_mean_acc'))}, "
        f"their ensemble **{percent(summary.get('snapshot_ensemble_acc'))}**.",
        gallery.curves("ensembles", seeds, snapshot),
        VERDICTS["ensembles"],
    )


def transfer(gallery: Gallery) -> str:
    pretrain = gallery.runs / "transfer_pretrain"
    demo = gallery.runs / "transfer_demo"
    gallery.command("train", "experiment=transfer_pretrain", f"hydra.run.dir={pretrain}", *gallery.data)
    gallery.command(
        "train",
        "-m",
        "experiment=transfer_demo",
        f"finetune.checkpoint=null,{pretrain}",
        "finetune.freeze=none,backbone",
        f"hydra.sweep.dir={demo}",
        *gallery.data,
    )
    return section(
        "10. Transfer learning",
        "with little data, start from a network trained on a related task and fine-tune it (or "
        "train only a new head on its frozen features) rather than train from scratch.",
        (),
        "The pretraining task is five CIFAR-10 classes (1,500 images each); the target task is the other five "
        "classes with only 100 images each.",
        command_block(
            "python -m runner.train experiment=transfer_pretrain",
            "python -m runner.train -m experiment=transfer_demo finetune.checkpoint=null,outputs/transfer/pretrain "
            "finetune.freeze=none,backbone",
        ),
        gallery.results("transfer", demo, sort="run"),
        VERDICTS["transfer"],
    )


SECTIONS = {
    "activations": activations,
    "initialization": initialization,
    "preprocessing": preprocessing,
    "batchnorm": batchnorm,
    "regularization": regularization,
    "schedules": schedules,
    "large_batch": large_batch,
    "search": search,
    "ensembles": ensembles,
    "transfer": transfer,
}

# What each result says about the lecture's claim, written after reading the tables above (CPU, seed 0).
VERDICTS = {
    "activations": (
        "**Agrees.** Sigmoid (24.5%) and tanh (36.8%) end far below ReLU (58.1%), and their curves trail from the "
        "first epoch. ELU, PReLU, GELU, SiLU (swish), SELU and leaky ReLU all land within 1.7 points of ReLU, "
        "softplus 4 points below. With one seed and 4 epochs, a point is within seed-to-seed noise, so the paper's "
        "finer ranking inside the ReLU family (swish and softplus above ReLU) is not resolved here."
    ),
    "initialization_statistics": (
        "**Agrees with the lecture's figures.** With std 0.01, tanh's activations shrink about 4.5x per layer, from "
        "0.45 to 6e-07 at layer 10: the signal vanishes. With std 1.0, every layer saturates (90% of units at ±1). "
        "Xavier keeps tanh's spread within a factor of three over ten layers (0.63 to 0.23). For ReLU, Xavier loses "
        "half the variance at every layer (0.58 to 0.027), while Kaiming holds it near 0.85."
    ),
    "initialization": (
        "**Mostly agrees.** All-zero weights and std 0.01 never leave 10%, and the babysitting warnings name the "
        "cause: identical units, or a collapsed signal. Xavier is tanh's best (42.2%, against 38.1% with Kaiming, "
        "whose larger weights push tanh toward saturation), and Kaiming beats Xavier for ReLU (43.0% against "
        "40.1%). The lecture's \"std 0.05 fails\" does not hold for 500-wide layers: 0.05 lies between Xavier's "
        "sqrt(1/500) = 0.045 and Kaiming's sqrt(2/500) = 0.063, so it trains as well as they do (43.6% with "
        "ReLU). The init that saturates is std 1.0 (figure above)."
    ),
    "fixup": (
        "**Not shown at this scale.** Without normalisation, ResNet-20 trains about as well from PyTorch's default "
        "initialization (24.9%) as from Fixup (25.2%): at 20 layers the default init is stable, and neither run "
        "diverged at learning rate 0.1. Batch norm does best (40.8%). Fixup's claim is about depth: the paper "
        "trains 110-layer and deeper residual networks that fail without it, so `model.depth=110` on the full "
        "data is the experiment to run on a GPU. One of the Fixup run's warnings is a false alarm: the last "
        "block's zero-initialised convolution is reported as symmetric because the head after it starts at zero "
        "too, but its output is added to the shortcut, so the symmetry breaks at the first step."
    ),
    "preprocessing": (
        "**Agrees, with an instructive exception.** In this CNN without normalisation layers, zero-centring helps "
        "(mean image 36.0%, per-channel mean 36.5%, against 34.9% for raw pixels in [0, 1]), and scaling to unit "
        "variance helps more (standardize 39.2%). ZCA whitening (37.2%) gains nothing over standardising. PCA "
        "whitening collapses to 13.0%: it maps each image onto the eigenbasis of all 3,072 pixel values, which "
        "destroys the spatial layout that convolutions rely on. ZCA rotates back and keeps the layout, which is "
        "why ZCA, not PCA, is the whitening used for images (Krizhevsky 2009)."
    ),
    "batchnorm": (
        "**Agrees.** Without batch norm, the best learning rate is 0.05 (41.9%). At 0.2 the accuracy falls to "
        "27.8%, and at 1.0 the ReLUs die (84% dead units, 10.1%). With batch norm, the accuracy keeps rising with "
        "the rate, up to 56.9% at 1.0, 15 points above anything the plain network reaches. Batch norm also makes "
        "the initialization matter far less. At learning rate 0.05, the plain network spans 10.0% (std 0.01) to "
        "41.9% (Kaiming); with batch norm, the same three inits span 33.2% to 41.3%."
    ),
    "regularization": (
        "**Agrees on the gap, not on the test accuracy at this length.** Without regularization, the ResNet-8 "
        "ends 17 points better on its 4,000 training images than on the test set (74.3% against 57.3%). Dropout, "
        "DropConnect, stochastic depth, cutout and mixup shrink that gap to 5 points or less, and even below zero. "
        "L2 at 5e-4 barely changes it in 12 epochs (57.8% test, within noise of no regularization). None of the "
        "others reaches the unregularized test accuracy (mixup comes closest, at 55.1%): 12 epochs stop before "
        "the unregularized network has memorised its "
        "training set, and regularizers pay off later, when they keep the test accuracy from falling while the "
        "training accuracy nears 100%. That needs longer runs (`trainer.epochs=60`), not made for this page."
    ),
    "schedules": (
        "**Agrees on decay, mixed on warm-up.** Every decaying schedule beats the constant rate (57.5-59.0% against "
        "48.9%); linear, one-cycle and cosine end within 0.2 points of each other. Warm-up rescues the constant "
        "rate (54.6%), whose first steps at 0.2 overshoot. It costs the decaying schedules between 0 and 3 points "
        "here, because one epoch of warm-up is a quarter of a 4-epoch run. Its benefit shows with large rates and "
        "batches (section 7)."
    ),
    "learning_rate": (
        "**Agrees, and the diagnostics say why.** At 1e-6, the loss barely moves (5.31 to 5.13 in 2 epochs) and "
        "the accuracy stays at chance. The run warns that the update/weight ratio (5e-06) is far below the "
        "lectures' 1e-3 and that the loss is flat: learning rate too low. At 1.0, the very first update is 6.7 "
        "times the head's weights, and the loss explodes within the first epoch: the run stops as `diverged`, "
        "with a warning that the rate is too high. At 0.02 it trains (36.4%). All three also warn that the "
        "initial loss, 5.2, is above ln 10: without normalisation, Kaiming's weights give this network large "
        "initial logits."
    ),
    "large_batch": (
        "**Agrees.** With one learning rate for every batch size, batch 1024 loses 33 points against batch 128, "
        "and batch 4096 does not learn at all in the same 4 epochs (10%). With the linear scaling rule and a "
        "one-epoch warm-up, they reach 53.9% and 32.8%. The gap does not close completely: Goyal et al. matched "
        "small-batch accuracy up to batch 8192 on ImageNet, where 90 epochs still give thousands of steps, while "
        "batch 4096 gets 24 steps in all here. At batch 128, the warm-up costs 2.3 points, a quarter of the run."
    ),
    "search": (
        "**Does not agree in this draw.** The grid found the better point (50.1% validation accuracy at learning "
        "rate 0.316, against random search's best, 45.1% at 0.237), although random search tried 9 distinct "
        "learning rates to the grid's 3. Two of its 9 trials fell below 0.002, where nothing trains in 3 epochs, "
        "and its best rates straddle the grid's 0.316 without landing nearer. Bergstra and Bengio's argument is "
        "about many hyper-parameters of which few matter, and it holds in expectation over draws, not in every "
        "draw of 9. With two parameters, and the best rate sitting next to a grid point, a 3 x 3 grid is hard to "
        "beat. Another `seed` gives another draw."
    ),
    "ensembles": (
        "**Agrees on ensembles, not on the EMA here.** Averaging the five seeds' probabilities gives 64.4%, 2.4 "
        "points above their mean member (62.0%) and 1.5 above the best one. The snapshot ensemble reaches 60.0%, 6 "
        "points above its snapshots' mean, but below a single cosine run of the same length, since two of its "
        "three snapshots come from short 2- and 4-epoch trajectories. The EMA of the weights (decay 0.99) scores "
        "0.6 to 1.8 points below the final weights in every seed: the cosine schedule anneals the rate to zero, so "
        "the last weights are already an average in effect, and the EMA mixes in older, worse ones. Polyak "
        "averaging pays when the final rate stays high."
    ),
    "transfer": (
        "**Agrees.** On the five target classes with 100 training images each, fine-tuning the pretrained network "
        "reaches 69.5%, against 65.3% from scratch. Training only a new head on the frozen pretrained features "
        "gives 64.4%, against 35.5% on frozen random features: the pretrained features carry most of what the "
        "network knows."
    ),
}


def machine() -> str:
    name = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        models = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if "model name" in line]
        name = f"{models[0]}, {len(models)} cores" if models else name
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{name}; {device}; PyTorch {torch.__version__}"


def run_time(runs: Path) -> tuple[int, float]:
    """How many runs the page rests on and the sum of their wall times (start-up, data, training, evaluation)."""
    total, count = 0.0, 0
    for path in runs.glob("**/summary.json"):
        summary = json.loads(path.read_text())
        if isinstance(summary.get("wall_time_s"), int | float) and math.isfinite(summary["wall_time_s"]):
            total += summary["wall_time_s"]
            count += 1
    return count, total


def page(sections: list[str], data_description: str, elapsed: float, runs: Path) -> str:
    count, total = run_time(runs)
    return (
        "\n\n".join(
            [
                "# The lectures, reproduced",
                'Each section below takes one claim of a "Training Neural Networks" course, runs the shipped '
                "experiment (`conf/experiment/lecture/`) with the runner's own commands, and shows what came out on "
                "real CIFAR-10 images, with one sentence on whether it agrees with the lecture.",
                f"- **Data:** {data_description}.\n"
                f"- **Machine:** {machine()}.\n"
                "- **Scaled down** to fit a 2-core CPU: small networks, subsets of the training images (the full "
                "10,000-image test set always), a few epochs, one seed unless the claim is about seeds. Each "
                "config's header says how and gives the full-size settings. Absolute accuracies are therefore far "
                "below the papers'; the comparisons are what to read.\n"
                "- **Regenerated** with `python docs/make_lecture.py --data <CIFAR-10 folder or archive>`: "
                f"{count} runs whose wall times sum to **{total / 60:.0f} minutes**; the runs are kept in "
                "`outputs/lecture/`, so a second call only rebuilds tables and figures "
                f"(this one took {elapsed / 60:.1f} minutes).\n"
                "- **Tables** are `python -m runner.compare --format markdown` of each sweep: the settings that "
                "differ, the final and best test accuracy, the number of babysitting warnings.",
                *sections,
            ]
        )
        + "\n"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="a CIFAR-10 folder or archive (data=folder); default: data=cifar10")
    parser.add_argument("--only", default="", help=f"comma-separated sections: {', '.join(SECTIONS)}")
    parser.add_argument("--runs", type=Path, default=Gallery.runs, help="where the runs go (default: %(default)s)")
    parser.add_argument("--page", type=Path, default=Gallery.page, help="the page to write (default: %(default)s)")
    parser.add_argument(
        "overrides", nargs="*", help="further overrides for every run (a quick check: trainer.epochs=1 data.subset=500)"
    )
    arguments = parser.parse_args()
    chosen = [name for name in arguments.only.split(",") if name] or list(SECTIONS)
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {', '.join(SECTIONS)}")
    if arguments.data is not None:
        data = ["data=folder", f"data.root={arguments.data.resolve()}"]
        description = f"CIFAR-10 from `{arguments.data.name}` (`data=folder`)"
    else:
        data, description = [], "the official CIFAR-10 (`data=cifar10`)"
    gallery = Gallery(data + arguments.overrides, arguments.runs.resolve(), arguments.page.resolve())
    started = time.time()
    sections = [SECTIONS[name](gallery) for name in chosen]
    gallery.page.write_text(page(sections, description, time.time() - started, gallery.runs))
    print(f"\nWrote {gallery.page} in {(time.time() - started) / 60:.1f} minutes.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
