"""Datasets, seeded splits, batched augmentation and batch iteration."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nasbench.data import (
    DATASETS,
    Augmentation,
    DatasetSplits,
    RawDataset,
    default_augmentation,
    iterate_batches,
    load_dataset,
    parse_spec,
)
from nasbench.data._partition import make_splits
from nasbench.errors import ConfigError, DataError, UnknownNameError

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CIFAR_JPG_TAR = SHARED_DATA / "cifar10" / "cifar10_test_jpg.tar.gz"


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _indexed_raw(n: int = 1000, classes: int = 5) -> RawDataset:
    """Images whose single pixel is their index, so splits can be checked for overlap."""
    images = torch.arange(n, dtype=torch.float32).reshape(n, 1, 1, 1)
    labels = torch.arange(n) % classes
    return RawDataset(parts={"all": (images, labels)}, num_classes=classes, source="test")


def _ids(x: torch.Tensor) -> set[int]:
    return {int(v) for v in x.flatten()}


def _split(raw: RawDataset, seed: int = 0, **kwargs: object) -> DatasetSplits:
    opts = {"val_fraction": 0.2, "test_fraction": 0.1, "limit": None} | kwargs
    return make_splits("t", raw, seed=seed, **opts)  # type: ignore[arg-type]


# --- splits -------------------------------------------------------------------------------


def test_splits_are_disjoint_complete_and_sized_by_fractions() -> None:
    s = _split(_indexed_raw(1000))
    train, val, test = _ids(s.train_x), _ids(s.val_x), _ids(s.test_x)
    assert (len(train), len(val), len(test)) == (700, 200, 100)
    assert not (train & val) and not (train & test) and not (val & test)
    assert train | val | test == set(range(1000))
    # stratified: each of the 5 classes has its share in every split
    assert s.val_y.bincount().tolist() == [40] * 5
    assert s.test_y.bincount().tolist() == [20] * 5


def test_same_seed_same_split_and_different_seed_different_split() -> None:
    raw = _indexed_raw(500)
    a, b, c = _split(raw, seed=3), _split(raw, seed=3), _split(raw, seed=4)
    assert torch.equal(a.val_x, b.val_x) and torch.equal(a.test_x, b.test_x)
    assert _ids(a.val_x) != _ids(c.val_x)


def test_limit_caps_every_split_with_a_stratified_subset() -> None:
    s = _split(_indexed_raw(1000), limit=50)
    assert len(s.train_y) == len(s.val_y) == len(s.test_y) == 50
    assert s.train_y.bincount().tolist() == [10] * 5


def test_official_parts_are_kept_and_val_is_carved_from_train() -> None:
    train = (torch.arange(100.0).reshape(100, 1, 1, 1), torch.arange(100) % 2)
    test = (torch.full((30, 1, 1, 1), 1000.0), torch.arange(30) % 2)
    s = _split(RawDataset({"train": train, "test": test}, 2, "t"), val_fraction=0.25)
    assert len(s.test_y) == 30 and _ids(s.test_x) == {1000}
    assert (len(s.train_y), len(s.val_y)) == (75, 25)
    assert _ids(s.train_x) | _ids(s.val_x) == set(range(100))


def test_bad_fractions_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="leave training data"):
        _split(_indexed_raw(), val_fraction=0.6, test_fraction=0.5)
    with pytest.raises(ConfigError, match="limit"):
        _split(_indexed_raw(), limit=0)


# --- built-in datasets and specs ------------------------------------------------------------


def test_digits_shapes_classes_and_range() -> None:
    s = load_dataset("digits", seed=0)
    assert s.input_shape == (1, 8, 8) and s.num_classes == 10
    assert len(s.train_y) + len(s.val_y) + len(s.test_y) == 1797
    assert len(s.val_y) == round(1797 * 0.2)
    assert s.train_x.dtype == torch.float32 and s.train_y.dtype == torch.int64
    assert 0.0 <= float(s.train_x.min()) and float(s.train_x.max()) <= 1.0
    assert torch.allclose(torch.tensor(s.mean), s.train_x.mean(dim=(0, 2, 3)), atol=1e-5)


def test_synthetic_is_seeded_and_balanced() -> None:
    a, b = load_dataset("synthetic", seed=1), load_dataset("synthetic", seed=1)
    assert a.input_shape == (3, 32, 32) and a.num_classes == 10
    assert len(a.train_y) + len(a.val_y) + len(a.test_y) == 2000
    assert torch.equal(a.train_x, b.train_x)
    assert not torch.equal(a.train_x, load_dataset("synthetic", seed=2).train_x)


@pytest.mark.parametrize("spec", ["digits:/x", "synthetic:/tmp", "cifar10:", "mnist:  ", ":path"])
def test_malformed_spec_raises_one_line_data_error(spec: str) -> None:
    with pytest.raises(DataError) as info:
        load_dataset(spec)
    assert "\n" not in str(info.value)


def test_unknown_dataset_lists_valid_names() -> None:
    with pytest.raises(UnknownNameError, match="cifar10"):
        load_dataset("imagenet")
    assert {"digits", "cifar10", "mnist", "fashion-mnist", "imagefolder", "synthetic"} <= set(
        DATASETS.names()
    )
    assert parse_spec(" CIFAR10:/a/b ") == ("cifar10", Path("/a/b"))


def test_default_augmentation_per_dataset() -> None:
    assert default_augmentation("cifar10:/some/path") == Augmentation(crop_padding=4, flip=True)
    assert default_augmentation("digits") == Augmentation(crop_padding=1)
    assert (
        not default_augmentation("mnist").flip and default_augmentation("mnist").crop_padding == 2
    )
    assert default_augmentation("fashion-mnist").flip
    assert not default_augmentation("synthetic").enabled


# --- augmentation ---------------------------------------------------------------------------


def test_augmentation_keeps_shape_dtype_and_input() -> None:
    x = torch.rand(16, 3, 10, 12)
    before = x.clone()
    out = Augmentation(crop_padding=3, flip=True, cutout=4)(x, _gen())
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(x, before)


def test_disabled_augmentation_is_identity() -> None:
    x = torch.rand(4, 3, 8, 8)
    assert not Augmentation.none().enabled and Augmentation(cutout=2).enabled
    assert torch.equal(Augmentation(crop_padding=0, flip=False)(x, _gen()), x)


def _shifted(img: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``img`` moved by (dy, dx) with zeros filling in: what a crop of a padded image gives."""
    out = torch.zeros_like(img)
    h, w = img.shape[-2:]
    out[:, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = img[
        :, max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)
    ]
    return out


