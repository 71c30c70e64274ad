"""Preprocessing options: what each removes from the training data, fitted on the training split only."""

import functools

import pytest
import torch
from hydra.utils import instantiate

import runner.preprocess as preprocess_module
from tests.conftest import compose_config

OPTIONS_TESTED = {"preprocess": {"none", "mean_image", "channel_mean", "standardize", "pca_whiten", "zca_whiten"}}


@functools.cache
def composed(*overrides: str):
    """Composing is the slow part of these tests: each distinct config is composed once per session."""
    return compose_config(list(overrides))


def build(option: str, *overrides: str):
    return instantiate(composed(f"preprocess={option}", *overrides).preprocess)


def correlated_images(count: int = 20000, size: int = 4, seed: int = 0) -> torch.Tensor:
    """uint8 images whose pixels are strongly correlated (a shared colour, a gradient) with a well-conditioned
    covariance: 3 x size x size dimensions, far fewer than the images."""
    generator = torch.Generator().manual_seed(seed)
    dimension = 3 * size * size
    mixing = torch.eye(dimension) + 0.3 * torch.randn(dimension, dimension, generator=generator) / dimension**0.5
    latent = torch.randn(count, dimension, generator=generator)
    shared = torch.randn(count, 1, generator=generator)
    pixels = 128 + 18 * (latent @ mixing.T) + 20 * shared + torch.linspace(-20, 20, dimension)
    return pixels.round().clamp(0, 255).to(torch.uint8).view(count, 3, size, size)


def covariance(x: torch.Tensor) -> torch.Tensor:
    flat = x.double().flatten(1)
    flat = flat - flat.mean(dim=0)
    return flat.T @ flat / len(flat)


def test_none_scales_pixels_to_the_unit_interval():
    images = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 3, 1, 1)
    module = build("none").fit(images)
    torch.testing.assert_close(module(images).flatten(), torch.tensor([0.0, 0.2, 1.0]))
    # Floats in [0, 1] (after photometric augmentation) pass through unchanged.
    torch.testing.assert_close(module(images.float() / 255), module(images))


def test_mean_image_leaves_a_zero_mean_image():
    images = correlated_images(2000, size=6)
    module = build("mean_image").fit(images)
    assert module.mean.shape == (1, 3, 6, 6)
    out = module(images)
    assert out.double().mean(dim=0).abs().max() < 1e-6
    # Only the mean is removed: the spread of each pixel is as before.
    torch.testing.assert_close(out.std(dim=0), (images.float() / 255).std(dim=0), rtol=1e-4, atol=1e-5)


def test_channel_mean_removes_three_means_only():
    images = correlated_images(2000, size=6)
    out = build("channel_mean").fit(images)(images).double()
    assert out.mean(dim=(0, 2, 3)).abs().max() < 1e-6
    assert out.mean(dim=0).abs().max() > 1e-3  # per-pixel means remain (unlike mean_image)
    torch.testing.assert_close(out.std(dim=(0, 2, 3)), (images.double() / 255).std(dim=(0, 2, 3)))


def test_standardize_gives_each_channel_zero_mean_and_unit_std():
    images = correlated_images(2000, size=6)
    out = build("standardize").fit(images)(images).double()
    assert out.mean(dim=(0, 2, 3)).abs().max() < 1e-5
    torch.testing.assert_close(out.std(dim=(0, 2, 3)), torch.ones(3, dtype=torch.float64), rtol=1e-3, atol=0)


@pytest.mark.parametrize("option", ["pca_whiten", "zca_whiten"])
def test_whitened_training_data_has_identity_covariance(option, tmp_path):
    images = correlated_images()
    assert covariance(images.double() / 255).diagonal().std() > 0.0  # the input is far from white
    module = build(option, "preprocess.epsilon=0", f"preprocess.cache_dir={tmp_path}").fit(images)
    out = module(images)
    assert out.shape == images.shape
    identity = torch.eye(images[0].numel(), dtype=torch.float64)
    assert (covariance(out) - identity).abs().max() < 1e-3
    assert out.double().mean(dim=0).abs().max() < 1e-3


def test_zca_matrix_is_symmetric_and_stays_close_to_the_pixels():
    images = correlated_images()
    zca = build("zca_whiten", "preprocess.epsilon=0", "preprocess.cache_dir=null").fit(images)
    pca = build("pca_whiten", "preprocess.epsilon=0", "preprocess.cache_dir=null").fit(images)
    torch.testing.assert_close(zca.matrix, zca.matrix.T, rtol=0, atol=1e-5)
    assert not torch.allclose(pca.matrix, pca.matrix.T, atol=1e-2)
    # Of all whitening matrices ZCA's output is the closest to its input (Kessy et al. 2018).
    centred = (images.double() / 255).flatten(1)
    centred = centred - centred.mean(dim=0)
    distance = {
        name: (m(images).double().flatten(1) * centred.std() - centred).square().mean()
        for name, m in (("zca", zca), ("pca", pca))
    }
    assert distance["zca"] < distance["pca"]


def test_pca_components_come_largest_first_and_epsilon_damps_the_small_ones(tmp_path):
    images = correlated_images()
    module = build("pca_whiten", "preprocess.epsilon=1e-3", f"preprocess.cache_dir={tmp_path}").fit(images)
    _, eigenvalues, _ = preprocess_module.covariance_eigenbasis(images, str(tmp_path))
    assert torch.all(eigenvalues[:-1] >= eigenvalues[1:])
    variances = covariance(module(images)).diagonal()
    torch.testing.assert_close(variances, eigenvalues / (eigenvalues + 1e-3), rtol=1e-3, atol=1e-5)


def test_whitening_is_fitted_once_per_training_set_and_then_read_from_the_cache(tmp_path, monkeypatch):
    images = correlated_images(3000)
    first = build("zca_whiten", f"preprocess.cache_dir={tmp_path}").fit(images)
    assert len(list(tmp_path.glob("whitening-*.pt"))) == 1

    def no_recompute(*args, **kwargs):
        raise AssertionError("the cached eigenbasis should have been used")

    monkeypatch.setattr(preprocess_module, "pixel_covariance", no_recompute)
    second = build("pca_whiten", f"preprocess.cache_dir={tmp_path}").fit(images)  # PCA and ZCA share it
    third = build("zca_whiten", f"preprocess.cache_dir={tmp_path}").fit(images)
    torch.testing.assert_close(third.matrix, first.matrix)
    assert second.matrix.shape == first.matrix.shape
    with pytest.raises(AssertionError, match="cached"):  # other images, other key
        build("zca_whiten", f"preprocess.cache_dir={tmp_path}").fit(images[:-1])


def test_whitening_stays_in_float32_under_bfloat16_autocast():
    images = correlated_images(3000)
    module = build("zca_whiten", "preprocess.cache_dir=null").fit(images)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = module(images[:100])
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, module(images[:100]))
