"""The compared runs as PNG figures: their learning curves, and for a search the score against each searched
parameter (Bergstra and Bengio, "Random search for hyper-parameter optimization", 2012: a few parameters
matter, and random trials cover each of them densely).

Both stay readable at 50 runs: seeds are drawn as a band around their mean, curves are coloured by the first
setting that differs and styled by the second, the legend sits below the axes with values to 3 significant
digits, and epochs are whole numbers on the x axis.
"""

from __future__ import annotations

import io
import math
import statistics
from dataclasses import dataclass

from runner.files import natural_key
from runner.report.runs import RunRecord, number
from runner.report.statistics import sample_std
from runner.report.table import Row

LINE_STYLES = ["-", "--", ":", "-."]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
# Beyond this many labelled curves a legend is a wall of text; the table lists the rows instead.
MAX_LABELLED = 40
WIDTH_IN = 12.0
LEGEND_CHARACTERS_PER_LINE = 150  # what fits across the figure at the legend's font size
STATUS_ALPHA = 0.45  # a run that did not complete, drawn fainter
SHORT_RUN = 6  # epochs up to which every point is marked
DPI = 100


def value_label(text: str) -> str:
    """A setting's value for a legend: numbers to 3 significant digits (0.0643, not 0.06431172050131989), whole
    numbers whole (a batch of 2048, not 2.05e+03)."""
    try:
        value = float(text)
    except ValueError:
        return text
    if not math.isfinite(value) or text.strip().lower() in ("true", "false"):
        return text
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.3g}"


def ordered(values: list[str]) -> list[str]:
    """Distinct values in order: numerically when they are all numbers, else naturally."""
    distinct = list(dict.fromkeys(values))
    try:
        return sorted(distinct, key=float)
    except ValueError:
        return sorted(distinct, key=natural_key)


def palette(count: int) -> list:
    """Colours for ``count`` values: the categorical tab10 or tab20, else samples of a sequential map (which
    also reads as an order, as for a swept learning rate)."""
    from matplotlib import colormaps

    if count <= 10:
        return [colormaps["tab10"](index) for index in range(count)]
    if count <= 20:
        return [colormaps["tab20"](index) for index in range(count)]
    return [colormaps["viridis"](index / (count - 1) * 0.92) for index in range(count)]


@dataclass
class Style:
    color: object
    linestyle: str = "-"
    marker: str | None = None


@dataclass
class Legend:
    handles: list
    labels: list[str]
    colorbar: tuple | None = None  # (the setting, its values as numbers, log scale) for a continuous colouring
    title: str = ""  # what the figure says when it cannot label every curve


def curve_label(row: Row, columns: list[str]) -> str:
    shown = [f"{key}={value_label(row.settings[key])}" for key in columns if key in row.settings]
    label = ", ".join(shown) or row.label
    if len(row.members) > 1:
        label += f" (n={len(row.members)})"
    return label if row.status == "completed" else f"{label} ({row.status})"


def numeric_values(values: list[str]) -> list[float] | None:
    try:
        return [float(value) for value in values]
    except ValueError:
        return None


# More numeric values than this are coloured along a sequential map with a colour bar, not a legend entry each.
FEW_VALUES = 10


def value_colors(key: str, values: list[str]) -> tuple[dict[str, object], list, list[str], tuple | None]:
    """A colour for each value of the colouring setting, and the legend entries (or colour bar) that say it."""
    from matplotlib import colormaps
    from matplotlib.colors import LogNorm, Normalize
    from matplotlib.lines import Line2D

    numbers = numeric_values(values)
    if numbers is not None and len(values) > FEW_VALUES:
        # A swept learning rate: a sequential map along its values, on a log scale when they span decades.
        log = min(numbers) > 0 and max(numbers) / min(numbers) >= 100
        norm = (LogNorm if log else Normalize)(min(numbers), max(numbers))
        colors = {
            value: colormaps["viridis"](0.92 * norm(number)) for value, number in zip(values, numbers, strict=True)
        }
        return colors, [], [], (key, numbers, log)
    colors = dict(zip(values, palette(len(values)), strict=True))
    handles = [Line2D([], [], color=colors[value], linewidth=2) for value in values]
    return colors, handles, [f"{key}={value_label(value)}" for value in values], None