def test_crop_only_shifts_content_within_the_padding() -> None:
    pad = 2
    x = torch.rand(32, 2, 6, 7) + 0.1  # no zeros, so padding is recognisable
    out = Augmentation(crop_padding=pad)(x, _gen(1))
    shifts = []
    for img, res in zip(x, out, strict=True):
        found = [
            (dy, dx)
            for dy in range(-pad, pad + 1)
            for dx in range(-pad, pad + 1)
            if torch.equal(_shifted(img, dy, dx), res)
        ]
        assert len(found) == 1
        shifts.append(found[0])
    assert len(set(shifts)) > 1  # offsets differ per image


def test_flip_flips_about_half_of_the_images() -> None:
    x = torch.rand(64, 3, 5, 5)
    out = Augmentation(flip=True)(x, _gen(2))
    flipped = [torch.equal(o, i.flip(2)) for o, i in zip(out, x, strict=True)]
    kept = [torch.equal(o, i) for o, i in zip(out, x, strict=True)]
    assert all(f != k for f, k in zip(flipped, kept, strict=True))
    assert 10 < sum(flipped) < 54


def test_cutout_zeroes_one_clipped_square_per_image() -> None:
    size = 6
    x = torch.ones(200, 3, 16, 16)
    out = Augmentation(cutout=size)(x, _gen(3))
    areas = set()
    for img in out:
        zero = img == 0
        assert torch.equal(zero[0], zero[1]) and torch.equal(zero[0], zero[2])  # all channels
        rows, cols = zero[0].any(dim=1), zero[0].any(dim=0)
        assert torch.equal(zero[0], rows[:, None] & cols[None, :])  # one rectangle
        h, w = int(rows.sum()), int(cols.sum())
        assert size // 2 <= h <= size and size // 2 <= w <= size  # clipped at most to half
        areas.add(h * w)
    assert size * size in areas and min(areas) < size * size  # inside and clipped both seen


