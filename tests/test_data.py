"""Data loaders on small synthetic archives in the real formats (and on the real data when present)."""

import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from eoslib.engine import data
from eoslib.engine.data import DataError, Source


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Every test gets its own cache and no data folders from the environment."""
    monkeypatch.setenv("EOSLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("EOSLIB_DATA", raising=False)
    monkeypatch.setenv("EOSLIB_OFFLINE", "1")


def sha256(path):
    return "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_idx(path, array):
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def colour(label, rank):
    """A flat test image whose colour encodes (label, rank), robust to JPEG compression."""
    return np.full((32, 32, 3), [20 * label + 10, 40 * rank + 10, 200 - 25 * rank - 5 * label], np.uint8)


def write_jpeg_archive(path, n_per_class=3, labels=(0, 3)):
    with tarfile.open(path, "w:gz") as tar:
        for split in ("train", "test"):
            for label in labels:
                for rank in range(n_per_class):
                    buf = io.BytesIO()
                    Image.fromarray(colour(label, rank)).save(buf, format="JPEG", quality=95)
                    info = tarfile.TarInfo(f"{split}/{data.CIFAR10_CLASSES[label]}/{rank:04d}.jpg")
                    info.size = buf.tell()
                    buf.seek(0)
                    tar.addfile(info, buf)


def write_python_archive(path, per_batch=4, payload=None):
    rng = np.random.default_rng(1)
    with tarfile.open(path, "w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            batch = {b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                     b"labels": [int(v) for v in rng.integers(0, 10, per_batch)]}
            raw = payload if payload is not None else pickle.dumps(batch, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))


def registry_for(cifar_path=None, kind="cifar-jpeg", fmnist_dir=None):
    reg = dict(data.REGISTRY)
    if cifar_path is not None:
        reg["cifar10"] = (Source(Path(cifar_path).name, (sha256(cifar_path),), None, kind),)
    if fmnist_dir is not None:
        for split, prefix in (("train", "train"), ("test", "t10k")):
            for part, suffix in (("images", "idx3"), ("labels", "idx1")):
                name = f"{prefix}-{part}-{suffix}-ubyte.gz"
                reg[f"fashion-mnist/{split}-{part}"] = (
                    Source(name, (sha256(Path(fmnist_dir) / name),), None, "idx"),)
    return reg


# ----------------------------------------------------------------------------- readers


def test_read_idx_roundtrip_and_corruption(tmp_path):
    arr = np.arange(2 * 3 * 4).reshape(2, 3, 4) % 256
    write_idx(tmp_path / "x.gz", arr)
    np.testing.assert_array_equal(data.read_idx(tmp_path / "x.gz"), arr)
    # truncated body
    raw = gzip.decompress((tmp_path / "x.gz").read_bytes())
    (tmp_path / "short.gz").write_bytes(gzip.compress(raw[:-5]))
    with pytest.raises(DataError, match="truncated"):
        data.read_idx(tmp_path / "short.gz")
    # wrong magic
    (tmp_path / "bad.gz").write_bytes(gzip.compress(b"\x01\x02\x03\x04" + raw[4:]))
    with pytest.raises(DataError, match="magic"):
        data.read_idx(tmp_path / "bad.gz")


def test_read_cifar_jpeg_archive_interleaves_classes(tmp_path):
    write_jpeg_archive(tmp_path / "c.tar.gz")
    splits = data.read_cifar_jpeg_archive(tmp_path / "c.tar.gz")
    x, y = splits["train"]
    assert x.shape == (6, 32, 32, 3) and x.dtype == np.uint8
    assert list(y) == [0, 3, 0, 3, 0, 3]  # rank 0 of each class, then rank 1, ...
    for img, label, rank in zip(x, y, [0, 0, 1, 1, 2, 2]):
        assert np.abs(img.astype(int) - colour(label, rank)).max() <= 3  # JPEG, quality 95


def test_read_cifar_python_archive_layout(tmp_path):
    write_python_archive(tmp_path / "p.tar.gz")
    splits = data.read_cifar_python_archive(tmp_path / "p.tar.gz")
    x, y = splits["train"]
    assert x.shape == (20, 32, 32, 3) and y.shape == (20,)
    assert splits["test"][0].shape == (4, 32, 32, 3)
    # rows are channel-major (3×1024): pixel (0, 0) of channel c is row[c*1024]
    with tarfile.open(tmp_path / "p.tar.gz") as tar:
        first = pickle.loads(tar.extractfile("cifar-10-batches-py/data_batch_1").read())
    np.testing.assert_array_equal(x[0, 0, 0], first[b"data"][0, [0, 1024, 2048]])


def test_python_archive_refuses_foreign_pickles(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    write_python_archive(tmp_path / "evil.tar.gz", payload=pickle.dumps(Evil()))
    with pytest.raises(DataError, match="refusing to unpickle"):
        data.read_cifar_python_archive(tmp_path / "evil.tar.gz")


# ----------------------------------------------------------------------------- loaders


def test_load_cifar10_from_jpeg_archive_with_subsets(tmp_path):
    archive = tmp_path / "data" / "c.tar.gz"
    archive.parent.mkdir()
    write_jpeg_archive(archive, n_per_class=4, labels=(0, 3, 5))
    reg = registry_for(archive)
    ds = data.load_cifar10(data_dir=archive.parent, registry=reg, standardize=False)
    assert len(ds) == 12 and ds.x.dtype == np.float32 and 0 <= ds.x.min() and ds.x.max() <= 1
    assert ds.onehot.shape == (12, 10) and ds.x_flat.shape == (12, 3072)
    assert "sha256:" in ds.source
    assert len(data.load_cifar10(data_dir=archive.parent, registry=reg, n=5)) == 5
    per = data.load_cifar10(data_dir=archive.parent, registry=reg, per_class=2, classes=[0, 3, 5])
    assert np.bincount(per.y).tolist() == [2, 2, 2]
    sub = data.load_cifar10(data_dir=archive.parent, registry=reg, classes=["dog", "airplane"])
    assert sub.classes == ("dog", "airplane") and sorted(set(sub.y.tolist())) == [0, 1]
    assert np.all(sub.x[sub.y == 0][..., 0].mean() > sub.x[sub.y == 1][..., 0].mean())  # dogs redder
    std = data.load_cifar10(data_dir=archive.parent, registry=reg)
    np.testing.assert_allclose(std.x.mean(axis=(0, 1, 2), dtype=np.float64), 0, atol=1e-5)
    # the decoded split is cached, keyed by the archive's checksum
    assert list((Path(os.environ["EOSLIB_CACHE"]) / "decoded").glob("cifar10-sha256-*.npz"))


def test_load_cifar10_python_archive(tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    write_python_archive(archive)
    ds = data.load_cifar10("test", data_dir=tmp_path, registry=registry_for(archive, "cifar-python"))
    assert ds.x.shape == (4, 32, 32, 3)


def test_cohen2021_conventions_standardise_per_pixel_with_the_training_split(tmp_path):
    """Cohen et al.'s src/cifar.py: x/255, minus the per-pixel mean of all training images,
    over their per-pixel std; then the first n canonical images (issue 32)."""
    archive = tmp_path / "cifar-10-python.tar.gz"
    write_python_archive(archive, per_batch=6)
    reg = registry_for(archive, "cifar-python")
    raw = data.read_cifar_python_archive(archive)["train"][0].astype(np.float64) / 255
    mean, std = raw.mean(axis=0), raw.std(axis=0)  # per pixel over all 30 training images
    ds = data.load_cifar10(n=7, data_dir=tmp_path, registry=reg, **data.COHEN2021)
    assert ds.order == "canonical" and ds.mean.shape == (32, 32, 3) and len(ds) == 7
    np.testing.assert_allclose(ds.x, ((raw[:7] - mean) / std).astype(np.float32), rtol=1e-5,
                               atol=1e-5)
    # the subset's own per-channel statistics (the old default) give other pixels
    own = data.load_cifar10(n=7, data_dir=tmp_path, registry=reg)
    assert own.mean.shape == (3,) and np.abs(own.x - ds.x).max() > 0.01
    # per pixel with the subset's statistics: each pixel of the 7 is centred
    sub = data.load_cifar10(n=7, data_dir=tmp_path, registry=reg, standardize="pixel")
    np.testing.assert_allclose(sub.x.mean(axis=0, dtype=np.float64), 0, atol=1e-5)
    # a test split standardised with the training split's statistics
    test = data.load_cifar10("test", data_dir=tmp_path, registry=reg, **data.COHEN2021)
    np.testing.assert_allclose(test.mean, mean.astype(np.float32), rtol=1e-6)
    for bad in ({"standardize": "global"}, {"stats": "test"}):
        with pytest.raises(ValueError, match="is not allowed"):
            data.load_cifar10(data_dir=tmp_path, registry=reg, **bad)
    with pytest.raises(ValueError, match="per-pixel"):
        data.augment_static(ds, 1, seed=0)


def test_jpeg_copy_says_its_first_n_are_class_interleaved(tmp_path):
    archive = tmp_path / "c.tar.gz"
    write_jpeg_archive(archive, n_per_class=4, labels=(0, 3, 5))
    ds = data.load_cifar10(n=6, data_dir=tmp_path, registry=registry_for(archive), **data.COHEN2021)
    assert ds.order == "class-interleaved" and ds.y.tolist() == [0, 3, 5, 0, 3, 5]
    assert ds.mean.shape == (32, 32, 3)  # from all 12 training images, not the 6


def test_truncated_archive_is_rejected_before_reading(tmp_path, monkeypatch):
    archive = tmp_path / "cifar-10-python.tar.gz"
    write_python_archive(archive)
    reg = registry_for(archive, "cifar-python")
    archive.write_bytes(archive.read_bytes()[:-100])  # truncate after registering its checksum
    monkeypatch.setattr(data, "read_cifar_python_archive",
                        lambda path: pytest.fail("a corrupt archive must never be unpickled"))
    with pytest.raises(DataError, match="does not match any known checksum"):
        data.load_cifar10(data_dir=tmp_path, registry=reg)


def test_missing_data_says_how_to_get_it(tmp_path):
    with pytest.raises(DataError) as err:
        data.load_cifar10(data_dir=tmp_path, download=False)
    message = str(err.value)
    assert "cifar-10-python.tar.gz" in message and "EOSLIB_DATA" in message and "cifar.html" in message
    with pytest.raises(DataError, match="fashion-mnist"):
        data.load_fashion_mnist(data_dir=tmp_path, download=False)


def test_load_fashion_mnist_from_idx_files(tmp_path):
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 40), ("t10k", 10)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    reg = registry_for(fmnist_dir=folder)
    ds = data.load_fashion_mnist(data_dir=tmp_path, registry=reg, classes=[0, 1, 2, 3])
    assert ds.x.shape == (16, 28, 28, 1) and ds.classes[:2] == ("t-shirt/top", "trouser")
    test = data.load_fashion_mnist("test", data_dir=tmp_path, registry=reg, stats=(ds.mean, ds.std))
    assert len(test) == 10 and test.mean is ds.mean


@pytest.mark.parametrize("kwargs, fragment", [
    ({"split": "valid"}, "split="), ({"n": 0}, "n=0"), ({"n": 5, "per_class": 1}, "not both"),
    ({"classes": ["cat", "cat"]}, "classes="), ({"classes": [11]}, "classes="),
    ({"per_class": 9}, "fewer"),
])
def test_bad_arguments_name_the_parameter(tmp_path, kwargs, fragment):
    archive = tmp_path / "c.tar.gz"
    write_jpeg_archive(archive)
    split = kwargs.pop("split", "train")
    with pytest.raises(ValueError, match=fragment):
        data.load_cifar10(split, data_dir=tmp_path, registry=registry_for(archive), **kwargs)


# ----------------------------------------------------------------------------- real data


def shared_data():
    folder = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return folder if folder.is_dir() else None


@pytest.mark.skipif(shared_data() is None, reason="../shared/data is not beside the checkout")
def test_real_fashion_mnist_checksums_and_shapes():
    ds = data.load_fashion_mnist(data_dir=shared_data(), classes=[0, 1, 2, 3], download=False)
    assert ds.x.shape == (24000, 28, 28, 1) and np.bincount(ds.y).tolist() == [6000] * 4


@pytest.mark.skipif(shared_data() is None or not (shared_data() / "cifar10-images.tar.gz").exists(),
                    reason="the CIFAR-10 JPEG archive is not in ../shared/data")
def test_real_cifar10_5k():
    ds = data.load_cifar10(data_dir=shared_data(), n=5000, download=False)
    assert ds.x.shape == (5000, 32, 32, 3) and np.bincount(ds.y).tolist() == [500] * 10
    assert "cifar10-images.tar.gz" in ds.source
