"""The learning curves of the compared runs as one PNG figure."""

from __future__ import annotations

import io
import statistics

from runner.report.runs import RunRecord, number
from runner.report.table import Row


def curve_label(row: Row, columns: list[str]) -> str:
    shown = [f"{key}={row.settings[key]}" for key in columns if key in row.settings]
    label = ", ".join(shown) or row.label
    if len(row.members) > 1:
        label += f" (mean of {len(row.members)})"
    return label if row.status == "completed" else f"{label} ({row.status})"


def mean_curve(members: list[RunRecord], key: str) -> tuple[list[float], list[float], list[float]]:
    """Per epoch, the mean and sample standard deviation over the members that reached that epoch."""
    by_epoch: dict[float, list[float]] = {}
    for member in members:
        for position, entry in enumerate(member.history):
            epoch = number(entry.get("epoch")) or float(position + 1)
            value = number(entry.get(key))
            if value is not None:
                by_epoch.setdefault(epoch, []).append(value)
    epochs = sorted(by_epoch)
    means = [statistics.fmean(by_epoch[epoch]) for epoch in epochs]
    spreads = [statistics.stdev(by_epoch[epoch]) if len(by_epoch[epoch]) > 1 else 0.0 for epoch in epochs]
    return epochs, means, spreads


def figure_png(rows: list[Row], columns: list[str]) -> bytes:
    """Test accuracy and train loss against epoch, one line per row (mean and ± std band for seed groups)."""
    from matplotlib.figure import Figure  # the object interface: no pyplot state, no display backend needed
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(12, 4.5), layout="constrained")
    accuracy_axis, loss_axis = figure.subplots(1, 2)
    plotted = 0
    for row in rows:
        style = "-" if row.status == "completed" else "--"
        color = None
        for axis, key, scale in ((accuracy_axis, "test_acc", 100.0), (loss_axis, "train_loss", 1.0)):
            epochs, means, spreads = mean_curve(row.members, key)
            if not epochs:
                continue
            (line,) = axis.plot(
                epochs,
                [scale * value for value in means],
                style,
                marker="o" if len(epochs) < 15 else None,
                markersize=3,
                color=color,
                label=curve_label(row, columns) if axis is accuracy_axis else None,
            )
            color = line.get_color()
            if any(spreads):
                low = [scale * (mean - spread) for mean, spread in zip(means, spreads, strict=True)]
                high = [scale * (mean + spread) for mean, spread in zip(means, spreads, strict=True)]
                axis.fill_between(epochs, low, high, color=color, alpha=0.2, linewidth=0)
            plotted += 1
    accuracy_axis.set(xlabel="epoch", ylabel="test accuracy (%)", title="Test accuracy")
    loss_axis.set(xlabel="epoch", ylabel="train loss", title="Train loss")
    for axis in (accuracy_axis, loss_axis):
        axis.grid(alpha=0.3)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    if plotted:
        handles, labels = accuracy_axis.get_legend_handles_labels()
        figure.legend(handles, labels, loc="outside right upper", fontsize="small", frameon=False)
    else:
        figure.suptitle("No run has a metrics.jsonl with any epoch yet.")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()