def test_augmentation_is_deterministic_for_a_generator_seed() -> None:
    aug = Augmentation(crop_padding=4, flip=True, cutout=8)
    x = torch.rand(8, 3, 32, 32)
    assert torch.equal(aug(x, _gen(5)), aug(x, _gen(5)))
    assert not torch.equal(aug(x, _gen(5)), aug(x, _gen(6)))


def test_negative_augmentation_sizes_are_rejected() -> None:
    with pytest.raises(ConfigError, match="crop_padding"):
        Augmentation(crop_padding=-1)


# --- batch iteration ------------------------------------------------------------------------


def test_iterate_batches_covers_every_sample_once_per_epoch_and_keeps_pairs() -> None:
    y = torch.arange(103)
    x = y.float().reshape(-1, 1, 1, 1).expand(-1, 2, 3, 3).contiguous()
    batches = list(iterate_batches(x, y, 10, shuffle=True, generator=_gen()))
    assert [len(b[1]) for b in batches] == [10] * 10 + [3]
    labels = torch.cat([b[1] for b in batches])
    assert sorted(labels.tolist()) == list(range(103)) and labels.tolist() != list(range(103))
    for xb, yb in batches:
        assert torch.equal(xb[:, 0, 0, 0], yb.float())
    dropped = list(iterate_batches(x, y, 10, shuffle=False, drop_last=True))
    assert len(dropped) == 10 and torch.equal(torch.cat([b[1] for b in dropped]), y[:100])


def test_iterate_batches_is_deterministic_for_a_generator_seed() -> None:
    x, y = torch.rand(50, 3, 8, 8), torch.arange(50)
    aug = Augmentation(crop_padding=2, flip=True)

    def run(seed: int) -> list[torch.Tensor]:
        batches = iterate_batches(x, y, 16, shuffle=True, generator=_gen(seed), augmentation=aug)
        return [t for b in batches for t in b]

    assert all(torch.equal(a, b) for a, b in zip(run(1), run(1), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(run(1), run(2), strict=True))


def test_normalization_gives_zero_mean_unit_std_on_train() -> None:
    s = load_dataset("synthetic", seed=0)
    xb = torch.cat(
        [
            b[0]
            for b in iterate_batches(
                s.train_x, s.train_y, 256, shuffle=False, mean=s.mean, std=s.std
            )
        ]
    )
    assert torch.allclose(xb.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(xb.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-3)


def test_iterate_batches_rejects_misuse() -> None:
    x, y = torch.rand(4, 1, 2, 2), torch.arange(4)
    with pytest.raises(ValueError, match="Generator"):
        next(iterate_batches(x, y, 2, shuffle=True))
    with pytest.raises(ValueError, match="batch_size"):
        next(iterate_batches(x, y, 0, shuffle=False))
    with pytest.raises(ValueError, match="mean and std"):
        next(iterate_batches(x, y, 2, shuffle=False, mean=(0.5,)))


# --- CIFAR-10 pickle batches ---------------------------------------------------------------


def _write_cifar_batches(folder: Path, per_batch: int = 20) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        batch = {
            b"batch_label": name.encode(),
            b"labels": [int(v) for v in np.arange(per_batch) % 10],
            b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            b"filenames": [b"x.png"] * per_batch,
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))


def test_cifar_pickle_folder_uses_the_official_test_batch(tmp_path: Path) -> None:
    _write_cifar_batches(tmp_path / "cifar-10-batches-py")
    s = load_dataset(f"cifar10:{tmp_path}", val_fraction=0.2, seed=0)
    assert s.input_shape == (3, 32, 32) and s.num_classes == 10
    assert (len(s.train_y), len(s.val_y), len(s.test_y)) == (80, 20, 20)
    raw = pickle.loads((tmp_path / "cifar-10-batches-py" / "test_batch").read_bytes())
    first = torch.from_numpy(raw[b"data"][:, :1024].astype(np.float32) / 255)  # red plane
    assert {round(float(v), 5) for v in first.flatten()} == {
        round(float(v), 5) for v in s.test_x[:, 0].flatten()
    }


def test_cifar_pickle_tar_archive_loads(tmp_path: Path) -> None:
    _write_cifar_batches(tmp_path / "src" / "cifar-10-batches-py")
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    s = load_dataset(f"cifar10:{archive}")
    assert len(s.test_y) == 20 and len(s.train_y) + len(s.val_y) == 100


def test_cifar_pickle_that_runs_code_is_refused(tmp_path: Path) -> None:
    _write_cifar_batches(tmp_path)

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, ("echo hacked",))

    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    with pytest.raises(DataError, match="test_batch"):
        load_dataset(f"cifar10:{tmp_path}")


