"""MNIST digits as tensors: read IDX files (or scikit-learn's 8x8 digits), pool, split 70/30, normalize.

Whatever image/label pairs a folder holds (train and/or t10k, ``.gz`` or not, torchvision's file names)
are pooled before a stratified, seeded 70/30 split, as the assignment asks. With none present, the
torchvision download is tried; without internet that fails naming ``mnist_dir``.
"""

from __future__ import annotations

import gzip
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from image_lineage.core.errors import LineageError

LOGGER = logging.getLogger(__name__)

PAIRS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "t10k": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # the usual MNIST normalization constants
SOURCES = ("idx", "sklearn-digits")


@dataclass
class DigitSplits:
    """Normalized float32 images (N, 784) and int64 labels, train and test, plus where they came from."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    source: str  # "mnist-idx:<pairs>" or "sklearn-digits"


def find_idx_file(folder: Path, stem: str) -> Path | None:
    for name in (stem, f"{stem}.gz"):
        for candidate in (folder / name, folder / "MNIST" / "raw" / name):
            if candidate.is_file():
                return candidate
    return None


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (images uint8 N x 28 x 28, or labels uint8 N), plain or gzip-compressed."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 8 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise LineageError(f"{path} is not an MNIST IDX file of unsigned bytes (bad magic number).")
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims))
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims)
    if array.size != int(np.prod(shape)):
        raise LineageError(f"{path}: header says {shape}, the file holds {array.size} values (truncated?).")
    return array.reshape(shape)


def read_pairs(folder: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Pool every complete image/label pair in ``folder``."""
    images, labels, found = [], [], []
    for name, (image_stem, label_stem) in PAIRS.items():
        image_file, label_file = find_idx_file(folder, image_stem), find_idx_file(folder, label_stem)
        if image_file and label_file:
            x, y = read_idx(image_file), read_idx(label_file)
            if len(x) != len(y):
                raise LineageError(f"{image_file} holds {len(x)} images but {label_file} {len(y)} labels.")
            images.append(x)
            labels.append(y)
            found.append(name)
    if not found:
        return np.empty((0, 28, 28), np.uint8), np.empty((0,), np.uint8), []
    return np.concatenate(images), np.concatenate(labels), found


def download_mnist(folder: Path) -> None:
    """torchvision's MNIST download into ``folder/MNIST/raw``; a clear error when it cannot."""
    from torchvision.datasets import MNIST

    try:
        MNIST(str(folder), train=True, download=True)
        MNIST(str(folder), train=False, download=True)
    except Exception as exc:  # urllib and torchvision raise several kinds here
        raise LineageError(
            f"no MNIST IDX files in mnist_dir={str(folder)!r} and the download failed ({type(exc).__name__}: "
            f"{exc}). Put the IDX files (e.g. t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte) there and pass "
            f"-P mnist_dir=<that folder>, or use -P mnist_source=sklearn-digits offline."
        ) from exc


def load_mnist_pool(mnist_dir: str | Path) -> tuple[np.ndarray, np.ndarray, str]:
    folder = Path(mnist_dir)
    images, labels, found = read_pairs(folder)
    if not found:
        LOGGER.info("no MNIST IDX files in %s: downloading with torchvision", folder)
        download_mnist(folder)
        images, labels, found = read_pairs(folder)
    return images, labels, "mnist-idx:" + "+".join(found)


def load_sklearn_digits() -> tuple[np.ndarray, np.ndarray, str]:
    """scikit-learn's bundled 8x8 digits (values 0..16) resized to 28x28 uint8: the offline stand-in."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    small = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    large = torch.nn.functional.interpolate(small, size=(28, 28), mode="bilinear", align_corners=False)
    return (large.squeeze(1).clamp(0, 1) * 255).round().to(torch.uint8).numpy(), digits.target.astype(np.uint8), "sklearn-digits"


def load_digits(source: str = "idx", mnist_dir: str | Path = "mnist_data", test_size: float = 0.3, seed: int = 42) -> DigitSplits:
    """Pool, split (stratified, seeded) and normalize; images flattened to 784 float32 values."""
    from sklearn.model_selection import train_test_split

    if source not in SOURCES:
        raise LineageError(f"mnist_source must be one of {', '.join(SOURCES)}, got {source!r}.")
    images, labels, origin = load_mnist_pool(mnist_dir) if source == "idx" else load_sklearn_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=test_size, stratify=labels, random_state=seed
    )
    return DigitSplits(normalize(x_train), torch.from_numpy(y_train.astype(np.int64)),
                       normalize(x_test), torch.from_numpy(y_test.astype(np.int64)), origin)


def normalize(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float32 (N, 784): scaled to [0, 1], then standardized."""
    scaled = torch.from_numpy(images.reshape(len(images), -1)).float().div_(255.0)
    return scaled.sub_(MNIST_MEAN).div_(MNIST_STD)
