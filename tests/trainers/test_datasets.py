"""Datasets on disk in torchvision's layout, image folders, channels and the data root: read
without torchvision, never downloaded, refused with a clear message when missing or unsafe."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from gentune.trainers.data import digits, load_image_dataset, resolve_data_dir
from gentune.trainers.grids import save_images
from gentune.trainers.vae import VAEParams, VAETrainer
from tests.trainers.contract import RecordingReporter


@pytest.fixture
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("GENTUNE_DATA_DIR", str(root))
    load_image_dataset.cache_clear()
    yield root
    load_image_dataset.cache_clear()


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        payload = gzip.compress(payload)
    path.write_bytes(payload)


def fake_mnist(root: Path, folder: str = "MNIST", compress: bool = False) -> np.ndarray:
    """60 training and 20 test 28x28 images whose brightness encodes their label."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    train_labels, test_labels = rng.integers(0, 10, 60), rng.integers(0, 10, 20)
    for stem, labels in (("train", train_labels), ("t10k", test_labels)):
        images = np.repeat(labels[:, None, None] * 25, 28, axis=1).repeat(28, axis=2)
        write_idx(raw / f"{stem}-images-idx3-ubyte", images, compress)
        write_idx(raw / f"{stem}-labels-idx1-ubyte", labels, compress)
    return train_labels


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
def test_mnist_files_load_at_any_size(data_root: Path, compress: bool) -> None:
    labels = fake_mnist(data_root, compress=compress)
    data = load_image_dataset("mnist", 16)
    assert data.train.shape == (60, 1, 16, 16) and data.held_out.shape == (20, 1, 16, 16)
    assert data.train_labels is not None and data.train_labels.tolist() == labels.tolist()
    expected = torch.from_numpy(labels * 25 / 127.5 - 1).float()
    assert torch.allclose(data.train[:, 0, 8, 8], expected, atol=1e-5)
    assert data.n_classes == int(labels.max()) + 1


def test_other_idx_datasets_use_their_torchvision_folders(data_root: Path) -> None:
    fake_mnist(data_root, folder="FashionMNIST")
    assert load_image_dataset("fashion_mnist", 32).train.shape == (60, 1, 32, 32)
    with pytest.raises(FileNotFoundError, match="KMNIST/raw/train-images-idx3-ubyte"):
        load_image_dataset("kmnist", 32)


def write_cifar_batch(path: Path, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)
    labels = rng.integers(0, 10, n).tolist()
    path.write_bytes(pickle.dumps({b"data": data, b"labels": labels, b"batch_label": b"x"}))
    return data


def test_cifar10_batches_load_as_colour_images(data_root: Path) -> None:
    folder = data_root / "cifar-10-batches-py"
    folder.mkdir()
    first = write_cifar_batch(folder / "data_batch_1", 8, 1)
    for i in range(2, 6):
        write_cifar_batch(folder / f"data_batch_{i}", 8, i)
    write_cifar_batch(folder / "test_batch", 4, 9)
    data = load_image_dataset("cifar10", 32)
    assert data.train.shape == (40, 3, 32, 32) and data.held_out.shape == (4, 3, 32, 32)
    pixels = torch.from_numpy(first[0].reshape(3, 32, 32)).float() / 127.5 - 1
    assert torch.allclose(data.train[0], pixels, atol=1e-6)
    grey = load_image_dataset("cifar10", 16, channels=1)
    assert grey.train.shape == (40, 1, 16, 16) and grey.fingerprint != data.fingerprint


class _Hostile:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo owned",))


def test_a_data_file_that_pickles_code_is_refused(data_root: Path) -> None:
    folder = data_root / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(pickle.dumps({b"data": _Hostile(), b"labels": []}))
    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
        load_image_dataset("cifar10", 32)


def test_missing_data_says_where_it_looked_and_that_nothing_downloads(data_root: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        load_image_dataset("mnist", 16)
    assert str(data_root / "MNIST" / "raw") in str(info.value)
    assert "never downloads" in str(info.value)


def test_data_dirs_stay_inside_the_data_root(data_root: Path) -> None:
    (data_root / "faces").mkdir()
    assert resolve_data_dir("faces") == data_root / "faces"
    for escaping in ("../elsewhere", "faces/../../x", "/etc"):
        with pytest.raises(ValueError, match="data root|relative"):
            resolve_data_dir(escaping)
    (data_root / "link").symlink_to(data_root.parent)
    with pytest.raises(ValueError, match="leaves the data root"):
        resolve_data_dir("link")


def test_image_folder_params_pick_random_features_and_refuse_domain(data_root: Path) -> None:
    save_images(digits(16).train[:30].numpy(), data_root / "mine")
    params = VAEParams.model_validate({"dataset": "image_folder", "data_dir": "mine"})
    assert params.feature_extractor == "random"
    data = params.image_data()
    assert data.train.shape[1:] == (3, 16, 16)  # folders load as RGB unless channels says 1
    assert "is" not in VAETrainer().reported_metrics(params)
    with pytest.raises(ValueError, match="has none; use random or inception"):
        VAEParams.model_validate(
            {"dataset": "image_folder", "data_dir": "mine", "features": "domain"}
        )
    with pytest.raises(ValueError, match="image_folder needs data_dir"):
        VAEParams.model_validate({"dataset": "image_folder"})
    with pytest.raises(ValueError, match="no folder 'other'"):
        VAEParams.model_validate({"dataset": "image_folder", "data_dir": "other"})


def test_a_trainer_runs_on_mnist_files_and_reports_their_fingerprint(data_root: Path) -> None:
    fake_mnist(data_root)
    params = VAETrainer().parse_params(
        {"dataset": "mnist", "image_size": 32, "epochs": 1, "eval_samples": 50, "width": 8}
    )
    reporter = RecordingReporter()
    VAETrainer().train(params, torch.device("cpu"), reporter)
    data = load_image_dataset("mnist", 32)
    assert reporter.run_info["dataset_fingerprint"] == data.fingerprint
    assert reporter.run_info["features"] == "domain"
    ((_, metrics),) = reporter.reports
    assert metrics["is"] > 0 and reporter.samples[0].shape[1:] == (1, 32, 32)
