"""Data sources: the official CIFAR-10 format (files written here), image trees as folders and archives,
the synthetic set, and the subset and validation split."""

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
    monkeypatch.setattr(data, "_decode_tree", lambda root: pytest.fail("the cache was not used"))
    assert torch.equal(data.load(folder_config(archive)).train_images, from_archive.train_images)


def test_a_damaged_cache_is_rebuilt_and_a_changed_source_invalidates_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(data, "project_path", lambda *parts: str(tmp_path.joinpath("project", *parts)))
    write_image_tree(tmp_path / "tree")
    reference = data.load(folder_config(tmp_path / "tree"))
    cache = tmp_path / "tree" / ".images.runner-cache.npz"
    cache.write_bytes(cache.read_bytes()[:100])
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
