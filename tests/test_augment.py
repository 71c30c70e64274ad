"""The math of each augmentation on whole batches: flips mirror, crops translate, cutout zeroes a square,
mixing blends images and targets alike, PCA lighting moves colours along the principal axes only."""

import math

import pytest
import torch
import torchvision.transforms.functional as TF

from runner.augment import (
    ColorJitter,
    Compose,
    CutMix,
    Cutout,
    LensDistortion,
    Mixup,
    PCALighting,
    RandomAffine,
    RandomCrop,
    RandomFlip,
    RandomScaleCrop,
    adjust_brightness,
    adjust_contrast,
    adjust_saturation,
    affine_matrices,
    distortion_grid,
    pixel_principal_components,
    sample_beta,
    warp,
)
from runner.run import group_entries
from tests.conftest import compose_config

OPTIONS_TESTED = {
    "augmentation": {
        "none",
        "flip",
        "crop",
        "flip_crop",
        "scale_crop",
        "color_jitter",
        "pca_lighting",
        "affine",
        "lens_distortion",
        "cutout",
        "mixup",
        "cutmix",
    }
}


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(count: int = 64, size: int = 8) -> torch.Tensor:
    return torch.randint(0, 256, (count, 3, size, size), generator=generator(1), dtype=torch.uint8)


LABELS = torch.arange(64) % 10


def test_list_selection_composes_in_order_and_none_is_empty():
    config = compose_config(["augmentation=[flip_crop,cutout]", "augmentation.cutout.size=8"])
    entries = group_entries(config.augmentation)
    assert [type(entry) for entry in entries] == [RandomFlip, RandomCrop, Cutout] and entries[2].size == 8
    assert group_entries(compose_config(["augmentation=none"]).get("augmentation")) == []
    batch = images()
    assert torch.equal(Compose([])(batch, LABELS, generator())[0], batch)


def test_flips_are_exact_mirrors_of_half_the_images():
    batch = images(400)
    out, targets = RandomFlip(0.5)(batch, LABELS, generator())
    flipped = (out == batch.flip(3)).flatten(1).all(1)
    kept = (out == batch).flatten(1).all(1)
    assert (flipped | kept).all() and torch.equal(targets, LABELS)
    assert 0.4 < flipped.float().mean().item() < 0.6


def test_alternating_flip_shows_each_image_both_ways_in_any_two_epochs_in_a_row():
    count, batch_size = 300, 64
    dataset = images(count)
    flip = RandomFlip(0.5, alternate=True)
    seeds = generator(7)
    flipped_by_epoch = []
    for epoch in range(3):
        order = torch.randperm(count, generator=seeds)
        flip.start_epoch(epoch, order, seeds)
        flipped = torch.zeros(count, dtype=torch.bool)
        for start in range(0, count, batch_size):
            indices = order[start : start + batch_size]
            out, _ = flip(dataset[indices], LABELS[: len(indices)], seeds)
            flipped[indices] = (out == dataset[indices].flip(3)).flatten(1).all(1)
        flipped_by_epoch.append(flipped)
    assert 0.4 < flipped_by_epoch[0].float().mean().item() < 0.6  # the first epoch draws at random
    assert torch.equal(flipped_by_epoch[1], ~flipped_by_epoch[0])  # then every image alternates
    assert torch.equal(flipped_by_epoch[2], flipped_by_epoch[0])
    # The first epoch's draw follows the run's seed, not its generator's state: a resumed run flips the same.
    again = RandomFlip(0.5, alternate=True)
    moved_on = generator(7)
    torch.rand(1000, generator=moved_on)
    order = torch.arange(count)
    again.start_epoch(2, order, moved_on)
    assert torch.equal((again(dataset, LABELS, moved_on)[0] == dataset.flip(3)).flatten(1).all(1), flipped_by_epoch[2])


@pytest.mark.parametrize("mode", ["constant", "reflect"])
def test_crops_are_translations_of_the_padded_image(mode):
    batch = images(40)
    out, _ = RandomCrop(padding=2, padding_mode=mode)(batch, LABELS[:40], generator())
    assert out.dtype == torch.uint8
    padded = torch.nn.functional.pad(batch.float(), (2, 2, 2, 2), mode=mode).to(torch.uint8)
    offsets = set()
    for index in range(len(batch)):
        matches = [
            (row, column)
            for row in range(5)
            for column in range(5)
            if torch.equal(out[index], padded[index, :, row : row + 8, column : column + 8])
        ]
        assert matches, f"image {index} is not a crop of its padded image"
        offsets.add(matches[0])
    assert len(offsets) > 10  # random offsets


