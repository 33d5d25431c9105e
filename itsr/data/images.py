"""Image files (PNG, JPEG, BMP) to tensors, with Pillow: decode, grayscale or RGB, resize, [0, 1].

Used for training on a folder and for scoring new images, so both see the same preprocessing.
An unreadable or non-image file is skipped with a warning that names it, never fatal for a folder.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from itsr.errors import OptionError, check_choice

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
COLOR_MODES = {"gray": "L", "rgb": "RGB"}
PIXEL_MAX = 255.0  # 8-bit images
SIXTEEN_BIT_MAX = 65535.0  # 16-bit images (Pillow modes I;16*, and I as Pillow opens some 16-bit files)
HIGH_DEPTH_MODES = ("I", "F")  # besides I;16*: gray modes that Pillow's conversion to L would clip


@dataclass(frozen=True)
class Preprocessing:
    """How images become network inputs; saved with the model so scoring repeats it exactly."""

    size: tuple[int, int]  # (height, width)
    color: str  # "gray" or "rgb"
    resize: bool = True  # False: an image of another size is an error (the model never saw resized data)

    def __post_init__(self) -> None:
        check_choice("color", self.color, tuple(COLOR_MODES))
        size = list(self.size) if isinstance(self.size, (list, tuple)) else self.size
        if not isinstance(size, list) or len(size) != 2 or any(type(v) is not int or v < 1 for v in size):
            raise OptionError("size", "must be [height, width] of positive integers", size)
        object.__setattr__(self, "size", tuple(size))  # a config gives a list

    @property
    def input_dim(self) -> int:
        return self.size[0] * self.size[1] * (3 if self.color == "rgb" else 1)

    def to_dict(self) -> dict:
        return {"size": list(self.size), "color": self.color, "resize": self.resize}

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        return cls(tuple(int(v) for v in d["size"]), str(d["color"]), bool(d.get("resize", True)))


class ImageSizeError(ValueError):
    """An image's size does not match a model that was trained without resizing."""


MNIST_PREPROCESSING = Preprocessing((28, 28), "gray", resize=False)


def find_images(*inputs: str | Path) -> list[Path]:
    """Files given directly, and every file below given folders (nested allowed), sorted.

    Folders yield only files with an image suffix; a file named explicitly is taken as it is (it is
    skipped later if it does not decode). A missing input is an error naming it.
    """
    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found += sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif item.is_file():
            found.append(item)
        else:
            raise FileNotFoundError(f"{item}: no such file or folder")
    return found


def _high_depth_gray(image, path: Path) -> np.ndarray:
    """A 16-bit, 32-bit integer or float gray image as float32 [H, W] in [0, 1], scaled by its own
    bit depth: Pillow's conversion to L clips every value above 255 to white."""
    raw = np.asarray(image).astype(np.float64)
    if image.mode.startswith("I;16"):
        scale = SIXTEEN_BIT_MAX
    elif image.mode == "I":  # Pillow opens some 16-bit files as 32-bit "I"; wider ranges are refused
        if raw.size and (raw.min() < 0 or raw.max() > SIXTEEN_BIT_MAX):
            raise ValueError(
                f"{path}: 32-bit integer image (Pillow mode I) with values in [{raw.min():g}, {raw.max():g}]; "
                "only 8- and 16-bit images are read. Save it as an 8- or 16-bit PNG."
            )
        scale = SIXTEEN_BIT_MAX
    else:  # "F": floats carry no bit depth; take them only if they already are intensities in [0, 1]
        if raw.size and not (np.isfinite(raw).all() and raw.min() >= 0.0 and raw.max() <= 1.0):
            raise ValueError(
                f"{path}: floating-point image (Pillow mode F) with values outside [0, 1]; save it as an 8- or "
                "16-bit PNG"
            )
        scale = 1.0
    return (raw / scale).astype(np.float32)


def load_image(path: Path, prep: Preprocessing) -> np.ndarray:
    """One image as float32 [C*H*W] in [0, 1] (channels first for RGB).

    8-bit modes (1, L, P, LA, PA, RGB, RGBA, CMYK, YCbCr, ...) go through Pillow's conversion; 16-bit,
    32-bit integer and float gray images are scaled by their bit depth; a mode Pillow cannot convert is
    refused by name."""
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        if image.size != (prep.size[1], prep.size[0]) and not prep.resize:
            raise ImageSizeError(
                f"{path}: image is {image.size[1]}x{image.size[0]} (height x width), the model takes "
                f"{prep.size[0]}x{prep.size[1]} and was trained without resizing; resize the image, or train "
                "on your own images with dataset=folder dataset.size=[H,W]"
            )
        target = (prep.size[1], prep.size[0])
        if image.mode.startswith("I;16") or image.mode in HIGH_DEPTH_MODES:
            array = _high_depth_gray(image, path)
            if image.size != target:
                array = np.asarray(Image.fromarray(array).resize(target, Image.Resampling.BILINEAR))
            if prep.color == "rgb":
                array = np.repeat(array[None], 3, axis=0)
            return np.clip(array, 0.0, 1.0).reshape(-1)
        try:
            image = image.convert(COLOR_MODES[prep.color])
        except (ValueError, OSError) as error:
            raise ValueError(
                f"{path}: Pillow mode {image.mode} cannot be read as {prep.color} ({error}); save it as PNG"
            ) from None
        if image.size != target:
            image = image.resize(target, Image.Resampling.BILINEAR)
        array = np.asarray(image, dtype=np.float32) / PIXEL_MAX
    if array.ndim == 3:
        array = array.transpose(2, 0, 1)
    return array.reshape(-1)


def load_images(paths: list[Path], prep: Preprocessing, progress: bool = False):
    """(tensor [N, C*H*W], kept paths, skipped [(path, reason)])."""
    rows, kept, skipped = [], [], []
    iterator = paths
    if progress:
        from tqdm import tqdm

        iterator = tqdm(paths, desc="reading images", unit="img", leave=False)
    for path in iterator:
        try:
            rows.append(load_image(path, prep))
            kept.append(path)
        except ImageSizeError:
            raise
        except Exception as error:  # Pillow raises many types for bad files; skip and say which
            reason = f"{type(error).__name__}: {error}"
            log.warning("skipped %s: not a readable image (%s)", path, reason)
            skipped.append((path, reason))
    x = torch.from_numpy(np.stack(rows)) if rows else torch.empty(0, prep.input_dim)
    return x, kept, skipped


__all__ = ["Preprocessing", "MNIST_PREPROCESSING", "find_images", "load_image", "load_images"]
