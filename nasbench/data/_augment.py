"""Batched, on-device data augmentation: random crop, horizontal flip, cutout.

Every transform works on a whole NCHW batch at once with index arithmetic, so it runs
where the batch lives (CPU or GPU) without a Python loop over images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nasbench.errors import ConfigError

__all__ = ["Augmentation", "default_augmentation"]


@dataclass(frozen=True)
class Augmentation:
    """Standard CNN training augmentation applied to a batch.

    Args:
        crop_padding: Zero-pad each side by this many pixels, then crop back to the
            original size at a random offset (0 disables).
        flip: Flip each image horizontally with probability 0.5.
        cutout: Side of a square zeroed at a uniformly random centre, clipped at the
            image border (0 disables).

    Example:
        >>> aug = Augmentation(crop_padding=4, flip=True)
        >>> gen = torch.Generator().manual_seed(0)
        >>> aug(torch.rand(8, 3, 32, 32), gen).shape
        torch.Size([8, 3, 32, 32])
    """

    crop_padding: int = 0
    flip: bool = False
    cutout: int = 0

    def __post_init__(self) -> None:
        if self.crop_padding < 0 or self.cutout < 0:
            raise ConfigError(
                f"crop_padding and cutout must be >= 0, got {self.crop_padding} and {self.cutout}"
            )

    @classmethod
    def none(cls) -> Augmentation:
        """The identity augmentation."""
        return cls()

    @property
    def enabled(self) -> bool:
        """Whether any transform is active."""
        return self.crop_padding > 0 or self.flip or self.cutout > 0

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augment a batch.

        Args:
            x: Images, shape (N, C, H, W).
            generator: Source of randomness; must live on ``x.device`` (a CPU generator
                for CPU tensors, ``torch.Generator(device="cuda")`` for CUDA ones).

        Returns:
            A new tensor of the same shape, dtype and device (``x`` is not modified).
        """
        if x.dim() != 4:
            raise ValueError(f"expected an NCHW batch, got shape {tuple(x.shape)}")
        if not self.enabled or x.shape[0] == 0:
            return x
        if self.crop_padding > 0:
            x = _random_crop(x, self.crop_padding, generator)
        if self.flip:
            x = _random_flip(x, generator)
        if self.cutout > 0:
            x = _cutout(x, self.cutout, generator)
        return x


def _random_crop(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad by ``pad`` and crop each image back at its own random offset."""
    n, c, h, w = x.shape
    dev = x.device
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    offsets = torch.randint(0, 2 * pad + 1, (2, n), generator=generator, device=dev)
    rows = offsets[0][:, None] + torch.arange(h, device=dev)  # (N, H)
    cols = offsets[1][:, None] + torch.arange(w, device=dev)  # (N, W)
    batch = torch.arange(n, device=dev)[:, None, None, None]
    chan = torch.arange(c, device=dev)[None, :, None, None]
    return padded[batch, chan, rows[:, None, :, None], cols[:, None, None, :]]


def _random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip each image left-right with probability 0.5."""
    mask = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5
    return torch.where(mask[:, None, None, None], x.flip(3), x)


def _cutout(x: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Zero a ``size``×``size`` square per image, centred uniformly, clipped at borders."""
    n, _, h, w = x.shape
    dev = x.device
    cy = torch.randint(0, h, (n,), generator=generator, device=dev)
    cx = torch.randint(0, w, (n,), generator=generator, device=dev)
    y0, x0 = cy - size // 2, cx - size // 2
    rows = torch.arange(h, device=dev)[None, :]
    cols = torch.arange(w, device=dev)[None, :]
    in_rows = (rows >= y0[:, None]) & (rows < (y0 + size)[:, None])  # (N, H)
    in_cols = (cols >= x0[:, None]) & (cols < (x0 + size)[:, None])  # (N, W)
    hole = in_rows[:, :, None] & in_cols[:, None, :]  # (N, H, W)
    return x.masked_fill(hole[:, None], 0)


_DEFAULTS: dict[str, Augmentation] = {
    "cifar10": Augmentation(crop_padding=4, flip=True),
    "imagefolder": Augmentation(crop_padding=4, flip=True),
    "digits": Augmentation(crop_padding=1),
    "mnist": Augmentation(crop_padding=2),
    "fashion-mnist": Augmentation(crop_padding=2, flip=True),
    "synthetic": Augmentation(),
}


def default_augmentation(dataset_name: str) -> Augmentation:
    """The usual training augmentation for a dataset (``NAME`` or ``NAME:PATH``).

    Digits are not flipped (a flipped digit is another symbol); unknown names get none.
    """
    name = dataset_name.split(":", 1)[0].strip().lower()
    return _DEFAULTS.get(name, Augmentation())