def test_scale_crop_resamples_a_crop_of_the_image():
    ramp = torch.linspace(0, 1, 16).expand(20, 3, 16, 16).contiguous()  # brightness grows left to right
    same, _ = RandomScaleCrop(scale=(1, 1), ratio=(1, 1))(ramp, LABELS[:20], generator())
    assert torch.allclose(same, ramp, atol=1e-6)
    out, _ = RandomScaleCrop(scale=(0.25, 0.25), ratio=(1, 1))(ramp, LABELS[:20], generator())
    # A crop of a quarter of the area is half the width stretched to the full width: the slope halves.
    slopes = out[:, 0, 8, 2:14].diff(dim=1)
    assert torch.allclose(slopes, torch.full_like(slopes, 1 / 30), atol=1e-5)
    assert (out >= 0).all() and (out <= 1).all()


def test_color_jitter_matches_torchvision_formulas():
    batch = torch.rand(6, 3, 8, 8, generator=generator())
    factors = torch.tensor([0.5, 0.8, 1.0, 1.2, 1.4, 0.0])
    for ours, theirs in (
        (adjust_brightness, TF.adjust_brightness),
        (adjust_contrast, TF.adjust_contrast),
        (adjust_saturation, TF.adjust_saturation),
    ):
        expected = torch.stack([theirs(image, float(f)) for image, f in zip(batch, factors, strict=True)])
        assert torch.allclose(ours(batch, factors), expected, atol=1e-6)
    out, _ = ColorJitter(0, 0, 0)(images(), LABELS, generator())
    assert torch.allclose(out, images().float() / 255)
    out, _ = ColorJitter()(images(), LABELS, generator())
    assert out.min() >= 0 and out.max() <= 1


def test_pca_lighting_moves_pixels_along_the_principal_axes_only():
    # Pixels spread along two colour directions only: the third principal axis has no variance.
    torch.manual_seed(0)
    axes = torch.linalg.qr(torch.randn(3, 3))[0]
    coefficients = torch.randn(500, 2, 64) * torch.tensor([0.2, 0.05])[:, None]
    pixels = 0.5 + torch.einsum("ck,nkp->ncp", axes[:, :2], coefficients)
    train = (pixels.clamp(0, 1) * 255).round().to(torch.uint8).view(500, 3, 8, 8)
    values, vectors = pixel_principal_components(train)
    reference = train.double().div(255).permute(1, 0, 2, 3).reshape(3, -1)
    assert torch.allclose(values.double(), torch.linalg.eigvalsh(torch.cov(reference, correction=0)), atol=1e-6)

    lighting = PCALighting(std=0.1).fit(train, 10)
    batch = images(32)
    out, _ = lighting(batch, LABELS[:32], generator(3))
    shift = out - batch.float() / 255
    assert torch.allclose(shift, shift[:, :, :1, :1].expand_as(shift), atol=1e-6)  # one colour shift per image
    shift = shift[:, :, 0, 0]
    alpha = 0.1 * torch.randn(32, 3, generator=generator(3))
    assert torch.allclose(shift @ vectors, alpha * values, atol=1e-6)  # alpha_i * lambda_i along axis i
    smallest = vectors[:, 0]  # eigenvalues ascend: the axis without variance gets (almost) no shift
    assert (shift @ smallest).abs().max() < 1e-3 * shift.norm(dim=1).max()


def test_affine_warp_rotates_translates_and_is_the_identity_without_motion():
    batch = torch.rand(4, 3, 8, 8, generator=generator())
    quarter = affine_matrices(
        rotation=torch.full((4,), math.pi / 2),
        shear=torch.zeros(4),
        stretch=torch.ones(4, 2),
        translation=torch.zeros(4, 2),
    )
    assert torch.allclose(warp(batch, quarter), batch.rot90(1, dims=(2, 3)), atol=1e-5)
    shifted = affine_matrices(torch.zeros(4), torch.zeros(4), torch.ones(4, 2), torch.tensor([[2 / 8 * 2, 0.0]] * 4))
    out = warp(batch, shifted)  # sample 2 pixels to the right: the content moves left, zeros come in
    assert torch.allclose(out[..., :6], batch[..., 2:], atol=1e-5) and (out[..., 6:] == 0).all()
    still, _ = RandomAffine(0, 0, 0, 0)(batch, LABELS[:4], generator())
    assert torch.allclose(still, batch, atol=1e-5)
    moved, _ = RandomAffine()(batch, LABELS[:4], generator())
    assert not torch.allclose(moved, batch, atol=1e-3)


