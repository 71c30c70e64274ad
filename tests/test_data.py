"""Data sources: the official CIFAR-10 format (files written here), image trees as folders and archives,
the synthetic set, and the subset and validation split."""

import errno
import gzip
import os
import pickle
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from runner import data
from tests.conftest import SMALL_MODEL, run_entrypoint, train_in_process


def write_official_cifar10(root: Path, per_batch: int = 20) -> dict:
    """Write the five training batches, the test batch and the meta file as the official archive has them."""
    folder = root / data.CIFAR10_FOLDER
    folder.mkdir(parents=True)
    generator = np.random.default_rng(0)
    written = {}
    for name in data.CIFAR10_TRAIN_FILES + data.CIFAR10_TEST_FILES:
        images = generator.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [int(label) for label in generator.integers(0, 10, size=per_batch)]
        with open(folder / name, "wb") as handle:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": images}, handle, protocol=2)
        written[name] = (images, labels)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({b"label_names": [name.encode() for name in names], b"num_vis": 3072}, handle)
    return written


def test_official_format_is_read_in_order(tmp_path):
    written = write_official_cifar10(tmp_path)
    splits = data.load(OmegaConf.create({"source": "cifar10", "root": str(tmp_path)}))
    assert splits.train_images.shape == (100, 3, 32, 32) and splits.train_images.dtype == torch.uint8
    assert splits.test_images.shape == (20, 3, 32, 32)
    first_images, first_labels = written["data_batch_1"]
    # Rows are 1024 red, then 1024 green, then 1024 blue values, row-major: the official layout.
    assert torch.equal(splits.train_images[0], torch.from_numpy(first_images[0].reshape(3, 32, 32)))
    assert splits.train_labels[:20].tolist() == first_labels
    assert splits.test_labels.tolist() == written["test_batch"][1]
    assert splits.classes[0] == "airplane" and splits.classes[-1] == "truck"


def test_official_format_refuses_foreign_objects_in_pickles(tmp_path):
    write_official_cifar10(tmp_path)
    with open(tmp_path / data.CIFAR10_FOLDER / "data_batch_3", "wb") as handle:
        pickle.dump({"data": np.zeros((1, 3072), np.uint8), "labels": [0], "payload": Path("/")}, handle)
    with pytest.raises(data.DataError, match="data_batch_3"):
        data.load(OmegaConf.create({"source": "cifar10", "root": str(tmp_path)}))


