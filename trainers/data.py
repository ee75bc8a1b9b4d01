"""Datasets for the trainers: 2-D Gaussian mixtures sampled afresh for every batch, and images
(scikit-learn's digits, MNIST-style and CIFAR-10 files already on disk in torchvision's
layout, a folder of the user's images) split into training and held-out parts. Nothing is
ever downloaded.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import math
import os
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.nn import functional as F

from gentune.trainers import DATA_DIR_ENV


@dataclass(frozen=True)
class GaussianMixture2D:
    """Equal-weight isotropic Gaussian mixture in the plane, the usual mode-collapse probe."""

    name: str
    means: torch.Tensor  # (k, 2)
    std: float

    @property
    def n_modes(self) -> int:
        return int(self.means.shape[0])

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` points: a uniformly chosen mode plus Gaussian noise of ``std``."""
        idx = torch.randint(0, self.n_modes, (n,), generator=generator)
        noise = torch.randn(n, 2, generator=generator) * self.std
        return self.means[idx] + noise


def ring8() -> GaussianMixture2D:
    """8 modes equally spaced on the unit circle, std 0.01 (as in PacGAN and VEEGAN)."""
    angles = torch.arange(8, dtype=torch.float32) * (2 * math.pi / 8)
    means = torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    return GaussianMixture2D("ring8", means, 0.01)


def grid25() -> GaussianMixture2D:
    """25 modes on the grid {-4, -2, 0, 2, 4}^2, std 0.05 (as in PacGAN and VEEGAN)."""
    coords = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
    xs, ys = torch.meshgrid(coords, coords, indexing="ij")
    means = torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1)
    return GaussianMixture2D("grid25", means, 0.05)


MIXTURES = {"ring8": ring8, "grid25": grid25}


def gaussian_mixture(name: str) -> GaussianMixture2D:
    """The named mixture; ``name`` must be a key of ``MIXTURES`` (checked by the param model)."""
    return MIXTURES[name]()


# --- image datasets -------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageData:
    """Images in [-1, 1], shape (N, C, H, W), split into a training and a held-out part."""

    name: str
    train: torch.Tensor
    held_out: torch.Tensor
    train_labels: torch.Tensor | None
    held_out_labels: torch.Tensor | None
    fingerprint: str
    """Content hash of images and labels: equal fingerprints mean the same data."""

    @property
    def channels(self) -> int:
        return int(self.train.shape[1])

    @property
    def size(self) -> int:
        return int(self.train.shape[-1])

    @property
    def n_classes(self) -> int | None:
        return None if self.train_labels is None else int(self.train_labels.max()) + 1


def _fingerprint(name: str, *tensors: torch.Tensor | None) -> str:
    digest = hashlib.sha256(name.encode())
    for tensor in tensors:
        if tensor is not None:
            digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _split(
    name: str,
    images: torch.Tensor,
    labels: torch.Tensor | None,
    held_out_fraction: float,
    seed: int,
) -> ImageData:
    order = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(seed))
    n_held = int(round(images.shape[0] * held_out_fraction))
    held, train = order[:n_held], order[n_held:]
    return ImageData(
        name=name,
        train=images[train],
        held_out=images[held],
        train_labels=None if labels is None else labels[train],
        held_out_labels=None if labels is None else labels[held],
        fingerprint=_fingerprint(f"{name}:{held_out_fraction}:{seed}", images, labels),
    )


@functools.lru_cache(maxsize=8)
def digits(size: int = 16, held_out_fraction: float = 0.2, seed: int = 0) -> ImageData:
    """scikit-learn's 1,797 handwritten digits (8x8, shipped with the package), upsampled.

    Bilinear upsampling to ``size`` pixels, scaled to [-1, 1]; a seeded split keeps
    ``held_out_fraction`` of the images apart for evaluation.
    """
    from sklearn.datasets import load_digits

    raw = load_digits()
    images = torch.from_numpy(raw.images).float().unsqueeze(1) / 16.0
    if size != 8:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    images = (images.clamp(0, 1) * 2 - 1).contiguous()
    labels = torch.from_numpy(raw.target).long()
    return _split(f"digits{size}", images, labels, held_out_fraction, seed)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def image_folder(
    path: str | Path, size: int, channels: int = 3, held_out_fraction: float = 0.1, seed: int = 0
) -> ImageData:
    """Every image under ``path`` (recursively), resized to ``size`` x ``size``, in [-1, 1]."""
    from PIL import Image

    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) < 2:
        raise ValueError(f"image folder {root} holds {len(files)} images; at least 2 are needed")
    mode = "L" if channels == 1 else "RGB"
    arrays = []
    for file in files:
        with Image.open(file) as image:
            resized = image.convert(mode).resize((size, size), Image.Resampling.BICUBIC)
            arrays.append(np.asarray(resized, dtype=np.uint8).reshape(size, size, channels))
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return _split(f"folder:{root.name}:{size}", images.contiguous(), None, held_out_fraction, seed)


# --- datasets kept on disk in torchvision's layout (read here; torchvision is not needed) ---

IDX_LAYOUTS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "kmnist": "KMNIST"}
"""Datasets torchvision stores as IDX files under ``<root>/<folder>/raw/``."""
CIFAR10_FOLDER = "cifar-10-batches-py"
LabelledSplits = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
"""Train images, train labels, test images, test labels (images as uint8 tensors)."""


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST format), plain or gzipped, as an array of unsigned bytes."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    zero, dtype_code, ndim = data[0:2], data[2], data[3]
    if zero != b"\x00\x00" or dtype_code != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != math.prod(shape):
        raise ValueError(f"{path} holds {body.size} bytes where its header promises {shape}")
    return body.reshape(shape)