def test_lens_distortion_scales_radially_by_one_plus_k_r_squared():
    grid = distortion_grid(torch.tensor([0.0, 0.3, -0.3]), 8, 8)
    base = grid[0]
    radius_squared = base.square().sum(-1, keepdim=True)
    assert torch.allclose(grid[1], base * (1 + 0.3 * radius_squared))
    assert torch.allclose(grid[2], base * (1 - 0.3 * radius_squared))
    batch = torch.rand(4, 3, 8, 8, generator=generator())
    still, _ = LensDistortion(strength=0)(batch, LABELS[:4], generator())
    assert torch.allclose(still, batch, atol=1e-5)


def test_cutout_zeroes_exactly_the_configured_square():
    batch = torch.full((300, 3, 16, 16), 200, dtype=torch.uint8)
    out, _ = Cutout(size=6)(batch, LABELS.repeat(5)[:300], generator())
    zero = out[:, 0] == 0
    assert torch.equal(zero[:, None].expand_as(out), out == 0)  # all channels alike, nothing else touched
    inside = 0
    for mask in zero:
        rows, columns = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        assert mask.sum() == len(rows) * len(columns)  # a rectangle
        assert len(rows) <= 6 and len(columns) <= 6
        touches_border = rows.min() == 0 or rows.max() == 15 or columns.min() == 0 or columns.max() == 15
        if not touches_border:
            assert len(rows) == len(columns) == 6
            inside += 1
    assert inside > 40  # about a quarter of the centres keep the square off the border


def test_cutout_inside_the_image_always_zeroes_the_whole_square():
    batch = torch.full((300, 3, 16, 16), 200, dtype=torch.uint8)
    out, _ = Cutout(size=6, inside=True)(batch, LABELS.repeat(5)[:300], generator())
    zero = out[:, 0] == 0
    assert torch.equal(zero.sum((1, 2)), torch.full((300,), 36))  # every image loses 6 x 6 pixels
    for mask in zero:
        rows, columns = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        assert mask.sum() == len(rows) * len(columns) and len(rows) == len(columns) == 6
    corners = [tuple(mask.nonzero().min(0).values.tolist()) for mask in zero]
    assert {corner[0] for corner in corners} == set(range(11))  # every top row from 0 to 16 - 6


def test_beta_sampler_has_the_right_moments():
    for alpha in (0.2, 1.0, 2.0):
        draws = sample_beta(alpha, alpha, 20_000, generator(), "cpu")
        assert abs(draws.mean().item() - 0.5) < 0.01
        assert abs(draws.var().item() - 1 / (4 * (2 * alpha + 1))) < 0.01


def test_mixup_blends_images_and_targets_with_the_same_weight():
    batch = torch.rand(32, 3, 4, 4, generator=generator())
    labels = torch.arange(32)  # one class per image: targets reveal the partner and the weight
    mixed, targets = Mixup(alpha=1.0).fit(batch, 32)(batch, labels, generator())
    assert torch.allclose(targets.sum(1), torch.ones(32))
    own = targets[torch.arange(32), labels]  # lambda, or 1 for an image paired with itself
    others = targets.scatter(1, labels[:, None], -1.0)
    partner = torch.where(own < 1, others.argmax(1), labels)
    expected = own.view(-1, 1, 1, 1) * batch + (1 - own).view(-1, 1, 1, 1) * batch[partner]
    assert torch.allclose(mixed, expected, atol=1e-6)
    assert torch.allclose(own[partner != labels], own[partner != labels][0].expand(int((partner != labels).sum())))


def test_cutmix_pastes_one_box_and_mixes_targets_by_its_area():
    batch = torch.arange(32, dtype=torch.uint8).view(32, 1, 1, 1).expand(32, 3, 16, 16).contiguous()
    mixed, targets = CutMix(alpha=1.0).fit(batch, 32)(batch, torch.arange(32), generator(5))
    assert mixed.dtype == torch.uint8 and torch.allclose(targets.sum(1), torch.ones(32))
    pasted = mixed[:, 0] != batch[:, 0]
    box = pasted.any(0)
    rows, columns = box.any(1).nonzero().flatten(), box.any(0).nonzero().flatten()
    assert box.sum() == len(rows) * len(columns) > 0  # one rectangle, the same for every image
    moved = pasted.flatten(1).any(1)
    area = box.float().mean()
    own = targets[torch.arange(32), torch.arange(32)]
    assert torch.allclose(own[moved], (1 - area).expand(int(moved.sum())))
    assert (own[~moved] == 1).all()  # an image paired with itself keeps its label