def test_offline_without_data_gives_one_clear_paragraph(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as cifar

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(cifar, "download_and_extract_archive", no_network)
    with pytest.raises(data.DataError) as raised:
        data.load(OmegaConf.create({"source": "cifar10", "root": str(tmp_path)}))
    message = str(raised.value)
    assert str(tmp_path / data.CIFAR10_FOLDER) in message
    assert "data=folder" in message and "cifar-10-python.tar.gz" in message and "\n" not in message


def write_image_tree(root: Path, suffix: str = ".png", per_class: int = 3) -> dict:
    """A tiny tree with three classes; returns the expected pixels per (split, class, index)."""
    generator = np.random.default_rng(1)
    pixels = {}
    for split, count in (("train", per_class), ("test", 2)):
        for class_name in ("cat", "ant", "bee"):
            folder = root / split / class_name
            folder.mkdir(parents=True)
            for index in range(count):
                image = generator.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
                Image.fromarray(image).save(folder / f"{index:04d}{suffix}")
                pixels[split, class_name, index] = image.transpose(2, 0, 1)
    return pixels


def folder_config(root: Path):
    return OmegaConf.create({"source": "folder", "root": str(root)})


def test_image_folder_is_decoded_with_sorted_classes_and_interleaved_order(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "project_path", lambda *parts: str(tmp_path.joinpath("project", *parts)))
    pixels = write_image_tree(tmp_path / "tree")
    splits = data.load(folder_config(tmp_path / "tree"))
    assert splits.classes == ["ant", "bee", "cat"]
    # Round-robin over classes: ant 0, bee 0, cat 0, ant 1, ...
    assert splits.train_labels.tolist() == [0, 1, 2] * 3
    assert torch.equal(splits.train_images[4], torch.from_numpy(pixels["train", "bee", 1]))
    assert splits.test_images.shape == (6, 3, 8, 8)


def test_archive_gives_the_same_arrays_and_is_cached(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "project_path", lambda *parts: str(tmp_path.joinpath("project", *parts)))
    write_image_tree(tmp_path / "tree", suffix=".jpg")
    archive = tmp_path / "images.tar.gz"
    with tarfile.open(archive, "w:gz") as handle:
        handle.add(tmp_path / "tree" / "train", arcname="images/train")
        handle.add(tmp_path / "tree" / "test", arcname="images/test")
    from_folder = data.load(folder_config(tmp_path / "tree"))
    from_archive = data.load(folder_config(archive))
    assert torch.equal(from_folder.train_images, from_archive.train_images)
    assert torch.equal(from_folder.test_labels, from_archive.test_labels)

    cache = tmp_path / ".images.tar.gz.runner-cache.npz"
    assert cache.exists()
    data.forget_remembered()  # as a new process: the arrays come from the cache file
    monkeypatch.setattr(data, "_decode_tree", lambda root: pytest.fail("the cache was not used"))
    assert torch.equal(data.load(folder_config(archive)).train_images, from_archive.train_images)


def test_a_damaged_cache_is_rebuilt_and_a_changed_source_invalidates_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(data, "project_path", lambda *parts: str(tmp_path.joinpath("project", *parts)))
    write_image_tree(tmp_path / "tree")
    reference = data.load(folder_config(tmp_path / "tree"))
    cache = tmp_path / "tree" / ".images.runner-cache.npz"
    cache.write_bytes(cache.read_bytes()[:100])
    data.forget_remembered()  # as a new process: the damaged cache file is read
    rebuilt = data.load(folder_config(tmp_path / "tree"))
    assert "damaged cache" in capsys.readouterr().out
    assert torch.equal(rebuilt.train_images, reference.train_images)

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "tree" / "train" / "ant" / "0000.png")
    changed = data.load(folder_config(tmp_path / "tree"))
    assert int(changed.train_images[0].sum()) == 0


def test_folder_errors_name_the_problem(tmp_path):
    with pytest.raises(data.DataError, match="does not exist"):
        data.load(folder_config(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(data.DataError, match="train/<class>"):
        data.load(folder_config(tmp_path / "empty"))
    write_image_tree(tmp_path / "tree")
    (tmp_path / "tree" / "train" / "ant" / "0009.png").write_bytes(b"not an image")
    with pytest.raises(data.DataError, match="0009.png"):
        data.load(folder_config(tmp_path / "tree"))


def synthetic_config(**overrides):
    base = {"source": "synthetic", "train_size": 300, "test_size": 100, "num_classes": 10, "image_size": 32}
    return OmegaConf.create({**base, "noise": 40, "generator_seed": 0, **overrides})


def test_synthetic_set_is_fixed_and_balanced():
    first, second = data.load(synthetic_config()), data.load(synthetic_config())
    assert torch.equal(first.train_images, second.train_images)
    assert first.train_images.shape == (300, 3, 32, 32) and first.num_classes == 10
    assert torch.bincount(first.train_labels).tolist() == [30] * 10


def test_synthetic_set_is_learnable_in_one_epoch(tmp_path):
    summary = train_in_process(SMALL_MODEL + ["data.train_size=1000", "data.test_size=500"], tmp_path)
    assert summary["test_acc"] > 0.5  # chance is 0.1


def test_a_data_set_is_read_once_per_process_and_every_run_gets_its_own_copy(monkeypatch):
    generated, generate = [], data._generate_synthetic
    monkeypatch.setattr(data, "_generate_synthetic", lambda *values: generated.append(values) or generate(*values))
    data.forget_remembered()
    first = data.load(synthetic_config())
    first.train_images.zero_()  # a run that writes into its images changes nothing another run reads
    second = data.load(synthetic_config(subset=50, val_size=100))  # the same images, split otherwise
    assert len(generated) == 1 and int(second.train_images.sum()) > 0
    kept = next(iter(data._remembered.values()))
    assert not kept.train_images.flags.writeable and not kept.test_labels.flags.writeable
    data.load(synthetic_config(noise=10))  # another setting of the source: another data set
    assert len(generated) == 2 and len(data._remembered) == 1


def test_subset_takes_the_first_images_and_validation_the_last():
    full = data.load(synthetic_config())
    split = data.load(synthetic_config(subset=50, val_size=100))
    assert torch.equal(split.train_images, full.train_images[:50])
    assert torch.equal(split.val_images, full.train_images[-100:])
    assert torch.equal(split.val_labels, full.train_labels[-100:])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"subset": 1000}, "data.subset=1000"), ({"val_size": 300}, "data.val_size=300"), ({"subset": 0}, "subset")],
)
def test_subset_and_validation_sizes_are_checked(overrides, message):
    with pytest.raises(data.DataError, match=message):
        data.load(synthetic_config(**overrides))