def curve_styles(rows: list[Row], columns: list[str]) -> tuple[list[Style], Legend]:
    """Colour by the first differing setting, line style (or marker, for more values) by the second; the
    legend then lists each colour and each style once, not every combination. With a third setting or more,
    or a second whose every value is a row's own (a random search), a colour per row, labelled with all."""
    from matplotlib.lines import Line2D

    first = ordered([row.settings[columns[0]] for row in rows]) if columns else []
    second = ordered([row.settings[columns[1]] for row in rows]) if len(columns) > 1 else []
    styled = len(columns) == 1 or (len(columns) == 2 and len(second) <= len(MARKERS) and len(second) < len(rows))
    many = len(rows) > MAX_LABELLED
    if styled or (many and len(columns) >= 2 and numeric_values(first) is not None):
        colors, handles, labels, colorbar = value_colors(columns[0], first)
        if not colorbar and len(handles) > MAX_LABELLED:
            handles, labels = [], []
        use_markers = len(second) > len(LINE_STYLES)
        kinds = dict(zip(second, MARKERS if use_markers else LINE_STYLES, strict=False)) if styled else {}
        styles = []
        for row in rows:
            kind = kinds.get(row.settings[columns[1]]) if kinds else None
            linestyle = kind if kind and not use_markers else "-"
            styles.append(Style(colors[row.settings[columns[0]]], linestyle, kind if use_markers else None))
        for value in second if kinds else []:
            if use_markers:
                handles.append(Line2D([], [], color="0.35", marker=kinds[value], linestyle="-"))
            else:
                handles.append(Line2D([], [], color="0.35", linestyle=kinds[value], linewidth=1.5))
            labels.append(f"{columns[1]}={value_label(value)}")
        title = "" if styled else f"colour: {columns[0]}; the table tells the {len(rows)} curves apart"
        return styles, Legend(handles, labels, colorbar, title)
    colors = palette(len(rows))
    styles = [Style(color) for color in colors]
    if many:
        title = f"{len(rows)} curves, one colour each in table order (dark: first): too many to label"
        return styles, Legend([], [], None, title)
    handles = [Line2D([], [], color=style.color, linewidth=2) for style in styles]
    return styles, Legend(handles, [curve_label(row, columns) for row in rows])


def mean_curves(members: list[RunRecord], keys: list[str]) -> dict[str, tuple[list[float], list[float], list[float]]]:
    """Per key and epoch, the mean and sample standard deviation over the members that reached that epoch: one
    pass over the histories for every key (a thousand runs of 30 epochs are 30,000 rows)."""
    by_epoch: dict[str, dict[float, list[float]]] = {key: {} for key in keys}
    for member in members:
        for position, entry in enumerate(member.history):
            epoch = entry.get("epoch")
            if type(epoch) is not int:
                epoch = number(epoch) or float(position + 1)
            for key in keys:
                value = entry.get(key)
                # number(), inlined for the plain float or int that nearly every row holds.
                if type(value) not in (float, int) or not math.isfinite(value):
                    value = number(value)
                    if value is None:
                        continue
                by_epoch[key].setdefault(float(epoch), []).append(float(value))
    curves = {}
    for key, values in by_epoch.items():
        epochs = sorted(values)
        means = [statistics.fmean(values[epoch]) for epoch in epochs]
        spreads = [sample_std(values[epoch]) if len(values[epoch]) > 1 else 0.0 for epoch in epochs]
        curves[key] = (epochs, means, spreads)
    return curves


def whole_epochs(axis, first: float, last: float) -> None:
    """Ticks on whole epochs only, and room around a run of one epoch (epoch 1, not 0.945, 0.960, ...)."""
    from matplotlib.ticker import MaxNLocator

    if last - first < 1:
        first, last = first - 0.5, last + 0.5
    axis.set_xlim(first, last)
    axis.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))


