"""Data augmentation on whole batches, on the training device: no per-image Python, no PIL.

Each augmentation is called as ``augmentation(images, targets, generator)`` and returns the pair, so that
those that mix examples (mixup, cutmix) can return soft targets (float N x classes). Images are uint8 in
[0, 255] or float in [0, 1]; flips, crops and cutout keep the dtype, the rest return floats in [0, 1]
units (the model's preprocessing accepts both). All randomness comes from the run's device generator, so a
seeded run repeats exactly. Augmentations with a ``fit(train_images, num_classes)`` method are fitted by
the build stage before training (PCA lighting needs the training set's colours, mixing needs the classes).
Test-time views, which average predictions rather than train on new images, live in ``runner.evaluate``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from runner.preprocess import to_unit_range

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # ITU-R 601 luma, as torchvision's rgb_to_grayscale


def _uniform(low: float, high: float, count: int, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(count, device=images.device, generator=generator)


def _soft(targets: torch.Tensor, num_classes: int | None) -> torch.Tensor:
    if targets.ndim == 2:
        return targets.float()
    if num_classes is None:
        raise ValueError("mixing augmentations need num_classes (the build stage passes it to fit)")
    return F.one_hot(targets, num_classes).float()


# --- geometry --------------------------------------------------------------------------------------------


class RandomFlip:
    """Mirror each image left-right with probability ``probability``.

    ``alternate``: airbench's alternating flip (Jordan 2024). Each training image is flipped at random in the
    first epoch and then flipped in every other epoch, so any two epochs in a row show it both ways. With
    short training this beats independent draws, which show some images the same way several epochs running.
    """

    def __init__(self, probability: float = 0.5, alternate: bool = False):
        self.probability = probability
        self.alternate = alternate
        self._epoch_flips: torch.Tensor | None = None  # this epoch's decisions, in the order batches come
        self._position = 0

    def start_epoch(self, epoch: int, order: torch.Tensor, generator: torch.Generator) -> None:
        """Called by the loop with the epoch's permutation of the training set, before its first batch."""
        if not self.alternate:
            return
        # Drawn from the run's seed, not from its generator's current state, so a resumed run flips the same.
        first = torch.Generator(device=order.device).manual_seed(generator.initial_seed() + 1)
        flipped_first = torch.rand(len(order), device=order.device, generator=first) < self.probability
        self._epoch_flips = (flipped_first ^ bool(epoch % 2))[order]
        self._position = 0

    def __call__(self, images: torch.Tensor, targets: torch.Tensor, generator: torch.Generator):
        if self._epoch_flips is not None and self._position + len(images) <= len(self._epoch_flips):
            flip = self._epoch_flips[self._position : self._position + len(images)]
            self._position += len(images)
        else:
            flip = torch.rand(len(images), device=images.device, generator=generator) < self.probability
        return torch.where(flip.view(-1, 1, 1, 1), images.flip(3), images), targets


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    index = index.abs()
    return torch.where(index > size - 1, 2 * (size - 1) - index, index)


PADDING_MODES = ("constant", "reflect")


def translate(
    images: torch.Tensor,
    row_shifts: torch.Tensor,
    column_shifts: torch.Tensor,
    padding: int,
    padding_mode: str = "constant",
) -> torch.Tensor:
    """out[n, :, i, j] = images[n, :, i + row_shifts[n], j + column_shifts[n]] for shifts in [-padding, padding],
    zero (``constant``) or mirrored (``reflect``) outside the image: one gather over the whole batch."""
    count, channels, height, width = images.shape
    device = images.device
    rows = row_shifts[:, None] + torch.arange(height, device=device)
    columns = column_shifts[:, None] + torch.arange(width, device=device)
    if padding_mode == "reflect":
        source, rows, columns = images, _reflect(rows, height), _reflect(columns, width)
    elif padding_mode == "constant":
        source = F.pad(images, (padding, padding, padding, padding))
        rows, columns = rows + padding, columns + padding
    else:
        raise ValueError(f"padding_mode {padding_mode!r} is not one of {PADDING_MODES}")
    # Flat pixel indices into each (padded) image: a gather is several times faster than advanced indexing.
    flat = rows[:, :, None] * source.shape[3] + columns[:, None, :]
    flat = flat.view(count, 1, height * width).expand(count, channels, height * width)
    return source.reshape(count, channels, -1).gather(2, flat).view(count, channels, height, width)