@pytest.mark.slow
def test_entrypoint_reports_missing_data_without_a_traceback(tmp_path, monkeypatch):
    # No network in tests: point the download at an address that fails at once.
    result = run_entrypoint(
        [f"data.root={tmp_path / 'nothing'}", "trainer.epochs=1"],
        tmp_path / "outputs",
        env_extra={"RUNNER_CIFAR10_URL": "file:///nonexistent/cifar-10-python.tar.gz"},
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "data=folder" in result.stderr


# --- Damaged files: each is a DataError naming the file and what to do, never a traceback ----------------


def write_batch(root: Path, name: str, content) -> Path:
    path = root / data.CIFAR10_FOLDER / name
    with open(path, "wb") as handle:
        # Protocol 3 rebuilds arrays as protocol 2 does, and pickles an empty one without builtins.bytes.
        pickle.dump(content, handle, protocol=3)
    return path


def cifar10_config(root: Path):
    return OmegaConf.create({"source": "cifar10", "root": str(root)})


def one_image(rows: int = 1) -> np.ndarray:
    return np.zeros((rows, 3072), np.uint8)


def test_a_replaced_batch_file_is_read_again(tmp_path):
    write_official_cifar10(tmp_path)
    assert len(data.load(cifar10_config(tmp_path)).train_labels) == 100
    write_batch(tmp_path, "data_batch_1", {b"data": one_image(5), b"labels": [0] * 5})
    assert len(data.load(cifar10_config(tmp_path)).train_labels) == 85


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ([1, 2, 3], "it holds a list, not a dict"),
        ({b"labels": [0]}, "it has no 'data' entry"),
        ({b"data": one_image()}, "it has no 'labels' entry"),
        ({b"batch_label": b"x"}, "it has no 'data' entry and no 'labels' entry"),
        ({b"data": np.zeros((2, 1000), np.uint8), b"labels": [0, 1]}, r"shape \(2, 1000\), not \(images, 3072\)"),
        ({b"data": np.zeros(3072, np.uint8), b"labels": [0]}, r"shape \(3072,\), not \(images, 3072\)"),
        ({b"data": one_image(0), b"labels": []}, r"shape \(0, 3072\)"),
        ({b"data": one_image().astype(np.float32), b"labels": [0]}, "float32 values, not pixel values"),
        ({b"data": [[1, 2], [3]], b"labels": [0, 1]}, "values NumPy cannot read, not pixel values"),
        ({b"data": np.full((1, 3072), 300), b"labels": [0]}, "values from 300 to 300, not 0..255"),
        ({b"data": one_image(2), b"labels": [0]}, "it has 1 labels for 2 images"),
        ({b"data": one_image(), b"labels": ["cat"]}, "not a list of class indices"),
        ({b"data": one_image(), b"labels": [[0]]}, "not a list of class indices"),
        ({b"data": one_image(), b"labels": [-1]}, "labels run from -1 to -1, but the 10 classes named in batches"),
        ({b"data": one_image(), b"labels": [10]}, "labels run from 10 to 10, but the 10 classes named in batches"),
    ],
)
def test_official_batches_with_the_wrong_content_are_refused(tmp_path, content, message):
    write_official_cifar10(tmp_path)
    path = write_batch(tmp_path, "data_batch_2", content)
    with pytest.raises(data.DataError, match=message) as raised:
        data.load(cifar10_config(tmp_path))
    text = str(raised.value)
    assert text.startswith(f"{path} is not a readable CIFAR-10 batch") and "\n" not in text
    assert f"Delete the folder {path.parent}" in text


