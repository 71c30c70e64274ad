"""Data sources (official CIFAR-10, an image tree or archive, a synthetic set), all ending as uint8 tensors.

Every source returns the same thing, ``Arrays``: whole splits as uint8 arrays of shape (N, 3, H, W) and
int64 labels. ``load`` then carves out the validation split and the subset, so each source stays a plain
reader. Batching happens later, on the training device, by slicing these tensors. The next run in the same
process (a sweep's next job) gets the same source's arrays without reading them again (``remembered``).
"""

from __future__ import annotations

import hashlib
import io
import logging
import lzma
import os
import pickle
import sys
import tarfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from tqdm import tqdm

from runner import project_path
from runner.errors import DataError
from runner.files import atomic_write_bytes

log = logging.getLogger("runner")

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
CACHE_VERSION = 1


@dataclass
class Arrays:
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: list[str]


@dataclass
class Splits:
    """The splits as tensors on one device, ready to be sliced into batches."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: list[str]
    val_images: torch.Tensor | None = None
    val_labels: torch.Tensor | None = None
    name: str = field(default="")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to(self, device: torch.device | str) -> Splits:
        moved = {
            key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in self.__dict__.items()
        }
        return Splits(**moved)


def load(config: DictConfig) -> Splits:
    """Read the configured source, then hold out the validation split and take the training and test subsets."""
    source = SOURCES.get(config.source)
    if source is None:
        raise DataError(f"data.source={config.source!r} is not one of {sorted(SOURCES)}.")
    started = time.perf_counter()
    arrays = select_classes(source(config), config.get("classes"))
    train_images, train_labels = arrays.train_images, arrays.train_labels
    test_images, test_labels = arrays.test_images, arrays.test_labels
    available = len(train_labels)

    val_size = int(config.get("val_size") or 0)
    if not 0 <= val_size < available:
        raise DataError(f"data.val_size={val_size} must be at least 0 and below the {available} training images.")
    val_images = val_labels = None
    if val_size:
        # The last images are held out, so data.subset still means "the first N training images".
        val_images, val_labels = train_images[-val_size:], train_labels[-val_size:]
        train_images, train_labels = train_images[:-val_size], train_labels[:-val_size]

    subset = config.get("subset")
    if subset is not None:
        if not 1 <= int(subset) <= len(train_labels):
            raise DataError(
                f"data.subset={subset} must be between 1 and the {len(train_labels)} training images"
                + (f" left after data.val_size={val_size}." if val_size else ".")
            )
        train_images, train_labels = train_images[: int(subset)], train_labels[: int(subset)]

    test_subset = config.get("test_subset")
    if test_subset is not None:
        if not 1 <= int(test_subset) <= len(test_labels):
            raise DataError(f"data.test_subset={test_subset} must be between 1 and the {len(test_labels)} test images.")
        # The first N, as data.subset: class-balanced in the official order and in image trees.
        test_images, test_labels = test_images[: int(test_subset)], test_labels[: int(test_subset)]
    log.info(
        "Data: %s, %d training, %d validation and %d test images of %s (%.1f s).",
        config.get("name", config.source),
        len(train_labels),
        val_size,
        len(test_labels),
        "x".join(map(str, train_images.shape[1:])),
        time.perf_counter() - started,
    )

    def tensor(array: np.ndarray | None) -> torch.Tensor | None:
        # A copy of its own: the source's arrays are read-only and kept for the next run in this process.
        return None if array is None else torch.from_numpy(np.array(array, order="C"))

    return Splits(
        train_images=tensor(train_images),
        train_labels=tensor(train_labels).long(),
        test_images=tensor(test_images),
        test_labels=tensor(test_labels).long(),
        classes=list(arrays.classes),
        val_images=tensor(val_images),
        val_labels=None if val_labels is None else tensor(val_labels).long(),
        name=str(config.get("name", config.source)),
    )


# The last data set a source read, under everything that determines its arrays (the source's settings, its
# files' sizes and times), so that the jobs of a sweep in one process (Hydra's basic launcher) read or generate
# it once. Its arrays are made read-only and every run takes copies of them (load), so no run can change what
# a later one reads; one entry only, so a sweep over data sets holds no more than the one in use.
_remembered: dict[tuple, Arrays] = {}


def remembered(key: tuple, read: Callable[[], Arrays]) -> Arrays:
    """``read()``'s arrays, read only when ``key`` differs from the last data set's."""
    if key not in _remembered:
        arrays = read()
        for array in (arrays.train_images, arrays.train_labels, arrays.test_images, arrays.test_labels):
            array.setflags(write=False)
        _remembered.clear()
        _remembered[key] = arrays
    return _remembered[key]


def forget_remembered() -> None:
    """Read the next data set from its source again, as a new process would (tests of the sources' own caches)."""
    _remembered.clear()


def file_stamps(paths: list[Path]) -> tuple:
    """(path, size, modification time, inode) of each file, None for a missing one: what says that a file was
    rewritten or replaced."""
    stamps = []
    for path in paths:
        try:
            stat = path.stat()
            stamps.append((str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino))
        except FileNotFoundError:
            stamps.append(None)
    return tuple(stamps)


def select_classes(arrays: Arrays, wanted) -> Arrays:
    """Keep only the classes in ``wanted`` (names or indices into the source's classes), relabelled 0..k-1 in
    the order given, so one data set yields the disjoint tasks a transfer-learning demo needs."""
    if wanted is None:
        return arrays
    if isinstance(wanted, (str, int)):
        raise DataError(f"data.classes={wanted!r} must be a list, such as data.classes=[cat,dog] or [3,5].")
    wanted = list(wanted)
    listing = ", ".join(f"{index}={name}" for index, name in enumerate(arrays.classes))
    indices = []
    for entry in wanted:
        if isinstance(entry, int) and not isinstance(entry, bool) and 0 <= entry < len(arrays.classes):
            indices.append(entry)
        elif isinstance(entry, str) and entry in arrays.classes:
            indices.append(arrays.classes.index(entry))
        else:
            raise DataError(
                f"data.classes: {entry!r} is neither a class name nor an index of this data set ({listing})."
            )
    if not indices or len(set(indices)) != len(indices):
        raise DataError(f"data.classes={wanted} must name at least one class, each once ({listing}).")
    # A lookup table from old label to new label (-1: dropped) relabels a whole split at once.
    relabel = np.full(len(arrays.classes), -1, dtype=np.int64)
    relabel[indices] = np.arange(len(indices))

    def keep(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        new_labels = relabel[labels]
        kept = new_labels >= 0
        return images[kept], new_labels[kept]

    train = keep(arrays.train_images, arrays.train_labels)
    test = keep(arrays.test_images, arrays.test_labels)
    return Arrays(*train, *test, [arrays.classes[index] for index in indices])


# --- Official CIFAR-10 (python format) -------------------------------------------------------------

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN_FILES = [f"data_batch_{index}" for index in range(1, 6)]
CIFAR10_TEST_FILES = ["test_batch"]
CIFAR10_CLASSES = 10  # what labels may be when no batches.meta names the classes


class _BatchUnpickler(pickle.Unpickler):
    """The official batches are pickles; only the NumPy pieces they contain may be rebuilt from them."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR-10 batch file")


def _batch_error(path: Path, problem: str) -> DataError:
    return DataError(
        f"{path} is not a readable CIFAR-10 batch ({problem}). Delete the folder {path.parent} "
        "so that it is downloaded again, or put the official python-format files there."
    )


def _read_batch(path: Path) -> dict:
    try:
        with open(path, "rb") as handle:
            raw = _BatchUnpickler(handle, encoding="latin1").load()
    except Exception as error:  # noqa: BLE001 - a damaged pickle raises many kinds; each means "not a batch"
        raise _batch_error(path, str(error) or type(error).__name__) from None
    if not isinstance(raw, dict):
        raise _batch_error(path, f"it holds a {type(raw).__name__}, not a dict of entries")
    return {key.decode() if isinstance(key, bytes) else key: value for key, value in raw.items()}


def _as_array(value) -> np.ndarray | None:
    """``value`` as a NumPy array, or None for what NumPy cannot make one of (ragged lists, huge integers)."""
    try:
        return np.asarray(value)
    except (ValueError, TypeError, OverflowError):
        return None


def _read_class_names(path: Path) -> list[str]:
    names = _read_batch(path).get("label_names")
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(name, (str, bytes)) for name in names):
        raise _batch_error(path, "it has no 'label_names' list of class names")
    return [name.decode(errors="replace") if isinstance(name, bytes) else name for name in names]


def _read_images_and_labels(path: Path, classes: int, classes_from: str) -> tuple[np.ndarray, np.ndarray]:
    """One batch's images, (N, 3072) uint8, and labels, (N,) int64, each checked right after reading, so a
    damaged file is named here rather than failing later in training."""
    batch = _read_batch(path)
    missing = [key for key in ("data", "labels") if key not in batch]
    if missing:
        raise _batch_error(path, "it has no " + " and no ".join(f"{key!r} entry" for key in missing))
    images, labels = _as_array(batch["data"]), _as_array(batch["labels"])
    if images is None or images.dtype.kind not in "ui":
        found = "values NumPy cannot read" if images is None else f"{images.dtype} values"
        raise _batch_error(path, f"its 'data' holds {found}, not pixel values 0..255")
    if images.ndim != 2 or images.shape[1] != 3 * 32 * 32 or len(images) == 0:
        raise _batch_error(
            path, f"its 'data' has shape {images.shape}, not (images, 3072): one row of 32x32 red, green, blue values"
        )
    if images.min() < 0 or images.max() > 255:
        raise _batch_error(path, f"its 'data' holds values from {images.min()} to {images.max()}, not 0..255")
    if labels is None or labels.dtype.kind not in "ui" or labels.ndim != 1:
        found = "values NumPy cannot read" if labels is None else f"{labels.dtype} values of shape {labels.shape}"
        raise _batch_error(path, f"its 'labels' holds {found}, not a list of class indices")
    if len(labels) != len(images):
        raise _batch_error(path, f"it has {len(labels)} labels for {len(images)} images")
    if labels.min() < 0 or labels.max() >= classes:
        raise _batch_error(
            path,
            f"its labels run from {labels.min()} to {labels.max()}, but the {classes} classes {classes_from} "
            f"are 0..{classes - 1}",
        )
    return images.astype(np.uint8), labels.astype(np.int64)


def _download_cifar10(root: Path) -> None:
    import torchvision

    class Mirrored(torchvision.datasets.CIFAR10):
        # A mirror of the same archive (RUNNER_CIFAR10_URL) for machines that cannot reach the official host.
        url = os.environ.get("RUNNER_CIFAR10_URL") or torchvision.datasets.CIFAR10.url

    try:
        # torchvision fetches the official archive and checks its MD5 before extracting it.
        Mirrored(root=str(root), train=True, download=True)
    except Exception as error:  # noqa: BLE001 - any failure here means "no data", told plainly below
        raise DataError(
            f"CIFAR-10 is not in {root / CIFAR10_FOLDER} and could not be downloaded ({type(error).__name__}: "
            f"{error}). Either download the official python-format archive (cifar-10-python.tar.gz, from "
            f"https://www.cs.toronto.edu/~kriz/cifar.html) and extract it so that {root / CIFAR10_FOLDER} "
            "holds data_batch_1 ... data_batch_5, test_batch and batches.meta, or point data.root at another "
            "folder that holds them, or train on an image tree with data=folder data.root=PATH "
            "(train/<class>/*.png|jpg and test/<class>/*, as a folder or a .tar/.tar.gz archive)."
        ) from None


def load_cifar10(config: DictConfig) -> Arrays:
    root = Path(config.root)
    folder = root / CIFAR10_FOLDER
    names = CIFAR10_TRAIN_FILES + CIFAR10_TEST_FILES
    if not all((folder / name).exists() for name in names):
        _download_cifar10(root)
    stamps = file_stamps([folder.resolve() / name for name in [*names, "batches.meta"]])
    return remembered(("cifar10", *stamps), lambda: _read_cifar10(folder))


def _read_cifar10(folder: Path) -> Arrays:
    # The class names come first: they say which labels the batches may hold.
    meta_path = folder / "batches.meta"
    names = _read_class_names(meta_path) if meta_path.exists() else None
    classes, classes_from = (
        (len(names), "named in batches.meta") if names is not None else (CIFAR10_CLASSES, "of CIFAR-10")
    )

    def read(files: list[str]) -> tuple[np.ndarray, np.ndarray]:
        batches = [_read_images_and_labels(folder / name, classes, classes_from) for name in files]
        images = np.concatenate([images for images, _ in batches])
        labels = np.concatenate([labels for _, labels in batches])
        return images.reshape(-1, 3, 32, 32), labels

    train_images, train_labels = read(CIFAR10_TRAIN_FILES)
    test_images, test_labels = read(CIFAR10_TEST_FILES)
    if names is None:
        names = [str(index) for index in range(int(max(train_labels.max(), test_labels.max())) + 1)]
    return Arrays(train_images, train_labels, test_images, test_labels, names)


# --- An image tree: train/<class>/* and test/<class>/*, as a folder or a tar archive -----------------


# What reading a truncated or corrupted archive raises: tarfile's own errors, and those of the decompressors
# under it (gzip's EOFError and OSError, zlib's, lzma's).
ARCHIVE_ERRORS = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError)


def _damaged_archive(root: Path, error: Exception) -> DataError:
    return DataError(
        f"data.root={root} is a damaged or truncated archive ({str(error) or type(error).__name__}). Download or "
        "pack it again (tar -czf NAME.tar.gz train test), or extract it and point data.root at the folder."
    )


def _unreadable(path: Path, root: Path, error: OSError) -> DataError:
    # A symbolic link loop (ELOOP) or a file or folder without read permission (EACCES).
    return DataError(
        f"{path} cannot be read ({error.strerror or error}). Fix its permissions or the symbolic link, "
        f"or remove it from {root}."
    )


def _folder_entries(folder: Path, root: Path) -> list[Path]:
    """What ``folder`` holds, sorted; nothing when it is missing or not a folder (a stray file beside the
    class folders), a ``DataError`` when it cannot be listed, rather than a class silently left out."""
    try:
        return sorted(folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as error:
        raise _unreadable(folder, root, error) from None


def _read_image_file(path: Path, root: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise _unreadable(path, root, error) from None


def _tree_entries(root: Path) -> Iterator[tuple[str, str, str, bytes]]:
    """Yield (split, class, file name, encoded bytes) for every image under train/ and test/."""

    def parse(relative: str) -> tuple[str, str, str] | None:
        parts = Path(relative).parts
        for index, part in enumerate(parts[:-2]):
            if part in ("train", "test") and len(parts) - index == 3:
                if Path(parts[-1]).suffix.lower() in IMAGE_SUFFIXES and not parts[-1].startswith("."):
                    return part, parts[index + 1], parts[-1]
        return None

    if root.is_dir():
        for split in ("train", "test"):
            for class_folder in _folder_entries(root / split, root):
                for path in _folder_entries(class_folder, root):
                    parsed = parse(str(path.relative_to(root)))
                    if parsed:
                        yield (*parsed, _read_image_file(path, root))
        return
    try:
        with tarfile.open(root, "r:*") as archive:
            for member in archive:
                if member.isfile():
                    parsed = parse(member.name)
                    if parsed:
                        yield (*parsed, archive.extractfile(member).read())
    except ARCHIVE_ERRORS as error:
        raise _damaged_archive(root, error) from None


def _decode(data: bytes, name: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB")).transpose(2, 0, 1)
    except Exception as error:  # noqa: BLE001 - PIL raises many kinds for a bad file
        raise DataError(f"{name} is not a readable PNG or JPEG image ({error}).") from None


def _natural_key(name: str) -> tuple:
    stem = Path(name).stem
    return (0, int(stem), name) if stem.isdigit() else (1, 0, name)


def _interleave(per_class: dict[str, list[tuple[str, np.ndarray]]], classes: list[str]):
    """Order images round-robin over classes, so "the first N images" is balanced as in the official order."""
    columns = [sorted(per_class.get(name, []), key=lambda item: _natural_key(item[0])) for name in classes]
    images, labels = [], []
    for rank in range(max((len(column) for column in columns), default=0)):
        for label, column in enumerate(columns):
            if rank < len(column):
                images.append(column[rank][1])
                labels.append(label)
    return images, labels


def _decode_tree(root: Path) -> Arrays:
    found: dict[str, dict[str, list[tuple[str, np.ndarray]]]] = {"train": {}, "test": {}}
    shape = None
    log.info("Decoding the images of %s (once: they are cached as arrays for the next runs).", root)
    # The count is unknown until an archive has been read through, so the bar counts images and their rate.
    entries = tqdm(_tree_entries(root), desc="decoding", unit=" images", disable=not sys.stderr.isatty())
    for split, class_name, name, data in entries:
        image = _decode(data, f"{root}:{split}/{class_name}/{name}")
        if shape is None:
            shape = image.shape
        elif image.shape != shape:
            raise DataError(
                f"{root}:{split}/{class_name}/{name} is {image.shape[2]}x{image.shape[1]} but the first "
                f"image was {shape[2]}x{shape[1]}; every image of a data=folder set must have the same size."
            )
        found[split].setdefault(class_name, []).append((name, image))
    if not found["train"] or not found["test"]:
        raise DataError(
            f"{root} holds no images under train/<class>/ and test/<class>/ (PNG or JPEG). data=folder "
            "expects that layout, as a folder or a .tar/.tar.gz archive."
        )
    classes = sorted(found["train"])
    unknown = sorted(set(found["test"]) - set(classes))
    if unknown:
        raise DataError(f"{root}: test classes {unknown} have no training images.")
    splits = {}
    for split in ("train", "test"):
        images, labels = _interleave(found[split], classes)
        splits[split] = (np.stack(images), np.asarray(labels, dtype=np.int64))
    return Arrays(*splits["train"], *splits["test"], classes)


def _source_key(root: Path) -> str:
    """A fingerprint of the source: the cache is reused only while this stays the same."""
    digest = hashlib.sha256(f"{CACHE_VERSION}:{root.resolve()}".encode())
    paths = sorted(root.rglob("*")) if root.is_dir() else [root]
    for path in paths:
        # A folder's own cache lives inside it (_cache_paths): it is not part of the source.
        if path.is_file() and not path.name.startswith("."):
            stat = path.stat()
            digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def _cache_paths(root: Path) -> list[Path]:
    name = root.name if root.is_file() else "images"
    beside = (root.parent if root.is_file() else root) / f".{name}.runner-cache.npz"
    under_project = Path(project_path("data", "cache")) / (
        hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16] + f"-{root.name}.npz"
    )
    return [beside, under_project]


def _read_cache(path: Path, key: str) -> Arrays | None:
    try:
        with np.load(path, allow_pickle=False) as stored:
            if str(stored["source_key"]) != key:
                return None
            return Arrays(
                stored["train_images"],
                stored["train_labels"],
                stored["test_images"],
                stored["test_labels"],
                [str(name) for name in stored["classes"]],
            )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        # A cache is a convenience: a damaged one is rebuilt, never trusted.
        print(f"Ignoring the damaged cache {path} ({error}); decoding the images again.")
        return None


def _write_cache(arrays: Arrays, key: str, candidates: list[Path]) -> None:
    """Into the first candidate folder that can be written (the data's own may be read-only)."""

    def write(handle) -> None:
        np.savez(
            handle,
            source_key=np.array(key),
            train_images=arrays.train_images,
            train_labels=arrays.train_labels,
            test_images=arrays.test_images,
            test_labels=arrays.test_labels,
            classes=np.array(arrays.classes),
        )

    for path in candidates:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, write)
            return
        except OSError:
            continue


def load_folder(config: DictConfig) -> Arrays:
    if not config.get("root"):
        raise DataError("data=folder needs data.root=PATH: a folder or .tar/.tar.gz with train/ and test/.")
    root = Path(str(config.root)).expanduser()
    try:
        root.stat()
    except FileNotFoundError:
        raise DataError(
            f"data.root={root} does not exist. data=folder expects a folder or a .tar/.tar.gz archive "
            "holding train/<class>/* and test/<class>/* images."
        ) from None
    except OSError as error:
        # A symbolic link loop or a folder above it that may not be entered: Path.exists() would only say False.
        raise DataError(
            f"data.root={root} cannot be opened ({error.strerror or error}). Point data.root at the folder or "
            "archive itself, or fix the symbolic link or the permissions on the way to it."
        ) from None
    if root.is_file():
        try:
            is_archive = tarfile.is_tarfile(root)
        except ARCHIVE_ERRORS as error:
            raise _damaged_archive(root, error) from None
        if not is_archive:
            raise DataError(f"data.root={root} is a file but not a .tar or .tar.gz archive.")
    key = _source_key(root)
    return remembered(("folder", key), lambda: _cached_or_decoded(root, key))


def _cached_or_decoded(root: Path, key: str) -> Arrays:
    candidates = _cache_paths(root)
    for path in candidates:
        cached = _read_cache(path, key)
        if cached is not None:
            return cached
    arrays = _decode_tree(root)
    _write_cache(arrays, key, candidates)
    return arrays


# --- A synthetic set that any model can learn quickly ---------------------------------------------


def make_synthetic(config: DictConfig) -> Arrays:
    """Each class is a fixed colour and coarse pattern; images are that plus pixel noise and a brightness shift.

    The generator's seed is the data set's own (data.generator_seed), not the run's, so runs with
    different seeds see the same data.
    """
    # Every setting the images depend on, read here once: the arrays are remembered under exactly these.
    settings = (
        int(config.get("generator_seed", 0)),
        int(config.num_classes),
        int(config.image_size),
        float(config.noise),
        int(config.train_size),
        int(config.test_size),
    )
    return remembered(("synthetic", *settings), lambda: _generate_synthetic(*settings))


def _generate_synthetic(
    generator_seed: int, num_classes: int, size: int, noise: float, train_size: int, test_size: int
) -> Arrays:
    generator = np.random.default_rng(generator_seed)
    coarse = generator.uniform(-1, 1, size=(num_classes, 3, 4, 4))
    colours = generator.uniform(-1, 1, size=(num_classes, 3, 1, 1))
    # A coarse spatial pattern for models that see layout, a mean colour for those that pool it away.
    patterns = 128 + 40 * np.kron(coarse, np.ones((1, 1, size // 4, size // 4))) + 50 * colours

    def split(count: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.arange(count) % num_classes
        generator.shuffle(labels)
        pixel_noise = generator.normal(0, noise, size=(count, 3, size, size))
        shift = generator.normal(0, 20, size=(count, 1, 1, 1))
        images = np.clip(patterns[labels] + pixel_noise + shift, 0, 255).astype(np.uint8)
        return images, labels.astype(np.int64)

    train = split(train_size)
    test = split(test_size)
    return Arrays(*train, *test, [f"class_{index}" for index in range(num_classes)])


SOURCES = {"cifar10": load_cifar10, "folder": load_folder, "synthetic": make_synthetic}