def legend_rows(labels: list[str]) -> tuple[int, int]:
    """Columns and lines of a legend below the axes, as many columns as its longest label allows."""
    if not labels:
        return 1, 0
    width = max(len(label) for label in labels) + 6  # the line sample and the gap
    columns = max(1, min(len(labels), LEGEND_CHARACTERS_PER_LINE // width))
    return columns, math.ceil(len(labels) / columns)


def png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


# Margins in inches, fixed rather than computed by matplotlib's constrained layout, which measures every tick
# label of every panel and was a quarter of the time of drawing a thousand runs.
LEFT_IN, RIGHT_IN = 0.75, 0.25
TITLE_IN = 0.45  # an axes title
SUPTITLE_IN = 0.3
XLABEL_IN = 0.6  # tick labels and the x label below an axes
LEGEND_LINE_IN = 0.24
COLORBAR_IN = 1.1  # a colour bar, its tick labels and its label, right of the panels


def set_margins(
    figure, top_in: float, bottom_in: float, between_in: float = 0.7, below_in: float = 0.0, right_in: float = RIGHT_IN
) -> None:
    """Place the panels with fixed margins, in inches: ``between_in`` across columns, ``below_in`` under
    each row (for a row's x labels)."""
    width, height = figure.get_size_inches()
    rows, columns = figure.axes[0].get_subplotspec().get_gridspec().get_geometry()
    panel_width = (width - LEFT_IN - right_in - between_in * (columns - 1)) / columns
    panel_height = (height - top_in - bottom_in - below_in * (rows - 1)) / rows
    figure.subplots_adjust(
        left=LEFT_IN / width,
        right=1 - right_in / width,
        top=1 - top_in / height,
        bottom=bottom_in / height,
        wspace=between_in / panel_width,
        hspace=below_in / panel_height,
    )


@dataclass(frozen=True)
class Curve:
    key: str  # the metrics.jsonl field
    title: str
    label: str
    scale: float  # 100 for an accuracy in percent
    bounded: bool = False  # a fraction in [0, 1] (an accuracy), whose ± std band is cut there


def curve_panels(accuracy: str) -> list[Curve]:
    names = {"val_acc": "Validation accuracy", "test_acc": "Test accuracy", "train_acc": "Training accuracy"}
    name = names.get(accuracy, accuracy.replace("_", " ").capitalize())
    return [
        Curve(accuracy, name, f"{name.lower()} (%)", 100.0, bounded=accuracy.endswith("_acc")),
        Curve("train_loss", "Train loss", "train loss", 1.0),
    ]


def add_colorbar(figure, axes, colorbar: tuple) -> None:
    """The scale of a continuous colouring, beside the axes (not over them)."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LinearSegmentedColormap, LogNorm, Normalize

    key, numbers, log = colorbar
    norm = (LogNorm if log else Normalize)(min(numbers), max(numbers))
    # The same 92% of viridis the curves use, so that the lightest yellow (invisible on white) is never drawn.
    colormap = LinearSegmentedColormap.from_list(
        "curves", [colormaps["viridis"](0.92 * step / 63) for step in range(64)]
    )
    figure.colorbar(ScalarMappable(norm, colormap), ax=list(axes), location="right", label=key, pad=0.01, fraction=0.03)


def draw_curves(axis, curves: list[tuple[list, Style]]) -> None:
    """The mean curves of one panel: as one collection when none has markers (a hundred curves of 30 epochs
    draw several times faster than as a hundred lines), else line by line."""
    from matplotlib.collections import LineCollection

    if not curves:
        return
    if any(style.marker for _, style in curves):
        for points, style in curves:
            epochs, values = zip(*points, strict=True)
            axis.plot(
                epochs,
                values,
                color=style.color,
                linestyle=style.linestyle,
                marker=style.marker,
                markersize=(6 if len(points) == 1 else 3) if style.marker == "o" else 4.5,
                markevery=max(1, len(points) // 10),
                linewidth=1.6,
            )
        return
    collection = LineCollection(
        [points for points, _ in curves],
        colors=[style.color for _, style in curves],
        linestyles=[style.linestyle for _, style in curves],
        linewidths=1.6,
    )
    axis.add_collection(collection, autolim=True)
    axis.autoscale_view()


def curve_figure(rows: list[Row], columns: list[str], accuracy: str = "test_acc"):
    """The ``accuracy`` curve (the metric a search optimised, else test accuracy) and the train loss against
    epoch, one line per row: its mean, and a ± std band over seeds. Returns the matplotlib Figure."""
    from matplotlib.collections import PolyCollection
    from matplotlib.colors import to_rgba
    from matplotlib.figure import Figure  # the object interface: no pyplot state, no display backend needed

    columns = [key for key in columns if key != "seed"]
    styles, legend = curve_styles(rows, columns)
    legend_columns, lines = legend_rows(legend.labels)
    figure = Figure(figsize=(WIDTH_IN, 4.4 + LEGEND_LINE_IN * lines))
    axes = figure.subplots(1, 2)
    panels = curve_panels(accuracy)
    epochs_seen: list[float] = []
    # Points marked on short runs only: one epoch is a point, invisible as a line; 30 are a line.
    short = max((len(member.history) for row in rows for member in row.members), default=0) <= SHORT_RUN
    # The ± std bands of each panel as one collection: a fill_between per curve costs ten times more to build.
    bands: dict[str, list] = {panel.key: [] for panel in panels}
    curves: dict[str, list[tuple[list, Style]]] = {panel.key: [] for panel in panels}
    axis_of = {panel.key: axis for panel, axis in zip(panels, axes, strict=True)}
    # Runs of one epoch are points: side by side around epoch 1, so that their error bars do not hide each other.
    single = all(len(member.history) <= 1 for row in rows for member in row.members)
    spacing = 0.6 / max(1, len(rows)) if single else 0.0
    for index, (row, style) in enumerate(zip(rows, styles, strict=True)):
        alpha = 1.0 if row.status == "completed" else STATUS_ALPHA
        row_curves = mean_curves(row.members, [panel.key for panel in panels])
        for panel in panels:
            epochs, means, spreads = row_curves[panel.key]
            if not epochs:
                continue
            if single:
                epochs = [epoch + (index - (len(rows) - 1) / 2) * spacing for epoch in epochs]
            epochs_seen += [epochs[0], epochs[-1]]
            marker = style.marker or ("o" if short or len(epochs) == 1 else None)
            points = list(zip(epochs, [panel.scale * value for value in means], strict=True))
            curves[panel.key].append((points, Style(to_rgba(style.color, alpha), style.linestyle, marker)))
            if len(epochs) == 1 and spreads[0]:
                # A band around one point has no width: the spread of a one-epoch run is an error bar.
                axis_of[panel.key].errorbar(
                    epochs,
                    [panel.scale * means[0]],
                    yerr=[panel.scale * spreads[0]],
                    fmt="none",
                    ecolor=to_rgba(style.color, 0.6 * alpha),
                    capsize=4,
                    linewidth=1.2,
                )
            elif any(spreads):
                # An accuracy's band stops at 0% and 100%, which no run passes.
                floor, ceiling = (0.0, 1.0) if panel.bounded else (-math.inf, math.inf)
                pairs = list(zip(means, spreads, strict=True))
                low = [panel.scale * max(floor, mean - spread) for mean, spread in pairs]
                high = [panel.scale * min(ceiling, mean + spread) for mean, spread in pairs]
                outline = list(zip(epochs, high, strict=True)) + list(zip(reversed(epochs), reversed(low), strict=True))
                bands[panel.key].append((outline, to_rgba(style.color, 0.15 * alpha)))
    for axis, panel in zip(axes, panels, strict=True):
        if bands[panel.key]:
            outlines, colors = zip(*bands[panel.key], strict=True)
            axis.add_collection(PolyCollection(outlines, facecolors=colors, linewidths=0), autolim=True)
        draw_curves(axis, curves[panel.key])
    counts = {len(row.members) for row in rows} or {1}
    seeds = f"{max(counts)}" if len(counts) == 1 else f"up to {max(counts)}"
    for axis, panel in zip(axes, panels, strict=True):
        # Said in the title rather than on the axes, where it would cover curves.
        spread = "bar" if single else "band"
        title = panel.title + (f" (mean of {seeds} seeds, {spread} ± 1 std)" if max(counts) > 1 else "")
        axis.set(xlabel="epoch", ylabel=panel.label, title=title)
        axis.grid(alpha=0.3)
        if epochs_seen:
            whole_epochs(axis, min(epochs_seen), max(epochs_seen))
    suptitle = legend.title or not epochs_seen
    set_margins(
        figure,
        TITLE_IN + (SUPTITLE_IN if suptitle else 0.0),
        XLABEL_IN + LEGEND_LINE_IN * lines + 0.1,
        right_in=COLORBAR_IN if legend.colorbar else RIGHT_IN,
    )
    if not epochs_seen:
        figure.suptitle("No run has a metrics.jsonl with any epoch yet.")
        return figure
    if legend.colorbar:
        add_colorbar(figure, axes, legend.colorbar)
    if legend.labels:
        figure.legend(
            legend.handles,
            legend.labels,
            loc="lower center",
            bbox_to_anchor=(0.5, 0.02),
            ncols=legend_columns,
            fontsize="small",
            frameon=False,
        )
    if legend.title:
        figure.suptitle(legend.title, fontsize=10)
    return figure


def figure_png(rows: list[Row], columns: list[str], accuracy: str = "test_acc") -> bytes:
    return png(curve_figure(rows, columns, accuracy))


# The search: score against each searched parameter.


@dataclass(frozen=True)
class SearchParameter:
    key: str
    log: bool  # sampled log-uniformly (tag(log, ...)): drawn on a log axis


def search_png(
    records: list[RunRecord], parameters: list[SearchParameter], metric: str, label: str, scale: float
) -> bytes:
    return png(search_figure(records, parameters, metric, label, scale))


def search_figure(records: list[RunRecord], parameters: list[SearchParameter], metric: str, label: str, scale: float):
    """One panel per searched parameter: each run's ``metric`` against the value it drew, the best run
    starred; numeric parameters on a (log, for log-sampled ones) axis, choices side by side."""
    from matplotlib.figure import Figure

    scored = [record for record in records if record.metrics.get(metric) is not None and record.settings]
    columns = min(3, len(parameters))
    lines = math.ceil(len(parameters) / columns)
    figure = Figure(figsize=(4.3 * columns, 3.7 * lines))
    axes = figure.subplots(lines, columns, squeeze=False).flatten()
    # Room for a choice's rotated labels under every row.
    set_margins(figure, TITLE_IN + SUPTITLE_IN, XLABEL_IN + 0.25, between_in=0.75, below_in=XLABEL_IN + 0.65)
    best = max(scored, key=lambda record: record.metrics[metric], default=None)
    for axis, parameter in zip(axes, parameters, strict=False):
        present = [record for record in scored if parameter.key in (record.settings or {})]
        texts = [record.settings[parameter.key] for record in present]
        scores = [scale * record.metrics[metric] for record in present]
        values = numeric_values(texts)
        if values is None:  # a choice: one column of points per option
            options = ordered(texts)
            positions = [options.index(text) for text in texts]
            axis.set_xticks(range(len(options)), [value_label(option) for option in options], rotation=30)
            axis.set_xlim(-0.5, len(options) - 0.5)
            values = [float(position) for position in positions]
        elif parameter.log and all(value > 0 for value in values):
            axis.set_xscale("log")
        axis.scatter(values, scores, s=22, color="tab:blue", alpha=0.75, linewidth=0)
        # By identity: a record's equality compares every field, and a thousand runs make that the slow part.
        index = next((position for position, record in enumerate(present) if record is best), None)
        if index is not None:
            axis.scatter([values[index]], [scores[index]], s=120, marker="*", color="tab:red", zorder=3)
            # The label on the side with room: right of a best run in the axis's left half, else left of it.
            spread = [math.log(value) for value in values] if axis.get_xscale() == "log" else values
            low, high = min(spread), max(spread)
            left = high > low and (spread[index] - low) / (high - low) > 0.5
            axis.annotate(
                f"best {scores[index]:.3g}",
                (values[index], scores[index]),
                xytext=(-6 if left else 6, -4),
                textcoords="offset points",
                fontsize="small",
                color="tab:red",
                ha="right" if left else "left",
                va="top",
            )
        axis.set(xlabel=parameter.key + (" (log scale)" if axis.get_xscale() == "log" else ""), ylabel=label)
        axis.set_title(f"{label} against {parameter.key}", fontsize=10)
        axis.grid(alpha=0.3)
    for axis in axes[len(parameters) :]:
        axis.set_visible(False)
    figure.suptitle(f"Search: {len(scored)} runs scored on {metric}", fontsize=11)
    return figure