def test_batch_labels_are_checked_against_the_class_names(tmp_path):
    write_official_cifar10(tmp_path)
    write_batch(tmp_path, "batches.meta", {b"label_names": [b"cat", b"dog", b"ant"]})
    with pytest.raises(data.DataError, match="data_batch_1 .* the 3 classes named in batches.meta are 0..2"):
        data.load(cifar10_config(tmp_path))

    # Without batches.meta, CIFAR-10's ten classes bound the labels; the test batch is checked too.
    (tmp_path / data.CIFAR10_FOLDER / "batches.meta").unlink()
    write_batch(tmp_path, "test_batch", {b"data": one_image(), b"labels": [12]})
    with pytest.raises(data.DataError, match="test_batch .* the 10 classes of CIFAR-10 are 0..9"):
        data.load(cifar10_config(tmp_path))


def test_batches_without_meta_name_the_classes_by_index(tmp_path):
    write_official_cifar10(tmp_path)
    (tmp_path / data.CIFAR10_FOLDER / "batches.meta").unlink()
    splits = data.load(cifar10_config(tmp_path))
    assert splits.classes == [str(index) for index in range(int(splits.train_labels.max()) + 1)]


@pytest.mark.parametrize("names", [None, [], [1, 2], "airplane"])
def test_a_meta_file_without_class_names_is_refused(tmp_path, names):
    write_official_cifar10(tmp_path)
    write_batch(tmp_path, "batches.meta", {b"num_vis": 3072} if names is None else {b"label_names": names})
    with pytest.raises(data.DataError, match="batches.meta is not a readable .* no 'label_names' list"):
        data.load(cifar10_config(tmp_path))


def test_a_truncated_batch_is_refused(tmp_path):
    write_official_cifar10(tmp_path)
    path = tmp_path / data.CIFAR10_FOLDER / "data_batch_4"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(data.DataError, match="data_batch_4 is not a readable CIFAR-10 batch"):
        data.load(cifar10_config(tmp_path))


def write_archive(tmp_path: Path, mode: str = "w:gz", name: str = "images.tar.gz") -> Path:
    write_image_tree(tmp_path / "tree", per_class=20)
    archive = tmp_path / name
    with tarfile.open(archive, mode) as handle:
        handle.add(tmp_path / "tree", arcname="images")
    return archive