# --- image folders and archives -------------------------------------------------------------

_COLOURS = {"zebra": (250, 250, 250), "apple": (200, 20, 20), "mango": (20, 20, 200)}


def _write_images(root: Path, per_class: int = 6, size: tuple[int, int] = (8, 8)) -> None:
    for name, colour in _COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", size, colour).save(root / name / f"{i:04d}.jpg", quality=95)


def _assert_sorted_classes(s: DatasetSplits) -> None:
    """Label 0 is apple (red), 1 mango (blue), 2 zebra (white): sorted folder names."""
    x = torch.cat([s.train_x, s.val_x, s.test_x])
    y = torch.cat([s.train_y, s.val_y, s.test_y])
    for label, name in enumerate(sorted(_COLOURS)):
        expected = torch.tensor(_COLOURS[name], dtype=torch.float32) / 255
        assert torch.allclose(x[y == label].mean(dim=(0, 2, 3)), expected, atol=0.05)


def test_jpeg_folder_loads_with_sorted_class_order(tmp_path: Path) -> None:
    _write_images(tmp_path / "imgs")
    s = load_dataset(f"imagefolder:{tmp_path / 'imgs'}", val_fraction=1 / 3, test_fraction=1 / 3)
    assert s.num_classes == 3 and s.input_shape == (3, 8, 8)
    assert (len(s.train_y), len(s.val_y), len(s.test_y)) == (6, 6, 6)
    _assert_sorted_classes(s)


def test_jpeg_tar_archive_with_split_folder_loads(tmp_path: Path) -> None:
    _write_images(tmp_path / "data" / "test")
    archive = tmp_path / "imgs.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "data", arcname="data")  # wrapped: data/test/<class>/NNNN.jpg
    s = load_dataset(f"cifar10:{archive}", val_fraction=1 / 3, test_fraction=1 / 3)
    assert s.num_classes == 3 and len(s.train_y) + len(s.val_y) + len(s.test_y) == 18
    _assert_sorted_classes(s)


def test_train_and_test_folders_become_the_splits(tmp_path: Path) -> None:
    _write_images(tmp_path / "train", per_class=4)
    _write_images(tmp_path / "test", per_class=2)
    s = load_dataset(f"imagefolder:{tmp_path}", val_fraction=0.25)
    assert (len(s.train_y), len(s.val_y), len(s.test_y)) == (9, 3, 6)


def test_images_of_different_sizes_ask_for_a_resize(tmp_path: Path) -> None:
    _write_images(tmp_path)
    Image.new("RGB", (9, 8)).save(tmp_path / "apple" / "big.png")
    with pytest.raises(DataError, match="resize"):
        load_dataset(f"imagefolder:{tmp_path}")


@pytest.mark.skipif(
    not CIFAR_JPG_TAR.is_file(), reason=f"shared CIFAR-10 JPEGs absent: {CIFAR_JPG_TAR}"
)
def test_real_cifar10_jpeg_archive_loads_all_test_images() -> None:
    s = load_dataset(f"cifar10:{CIFAR_JPG_TAR}", seed=0)
    assert s.input_shape == (3, 32, 32) and s.num_classes == 10
    y = torch.cat([s.train_y, s.val_y, s.test_y])
    assert len(y) == 10_000 and y.bincount().tolist() == [1000] * 10
    assert (len(s.val_y), len(s.test_y)) == (2000, 2000)