def _idx_file(folder: Path, stem: str, dataset: str) -> Path:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{dataset}: {folder / stem} (or .gz) is missing. gentune never downloads data: "
        f"fetch the dataset once with torchvision (root=<data dir>, download=True) where there "
        f"is internet, or copy its files there, then set data_dir to that root"
    )


def idx_dataset(name: str, root: Path) -> LabelledSplits:
    """Train and test images (N, 1, 28, 28, uint8) and labels of an IDX-format dataset."""
    raw = root / IDX_LAYOUTS[name] / "raw"
    parts = [
        torch.from_numpy(_read_idx(_idx_file(raw, stem, name)).copy())
        for stem in (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        )
    ]
    train, train_labels, test, test_labels = parts
    return train[:, None], train_labels.long(), test[:, None], test_labels.long()


class _CifarUnpickler(pickle.Unpickler):
    """Reads CIFAR's pickled batches but refuses any object other than plain data and arrays."""

    ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")
        return super().find_class(module, name)


def cifar10_dataset(root: Path) -> LabelledSplits:
    """Train and test images (N, 3, 32, 32, uint8) and labels of CIFAR-10's python batches."""
    folder = root / CIFAR10_FOLDER

    def load(names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = [], []
        for name in names:
            path = folder / name
            if not path.is_file():
                raise FileNotFoundError(
                    f"cifar10: {path} is missing. gentune never downloads data: fetch CIFAR-10 "
                    "once with torchvision (root=<data dir>, download=True) where there is "
                    "internet, or copy cifar-10-batches-py there, then set data_dir to that root"
                )
            with path.open("rb") as handle:
                batch = _CifarUnpickler(handle, encoding="bytes").load()
            images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.append(np.asarray(batch[b"labels"], dtype=np.int64))
        return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))

    train, train_labels = load([f"data_batch_{i}" for i in range(1, 6)])
    test, test_labels = load(["test_batch"])
    return train, train_labels, test, test_labels


def _to_unit_range(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 images to float in [-1, 1] at ``size`` x ``size`` (area-aware when shrinking)."""
    result = images.float() / 127.5 - 1.0
    if result.shape[-1] != size:
        result = F.interpolate(
            result, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
    return result.clamp(-1, 1).contiguous()


# --- choosing a dataset by name -------------------------------------------------------------

ImageDatasetName = Literal["digits", "mnist", "fashion_mnist", "kmnist", "cifar10", "image_folder"]
LABELLED_DATASETS = frozenset({"digits", "mnist", "fashion_mnist", "kmnist", "cifar10"})
DATASET_CHANNELS = {"digits": 1, "mnist": 1, "fashion_mnist": 1, "kmnist": 1, "cifar10": 3}


def data_root() -> Path:
    """Where datasets kept on disk are looked up: ``GENTUNE_DATA_DIR``, default ``./data``."""
    return Path(os.environ.get(DATA_DIR_ENV) or "data").resolve()


def resolve_data_dir(relative: str | None) -> Path:
    """``relative`` inside the data root; a path that would leave the root is refused."""
    root = data_root()
    if relative is None:
        return root
    if Path(relative).is_absolute():
        raise ValueError(
            f"data_dir must be relative to the data root ({DATA_DIR_ENV}), got {relative!r}"
        )
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise ValueError(f"data_dir {relative!r} leaves the data root ({DATA_DIR_ENV})")
    return path


def with_channels(data: ImageData, channels: int | None) -> ImageData:
    """``data`` converted to grey (1 channel, ITU-R 601 luma) or RGB (3, repeated)."""
    if channels is None or channels == data.channels:
        return data

    def convert(images: torch.Tensor) -> torch.Tensor:
        if channels == 3:
            return images.repeat(1, 3, 1, 1)
        luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        return (images * luma).sum(dim=1, keepdim=True)

    train, held_out = convert(data.train), convert(data.held_out)
    name = f"{data.name}:c{channels}"
    return ImageData(
        name=name,
        train=train,
        held_out=held_out,
        train_labels=data.train_labels,
        held_out_labels=data.held_out_labels,
        fingerprint=_fingerprint(name, train, held_out, data.train_labels),
    )


@functools.lru_cache(maxsize=4)
def load_image_dataset(
    name: str, size: int, data_dir: str | None = None, channels: int | None = None
) -> ImageData:
    """The image dataset ``name`` at ``size`` pixels, from the data root where it lives on disk.

    ``digits`` ships with scikit-learn; ``mnist``, ``fashion_mnist``, ``kmnist`` and
    ``cifar10`` are read from torchvision's on-disk layout under ``data_dir`` (their train
    split for training, their test split held out); ``image_folder`` reads every image under
    ``data_dir``. Nothing is downloaded: a missing file raises ``FileNotFoundError`` saying
    where it was looked for.
    """
    if name == "digits":
        data = digits(size)
    elif name == "image_folder":
        if data_dir is None:
            raise ValueError("the image_folder dataset needs data_dir: the folder of images")
        data = image_folder(resolve_data_dir(data_dir), size, channels or 3)
    elif name in IDX_LAYOUTS or name == "cifar10":
        root = resolve_data_dir(data_dir)
        loader = cifar10_dataset if name == "cifar10" else functools.partial(idx_dataset, name)
        train, train_labels, test, test_labels = loader(root)
        train, test = _to_unit_range(train, size), _to_unit_range(test, size)
        data = ImageData(
            name=f"{name}{size}",
            train=train,
            held_out=test,
            train_labels=train_labels,
            held_out_labels=test_labels,
            fingerprint=_fingerprint(f"{name}{size}", train, test, train_labels, test_labels),
        )
    else:
        raise ValueError(f"unknown image dataset {name!r}")
    return with_channels(data, channels)