def damage(path: Path, how: str) -> None:
    """Cut the file short, or let its gzip stream turn to garbage halfway, as a broken download or disk would."""
    content = path.read_bytes()
    if how == "truncated":
        content = content[: len(content) // 2]
    elif how == "cut after the header":
        content = content[:30]
    else:
        # A second gzip member whose first deflate block has the reserved type 3: zlib's "invalid block type".
        plain = gzip.decompress(content)
        content = gzip.compress(plain[: len(plain) // 2]) + gzip.compress(b"")[:10] + b"\x07" + bytes(16)
    path.write_bytes(content)


@pytest.mark.parametrize(
    ("mode", "name", "how"),
    [
        ("w:gz", "images.tar.gz", "truncated"),  # gzip: EOFError
        ("w:gz", "images.tar.gz", "cut after the header"),  # already in tarfile.is_tarfile
        ("w:gz", "images.tar.gz", "corrupted"),  # zlib.error
        ("w", "images.tar", "truncated"),  # tarfile.ReadError
        ("w:xz", "images.tar.xz", "truncated"),  # lzma
    ],
)
def test_a_damaged_archive_is_named_with_what_to_do(tmp_path, monkeypatch, mode, name, how):
    monkeypatch.setattr(data, "project_path", lambda *parts: str(tmp_path.joinpath("project", *parts)))
    archive = write_archive(tmp_path, mode, name)
    damage(archive, how)
    with pytest.raises(data.DataError) as raised:
        data.load(folder_config(archive))
    message = str(raised.value)
    assert message.startswith(f"data.root={archive} is a damaged or truncated archive (")
    assert "pack it again" in message and "\n" not in message


@pytest.mark.slow
def test_entrypoint_reports_a_truncated_archive_without_a_traceback(tmp_path):
    archive = write_archive(tmp_path)
    damage(archive, "truncated")
    result = run_entrypoint(["data=folder", f"data.root={archive}", "trainer.epochs=1"], tmp_path / "outputs")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"data.root={archive} is a damaged or truncated archive" in result.stderr


def test_a_symlink_loop_in_an_image_folder_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "project_path", lambda *parts: str(tmp_path.joinpath("project", *parts)))
    write_image_tree(tmp_path / "tree")
    folder = tmp_path / "tree" / "train" / "bee"
    (folder / "0100.png").symlink_to(folder / "0101.png")
    (folder / "0101.png").symlink_to(folder / "0100.png")
    with pytest.raises(data.DataError) as raised:
        data.load(folder_config(tmp_path / "tree"))
    message = str(raised.value)
    assert message.startswith(f"{folder / '0100.png'} cannot be read (Too many levels of symbolic links)")
    assert f"or remove it from {tmp_path / 'tree'}" in message

    # A class folder that is a loop is named too, not left out as if it were empty.
    for name in ("0100.png", "0101.png"):
        (folder / name).unlink()
    (tmp_path / "tree" / "test" / "wasp").symlink_to(tmp_path / "tree" / "test" / "wasp")
    with pytest.raises(data.DataError, match="test/wasp cannot be read"):
        data.load(folder_config(tmp_path / "tree"))


def test_an_unreadable_image_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "project_path", lambda *parts: str(tmp_path.joinpath("project", *parts)))
    write_image_tree(tmp_path / "tree")
    locked = tmp_path / "tree" / "test" / "cat" / "0001.png"
    read_bytes = Path.read_bytes

    # Tests may run as root, whom chmod does not stop: the refusal the kernel would give is raised here instead.
    def refuse(path: Path) -> bytes:
        if path == locked:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(data.DataError, match="cannot be read") as raised:
        data.load(folder_config(tmp_path / "tree"))
    assert str(raised.value).startswith(f"{locked} cannot be read (Permission denied). Fix its permissions")


def test_a_root_that_is_a_symlink_loop_is_named(tmp_path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(data.DataError) as raised:
        data.load(folder_config(tmp_path / "a"))
    message = str(raised.value)
    assert message.startswith(f"data.root={tmp_path / 'a'} cannot be opened (Too many levels of symbolic links)")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(data.DataError, match="does not exist"):
        data.load(folder_config(tmp_path / "dangling"))


def test_a_test_subset_takes_the_first_test_images_and_the_summary_says_how_many(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(data, "project_path", lambda *parts: str(tmp_path.joinpath("project", *parts)))
    write_image_tree(tmp_path / "tree")
    whole = data.load(folder_config(tmp_path / "tree"))
    config = folder_config(tmp_path / "tree")
    config.test_subset = 3
    with caplog.at_level("INFO", logger="runner"):
        part = data.load(config)
    assert torch.equal(part.test_images, whole.test_images[:3]) and part.test_labels.tolist() == [0, 1, 2]
    assert "Data: folder, 9 training, 0 validation and 3 test images of 3x8x8" in caplog.text
    config.test_subset = 7
    with pytest.raises(data.DataError, match="data.test_subset=7 must be between 1 and the 6 test images"):
        data.load(config)
    summary = train_in_process([*SMALL_MODEL, "data.test_subset=40"], tmp_path / "run")
    assert summary["test_images"] == 40


def test_the_first_decode_says_what_it_decodes(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(data, "project_path", lambda *parts: str(tmp_path.joinpath("project", *parts)))
    write_image_tree(tmp_path / "tree")
    with caplog.at_level("INFO", logger="runner"):
        data.load(folder_config(tmp_path / "tree"))
    assert f"Decoding the images of {tmp_path / 'tree'} (once" in caplog.text
    caplog.clear()
    with caplog.at_level("INFO", logger="runner"):
        data.load(folder_config(tmp_path / "tree"))  # from the cache now
    assert "Decoding" not in caplog.text and "Data: folder" in caplog.text