# --- IDX (MNIST format) ---------------------------------------------------------------------


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_idx_folder(folder: Path, gz: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 50), ("t10k", 20)):
        files = {
            f"{prefix}-images-idx3-ubyte": _idx(rng.integers(0, 256, (n, 28, 28))),
            f"{prefix}-labels-idx1-ubyte": _idx(np.arange(n) % 10),
        }
        for name, data in files.items():
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (folder / name).write_bytes(data)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_folder_loads(tmp_path: Path, gz: bool) -> None:
    _write_idx_folder(tmp_path, gz=gz)
    s = load_dataset(f"fashion-mnist:{tmp_path}", val_fraction=0.2)
    assert s.input_shape == (1, 28, 28) and s.num_classes == 10
    assert (len(s.train_y), len(s.val_y), len(s.test_y)) == (40, 10, 20)


def test_idx_with_a_corrupted_magic_names_the_file(tmp_path: Path) -> None:
    _write_idx_folder(tmp_path, gz=False)
    bad = tmp_path / "t10k-labels-idx1-ubyte"
    bad.write_bytes(b"\x00\x00\x09\x01" + bad.read_bytes()[4:])
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.*magic"):
        load_dataset(f"mnist:{tmp_path}")


def test_idx_with_a_truncated_payload_is_rejected(tmp_path: Path) -> None:
    _write_idx_folder(tmp_path, gz=False)
    bad = tmp_path / "train-images-idx3-ubyte"
    bad.write_bytes(bad.read_bytes()[:-5])
    with pytest.raises(DataError, match="train-images-idx3-ubyte"):
        load_dataset(f"mnist:{tmp_path}")


# --- missing data ---------------------------------------------------------------------------


def test_missing_explicit_path_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    for name in ("cifar10", "mnist", "imagefolder"):
        with pytest.raises(DataError, match=str(missing)):
            load_dataset(f"{name}:{missing}")


def test_missing_default_locations_are_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NASBENCH_CIFAR10", str(tmp_path / "env-cifar"))
    with pytest.raises(DataError) as info:
        load_dataset("cifar10")
    message = str(info.value)
    assert str(tmp_path / "env-cifar") in message
    assert str(tmp_path / ".cache" / "nasbench" / "cifar10") in message
    assert "cifar10:PATH" in message
    monkeypatch.delenv("NASBENCH_MNIST", raising=False)
    with pytest.raises(DataError, match=r"\$NASBENCH_MNIST \(unset\)"):
        load_dataset("mnist")


def test_an_idx_folder_missing_several_files_names_every_one(tmp_path: Path) -> None:
    _write_idx_folder(tmp_path, gz=True)
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError) as info:
        load_dataset(f"mnist:{tmp_path}")
    message = str(info.value)
    assert "train-labels-idx1-ubyte" in message and "t10k-images-idx3-ubyte" in message
    assert "train-images" not in message and "t10k-labels" not in message and "\n" not in message
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="lacks 4 of the 4"):
        load_dataset(f"mnist:{empty}")


def test_fashion_mnist_default_folder_is_the_one_the_readme_and_the_error_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Debian's dataset-fashion-mnist installs the .gz files in /usr/share/datasets/fashion-mnist."""
    from nasbench.data._loaders import DEBIAN_FASHION_MNIST

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    datasets = " ".join(readme[readme.index("## Datasets"):readme.index("## Strategies")].split())
    assert f"`{DEBIAN_FASHION_MNIST}` (where Debian's `dataset-fashion-mnist` package installs" in datasets
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("NASBENCH_FASHION_MNIST", raising=False)
    if DEBIAN_FASHION_MNIST.exists():
        pytest.skip(f"{DEBIAN_FASHION_MNIST} is installed here: no error to check")
    with pytest.raises(DataError) as info:
        load_dataset("fashion-mnist")
    message = str(info.value)
    assert str(DEBIAN_FASHION_MNIST) in message and "apt-get install dataset-fashion-mnist" in message


def test_readme_describes_the_imagefolder_layout_the_loader_reads() -> None:
    from nasbench.data._images import _IMAGE_SUFFIXES, _SPLIT_NAMES

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    datasets = " ".join(readme[readme.index("## Datasets"):readme.index("## Strategies")].split())
    assert "`PATH/<class>/<image>`" in datasets and "`PATH/<split>/<class>/<image>`" in datasets
    for name in [*_SPLIT_NAMES, *_IMAGE_SUFFIXES]:
        assert f"`{name}`" in datasets, name