class RandomCrop:
    """Pad by ``padding`` pixels and crop back to the original size at a random offset: a random translation.

    ``constant`` padding fills with zeros (torchvision's default), ``reflect`` mirrors the border (airbench).
    """

    def __init__(self, padding: int = 4, padding_mode: str = "constant"):
        self.padding = padding
        self.padding_mode = padding_mode

    def __call__(self, images: torch.Tensor, targets: torch.Tensor, generator: torch.Generator):
        shifts = torch.randint(
            -self.padding, self.padding + 1, (2, len(images)), device=images.device, generator=generator
        )
        return translate(images, shifts[0], shifts[1], self.padding, self.padding_mode), targets


def warp(images: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """Sample each image at ``matrices[n] @ (x, y, 1)`` for every output position (x, y) in [-1, 1]
    coordinates (pixel centres, ``align_corners=False``); bilinear, zero outside. Returns floats in [0, 1]."""
    images = to_unit_range(images)
    grid = F.affine_grid(matrices.to(images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class RandomScaleCrop:
    """Random crops and scales (Szegedy et al. 2015): a crop covering ``scale`` of the image's area with an
    aspect ratio log-uniform in ``ratio``, at a random position, resized back to full size."""

    def __init__(self, scale: tuple[float, float] = (0.35, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3)):
        self.scale = tuple(scale)
        self.ratio = tuple(ratio)

    def __call__(self, images: torch.Tensor, targets: torch.Tensor, generator: torch.Generator):
        count = len(images)
        area = _uniform(*self.scale, count, images, generator)
        aspect = torch.exp(_uniform(math.log(self.ratio[0]), math.log(self.ratio[1]), count, images, generator))
        # Half-widths of the crop in [-1, 1] coordinates; a crop that would overflow is clipped to the image.
        width, height = (area * aspect).sqrt().clamp(max=1), (area / aspect).sqrt().clamp(max=1)
        centre = torch.rand(2, count, device=images.device, generator=generator) * 2 - 1
        matrices = torch.zeros(count, 2, 3, device=images.device)
        matrices[:, 0, 0], matrices[:, 1, 1] = width, height
        matrices[:, 0, 2], matrices[:, 1, 2] = centre[0] * (1 - width), centre[1] * (1 - height)
        return warp(images, matrices), targets


def affine_matrices(
    rotation: torch.Tensor, shear: torch.Tensor, stretch: torch.Tensor, translation: torch.Tensor
) -> torch.Tensor:
    """Sampling matrices rotation(rotation) @ shear(shear) @ diag(stretch) with offset ``translation``
    (angles in radians, ``stretch`` and ``translation`` of shape (N, 2) in [-1, 1] coordinates)."""
    cos, sin = rotation.cos(), rotation.sin()
    shear_tan = shear.tan()
    linear = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    shearing = torch.zeros_like(linear)
    shearing[:, 0, 0] = shearing[:, 1, 1] = 1
    shearing[:, 0, 1] = shear_tan
    linear = linear @ shearing @ torch.diag_embed(stretch)
    return torch.cat([linear, translation[:, :, None]], dim=2)


class RandomAffine:
    """Random translation, rotation, stretching and shearing of each image, as one bilinear resampling.

    Each is drawn uniformly: translation up to ``translation`` of the image size, rotation and shear up to
    the given degrees, and independent horizontal and vertical scales in [1 - stretch, 1 + stretch].
    """

    def __init__(self, translation: float = 0.1, rotation: float = 15.0, stretch: float = 0.1, shear: float = 10.0):
        self.translation = translation
        self.rotation = rotation
        self.stretch = stretch
        self.shear = shear

    def __call__(self, images: torch.Tensor, targets: torch.Tensor, generator: torch.Generator):
        count = len(images)
        draws = torch.rand(7, count, device=images.device, generator=generator) * 2 - 1
        matrices = affine_matrices(
            rotation=draws[0] * math.radians(self.rotation),
            shear=draws[1] * math.radians(self.shear),
            stretch=1 + self.stretch * draws[2:4].T,
            translation=2 * self.translation * draws[4:6].T,
        )
        return warp(images, matrices), targets


def distortion_grid(strengths: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Radial lens distortion: output position p (in [-1, 1]) samples the input at p (1 + k |p|^2).

    k > 0 pulls the border inwards (barrel), k < 0 pushes it outwards (pincushion); the centre stays."""
    identity = torch.eye(2, 3, device=strengths.device).expand(len(strengths), 2, 3)
    grid = F.affine_grid(identity, [len(strengths), 1, height, width], align_corners=False)
    radius_squared = grid.square().sum(-1, keepdim=True)
    return grid * (1 + strengths.view(-1, 1, 1, 1) * radius_squared)


class LensDistortion:
    """Barrel and pincushion distortion: a radial strength k uniform in [-strength, strength] per image."""

    def __init__(self, strength: float = 0.2):
        self.strength = strength

    def __call__(self, images: torch.Tensor, targets: torch.Tensor, generator: torch.Generator):
        strengths = _uniform(-self.strength, self.strength, len(images), images, generator)
        grid = distortion_grid(strengths, images.shape[2], images.shape[3])
        out = F.grid_sample(to_unit_range(images), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return out, targets


# --- colour ----------------------------------------------------------------------------------------------


def grayscale(images: torch.Tensor) -> torch.Tensor:
    red, green, blue = images.unbind(1)
    return (GRAY_WEIGHTS[0] * red + GRAY_WEIGHTS[1] * green + GRAY_WEIGHTS[2] * blue).unsqueeze(1)


def _blend(images: torch.Tensor, other: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    factors = factors.view(-1, 1, 1, 1)
    return (factors * images + (1 - factors) * other).clamp(0, 1)


def adjust_brightness(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    return _blend(images, torch.zeros_like(images), factors)


def adjust_contrast(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    return _blend(images, grayscale(images).mean(dim=(1, 2, 3), keepdim=True), factors)


def adjust_saturation(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    return _blend(images, grayscale(images), factors)


class ColorJitter:
    """Random brightness, contrast and saturation, each a factor uniform in [1 - x, 1 + x], applied in that
    order with torchvision's formulas (blends with black, the mean gray level, and the gray image)."""

    def __init__(self, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4):
        self.adjustments = [
            (adjust_brightness, brightness),
            (adjust_contrast, contrast),
            (adjust_saturation, saturation),
        ]

    def __call__(self, images: torch.Tensor, targets: torch.Tensor, generator: torch.Generator):
        images = to_unit_range(images)
        for adjust, amount in self.adjustments:
            if amount > 0:
                images = adjust(images, _uniform(max(0.0, 1 - amount), 1 + amount, len(images), images, generator))
        return images, targets


def pixel_principal_components(images: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (ascending) and eigenvectors (columns) of the covariance of RGB pixels in [0, 1] units."""
    total = torch.zeros(3, dtype=torch.float64, device=images.device)
    products = torch.zeros(3, 3, dtype=torch.float64, device=images.device)
    for start in range(0, len(images), chunk):
        pixels = to_unit_range(images[start : start + chunk]).double().permute(1, 0, 2, 3).reshape(3, -1)
        total += pixels.sum(1)
        products += pixels @ pixels.T
    count = images.numel() / 3
    mean = total / count
    covariance = products / count - torch.outer(mean, mean)
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
    return eigenvalues.clamp_min(0).float(), eigenvectors.float()


class PCALighting:
    """AlexNet's colour augmentation (Krizhevsky et al. 2012): add sum_i alpha_i lambda_i p_i to every pixel
    of an image, with p_i, lambda_i the principal axes and variances of the training set's RGB pixels and
    alpha_i ~ N(0, std) drawn per image. Values are not clipped, as in AlexNet."""

    def __init__(self, std: float = 0.1):
        self.std = std
        self.eigenvalues: torch.Tensor | None = None
        self.eigenvectors: torch.Tensor | None = None

    def fit(self, images: torch.Tensor, num_classes: int | None = None) -> PCALighting:
        self.eigenvalues, self.eigenvectors = pixel_principal_components(images)
        return self

    def __call__(self, images: torch.Tensor, targets: torch.Tensor, generator: torch.Generator):
        if self.eigenvalues is None:
            raise RuntimeError("PCALighting needs fit(train_images) before use")
        alpha = self.std * torch.randn(len(images), 3, device=images.device, generator=generator)
        shift = (alpha * self.eigenvalues) @ self.eigenvectors.T
        return to_unit_range(images) + shift[:, :, None, None], targets


# --- occlusion and mixing --------------------------------------------------------------------------------


def square_masks(rows: torch.Tensor, columns: torch.Tensor, size: int, height: int, width: int) -> torch.Tensor:
    """Boolean (N, H, W) masks of size x size squares centred at (rows[n], columns[n]), clipped to the image."""
    start_rows, start_columns = rows - size // 2, columns - size // 2
    row_index = torch.arange(height, device=rows.device)
    column_index = torch.arange(width, device=rows.device)
    in_rows = (row_index >= start_rows[:, None]) & (row_index < start_rows[:, None] + size)
    in_columns = (column_index >= start_columns[:, None]) & (column_index < start_columns[:, None] + size)
    return in_rows[:, :, None] & in_columns[:, None, :]


class Cutout:
    """Cutout (DeVries and Taylor 2017): zero a size x size square at a uniformly random centre per image
    (partly outside the image near the border, as in the paper). ``inside``: the square always lies wholly
    inside the image, so every image loses size x size pixels (airbench96, Jordan 2024)."""

    def __init__(self, size: int = 16, inside: bool = False):
        self.size = size
        self.inside = inside

    def __call__(self, images: torch.Tensor, targets: torch.Tensor, generator: torch.Generator):
        count, _, height, width = images.shape
        if self.inside:  # centres at least size // 2 from the top and left edges, and far enough from the others
            low, row_end, column_end = self.size // 2, max(1, height - self.size + 1), max(1, width - self.size + 1)
        else:
            low, row_end, column_end = 0, height, width
        rows = low + torch.randint(0, row_end, (count,), device=images.device, generator=generator)
        columns = low + torch.randint(0, column_end, (count,), device=images.device, generator=generator)
        masks = square_masks(rows, columns, self.size, height, width)
        return images.masked_fill(masks[:, None], 0), targets


def sample_gamma(shape: float, count: int, generator: torch.Generator, device) -> torch.Tensor:
    """Gamma(shape, 1) draws from the given generator (torch's own sampler takes none): Marsaglia and Tsang
    2000, with 16 proposals per draw of which the first accepted is kept; shape < 1 uses the boost
    Gamma(shape) = Gamma(shape + 1) U^(1 / shape)."""
    boosted = shape + 1 if shape < 1 else shape
    d = boosted - 1 / 3
    c = 1 / math.sqrt(9 * d)
    normal = torch.randn(count, 16, device=device, generator=generator)
    uniform = torch.rand(count, 16, device=device, generator=generator)
    v = (1 + c * normal) ** 3
    positive = v > 0
    log_v = torch.log(torch.where(positive, v, torch.ones_like(v)))
    accepted = positive & (torch.log(uniform) < 0.5 * normal.square() + d - d * v + d * log_v)
    first = accepted.to(torch.uint8).argmax(1, keepdim=True)  # all rejected (p < 1e-20): proposal 0
    draws = d * v.gather(1, first).squeeze(1).clamp_min(1e-12)
    if shape < 1:
        draws = draws * torch.rand(count, device=device, generator=generator) ** (1 / shape)
    return draws


def sample_beta(alpha: float, beta: float, count: int, generator: torch.Generator, device) -> torch.Tensor:
    """Beta(alpha, beta) as X / (X + Y) with X ~ Gamma(alpha), Y ~ Gamma(beta)."""
    x = sample_gamma(alpha, count, generator, device)
    y = sample_gamma(beta, count, generator, device)
    return x / (x + y)


class Mixup:
    """Mixup (Zhang et al. 2018): blend the batch with a shuffled copy of itself, images and one-hot targets
    alike, with one weight lambda ~ Beta(alpha, alpha) per batch."""

    def __init__(self, alpha: float = 1.0, num_classes: int | None = None):
        self.alpha = alpha
        self.num_classes = num_classes

    def fit(self, images: torch.Tensor, num_classes: int) -> Mixup:
        self.num_classes = num_classes
        return self

    def __call__(self, images: torch.Tensor, targets: torch.Tensor, generator: torch.Generator):
        weight = sample_beta(self.alpha, self.alpha, 1, generator, images.device)
        order = torch.randperm(len(images), device=images.device, generator=generator)
        images = to_unit_range(images)
        targets = _soft(targets, self.num_classes)
        mixed = torch.lerp(images[order], images, weight.view(1, 1, 1, 1))
        return mixed, torch.lerp(targets[order], targets, weight.view(1, 1))


class CutMix:
    """CutMix (Yun et al. 2019): paste a box from a shuffled copy of the batch into every image, the box's
    area a fraction 1 - lambda of the image with lambda ~ Beta(alpha, alpha) (one box per batch); targets
    are mixed by the box's actual area after clipping to the image."""

    def __init__(self, alpha: float = 1.0, num_classes: int | None = None):
        self.alpha = alpha
        self.num_classes = num_classes

    def fit(self, images: torch.Tensor, num_classes: int) -> CutMix:
        self.num_classes = num_classes
        return self

    def __call__(self, images: torch.Tensor, targets: torch.Tensor, generator: torch.Generator):
        _, _, height, width = images.shape
        device = images.device
        weight = sample_beta(self.alpha, self.alpha, 1, generator, device)
        order = torch.randperm(len(images), device=device, generator=generator)
        side = (1 - weight).sqrt()
        box_height, box_width = (side * height).round().long(), (side * width).round().long()
        centre = (
            torch.rand(2, device=device, generator=generator) * torch.tensor([height, width], device=device)
        ).long()
        top, left = (centre[0] - box_height // 2).clamp(0, height), (centre[1] - box_width // 2).clamp(0, width)
        bottom = (centre[0] - box_height // 2 + box_height).clamp(0, height)
        right = (centre[1] - box_width // 2 + box_width).clamp(0, width)
        rows, columns = torch.arange(height, device=device), torch.arange(width, device=device)
        box = ((rows >= top) & (rows < bottom))[:, None] & ((columns >= left) & (columns < right))[None, :]
        mixed = torch.where(box, images[order], images)
        kept = 1 - box.sum() / (height * width)
        targets = _soft(targets, self.num_classes)
        return mixed, torch.lerp(targets[order], targets, kept.to(targets.dtype))


class Compose:
    """Apply augmentations in the order the config lists them."""

    def __init__(self, augmentations):
        self.augmentations = list(augmentations)

    def fit(self, images: torch.Tensor, num_classes: int) -> Compose:
        for augmentation in self.augmentations:
            if hasattr(augmentation, "fit"):
                augmentation.fit(images, num_classes)
        return self

    def start_epoch(self, epoch: int, order: torch.Tensor, generator: torch.Generator) -> None:
        for augmentation in self.augmentations:
            if hasattr(augmentation, "start_epoch"):
                augmentation.start_epoch(epoch, order, generator)

    def __call__(self, images: torch.Tensor, targets: torch.Tensor, generator: torch.Generator):
        for augmentation in self.augmentations:
            images, targets = augmentation(images, targets, generator)
        return images, targets
