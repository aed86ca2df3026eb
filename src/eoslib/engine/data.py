"""CIFAR-10 and Fashion-MNIST, as the edge-of-stability papers use them.

``load_cifar10`` and ``load_fashion_mnist`` return a :class:`Dataset`: float32 images of shape
``(n, H, W, C)`` (optionally standardised per channel or per pixel, with the subset's or the
whole training split's statistics), integer labels, and one-hot targets for the ½MSE loss. Subsets follow the papers: the first ``n`` examples, ``per_class`` examples of each
class, and/or a subset of ``classes`` (relabelled 0..k−1 in the order given).

Where the files come from, in order (the one used is recorded in ``Dataset.source``):

1. ``data_dir`` if given, else the folders in ``$EOSLIB_DATA`` (``os.pathsep``-separated). A folder
   may hold the canonical ``cifar-10-python.tar.gz``, the JPEG copy ``cifar10-images.tar.gz``, and
   the Fashion-MNIST IDX ``.gz`` files (directly or under ``fashion-mnist/``).
2. eoslib's cache (``$EOSLIB_CACHE``, default the user cache folder ``eoslib``).
3. The canonical download, verified by checksum with pooch, into that cache — unless
   ``download=False`` or ``$EOSLIB_OFFLINE`` is set.

Every file is checked against known checksums before it is read: a corrupt or truncated
archive raises :class:`DataError` and is never unpickled. Decoded splits are cached as ``.npz``
(keyed by the archive's checksum), so only the first load decodes.

The JPEG copy of CIFAR-10 (quality ≈ 75) differs from the canonical pixels by a few levels and
does not keep the canonical global order; its order here interleaves the classes (the i-th
image of every class, then the (i+1)-th), so "the first n" is class-balanced like the canonical
order approximately is. Within a class the copy keeps the canonical order, so its first n are the
first n/10 canonical images of every class, where the canonical first n hold the first k_c of
class c with k_c ≈ n/10 (not recoverable from the copy). ``Dataset.order`` says which order a
subset was taken in.

Cohen et al. (2021)'s conventions (``locuslab/edge-of-stability``, ``src/cifar.py``): pixels in
[0, 1], centred and divided by the **per-pixel** mean and standard deviation of all 50,000
training images, then the first n canonical images. Here: ``load_cifar10(n=n,
standardize="pixel", stats="train")`` (:data:`COHEN2021`).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import re
import struct
import tarfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
FASHION_MNIST_CLASSES = ("t-shirt/top", "trouser", "pullover", "dress", "coat",
                         "sandal", "shirt", "sneaker", "bag", "ankle boot")


class DataError(RuntimeError):
    """A data file is missing, corrupt, or not in the expected format."""


class Source(NamedTuple):
    """A file eoslib knows: its name, accepted checksums (``"sha256:…"`` / ``"md5:…"``),
    the canonical URL to download it from (``None``: local copies only), and its format."""

    filename: str
    hashes: tuple[str, ...]
    url: str | None
    kind: str  # "cifar-python" | "cifar-jpeg" | "idx"


_FMNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"


def _fmnist(name: str, md5: str, debian_sha256: str) -> Source:
    # The canonical .gz files (md5 from the dataset's README) and Debian's recompressed copies.
    return Source(f"{name}.gz", (f"md5:{md5}", f"sha256:{debian_sha256}"), _FMNIST_URL + f"{name}.gz", "idx")


#: Files eoslib can read, in the order they are looked for.
REGISTRY: dict[str, tuple[Source, ...]] = {
    "cifar10": (
        Source("cifar-10-python.tar.gz", ("md5:c58f30108f718f92721af3b95e74349a",),
               "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "cifar-python"),
        Source("cifar10-images.tar.gz",
               ("sha256:45b041e867f5a40f79bfde38d3dd1fd511103d50068c1afecf6445e25234d4db",),
               None, "cifar-jpeg"),
    ),
    "fashion-mnist/train-images": (_fmnist(
        "train-images-idx3-ubyte", "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7"),),
    "fashion-mnist/train-labels": (_fmnist(
        "train-labels-idx1-ubyte", "25c81989df183df01b3e8a0aad5dffbe",
        "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056"),),
    "fashion-mnist/test-images": (_fmnist(
        "t10k-images-idx3-ubyte", "bef4ecab320f06d8554ea6380940ec79",
        "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa"),),
    "fashion-mnist/test-labels": (_fmnist(
        "t10k-labels-idx1-ubyte", "bb300cfdad3c16e7a12a480ee83cd310",
        "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05"),),
}

_HOW_TO_GET = {
    "cifar10": "download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html",
    "fashion-mnist": ("download the four *-ubyte.gz files from "
                      "https://github.com/zalandoresearch/fashion-mnist (or `apt-get install "
                      "dataset-fashion-mnist` and point EOSLIB_DATA at the folder it installs)"),
}


#: Cohen et al. (2021)'s CIFAR-10 conventions as keyword arguments of :func:`load_cifar10`.
COHEN2021 = {"standardize": "pixel", "stats": "train"}

#: ``Dataset.order`` of each source kind: the order "the first n" are taken in.
ORDERS = {"cifar-python": "canonical", "cifar-jpeg": "class-interleaved", "idx": "canonical"}
_STANDARDIZE = (True, False, "channel", "pixel")


@dataclass(frozen=True)
class Dataset:
    """Images and labels of one split.

    Attributes:
      x: float32 images, shape ``(n, H, W, C)`` (CIFAR-10: 32×32×3; Fashion-MNIST: 28×28×1),
        in [0, 1] or standardised per channel.
      y: int32 labels in 0..k−1, shape ``(n,)``.
      classes: the names of the k classes, in label order.
      source: where the pixels came from (file name and checksum), for provenance.
      mean: the mean used to standardise, shape ``(C,)`` per channel or ``(H, W, C)`` per pixel
        (``None`` if not standardised).
      std: the standard deviation used to standardise, shaped as ``mean`` (or ``None``).
      order: the order the examples were taken in, ``"canonical"`` (the files' own) or
        ``"class-interleaved"`` (the CIFAR-10 JPEG copy; see the module docstring).
    """

    x: np.ndarray
    y: np.ndarray
    classes: tuple[str, ...]
    source: str
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    order: str = "canonical"

    @property
    def onehot(self) -> np.ndarray:
        """One-hot float32 targets, shape ``(n, k)``, the regression targets of the ½MSE loss."""
        return np.eye(len(self.classes), dtype=np.float32)[self.y]

    @property
    def x_flat(self) -> np.ndarray:
        """Images flattened to shape ``(n, H·W·C)`` for MLPs."""
        return self.x.reshape(len(self.x), -1)

    def __len__(self) -> int:
        return len(self.y)


# ----------------------------------------------------------------------------- file handling


def file_hash(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, hashes: Sequence[str]) -> str:
    """Check ``path`` against the accepted ``hashes``; return the matching one.

    Raises:
      DataError: no accepted checksum matches (a corrupt, truncated or unknown file).
    """
    seen = {}
    for expected in hashes:
        algorithm, _, value = expected.partition(":")
        if algorithm not in seen:
            seen[algorithm] = file_hash(path, algorithm)
        if seen[algorithm] == value.lower():
            return expected
    raise DataError(
        f"{path} does not match any known checksum ({', '.join(hashes)}); got "
        f"{', '.join(f'{a}:{v}' for a, v in seen.items())}. The file is corrupt, truncated or not "
        "the expected one: delete it and download it again. It was not read."
    )


def cache_dir() -> Path:
    """eoslib's cache folder: ``$EOSLIB_CACHE`` or the user cache folder ``eoslib``."""
    if os.environ.get("EOSLIB_CACHE"):
        return Path(os.environ["EOSLIB_CACHE"])
    import pooch

    return Path(pooch.os_cache("eoslib"))


def _search_dirs(data_dir: str | os.PathLike | None) -> list[Path]:
    if data_dir is not None:
        dirs = [Path(data_dir)]
    else:
        dirs = [Path(p) for p in os.environ.get("EOSLIB_DATA", "").split(os.pathsep) if p]
    return dirs + [cache_dir()]


def locate(
    dataset: str,
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    registry: dict[str, tuple[Source, ...]] = REGISTRY,
) -> tuple[Path, Source, str]:
    """Find (or download) a verified file for ``dataset`` (a key of ``registry``).

    Returns ``(path, source, checksum)``. Raises :class:`DataError` with instructions when nothing
    is found, or when a file found is corrupt.
    """
    if dataset not in registry:
        raise ValueError(f"dataset={dataset!r} is not one of {sorted(registry)}")
    subfolder = dataset.split("/")[0]
    dirs = _search_dirs(data_dir)
    for source in registry[dataset]:
        for folder in dirs:
            for candidate in (folder / source.filename, folder / subfolder / source.filename):
                if candidate.is_file():
                    return candidate, source, verify(candidate, source.hashes)
    offline = bool(os.environ.get("EOSLIB_OFFLINE")) or not download
    downloadable = [s for s in registry[dataset] if s.url]
    if downloadable and not offline:
        import pooch

        source = downloadable[0]
        try:
            path = Path(pooch.retrieve(source.url, known_hash=source.hashes[0],
                                       fname=source.filename, path=cache_dir() / subfolder,
                                       progressbar=False))
        except Exception as err:  # network errors, checksum mismatch
            raise DataError(
                f"could not download {source.filename} from {source.url}: {err}. "
                f"{_how_to(subfolder, dirs, registry[dataset])}"
            ) from err
        return path, source, verify(path, source.hashes)
    raise DataError(f"no {dataset} file found. {_how_to(subfolder, dirs, registry[dataset])}")


def _how_to(subfolder: str, dirs: Sequence[Path], sources: Sequence[Source]) -> str:
    names = " or ".join(s.filename for s in sources)
    where = ", ".join(str(d) for d in dirs)
    return (f"Looked for {names} in: {where}. To get it: {_HOW_TO_GET.get(subfolder, '')}, "
            "put it in a folder and set EOSLIB_DATA to that folder (or pass data_dir=); or allow "
            "eoslib to download it (unset EOSLIB_OFFLINE, download=True).")


# ----------------------------------------------------------------------------- format readers


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles the CIFAR-10 batches and nothing else: only numpy array reconstruction."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise DataError(f"refusing to unpickle {module}.{name}: not part of a CIFAR-10 batch")
        return super().find_class(module.replace("numpy.core", "numpy._core"), name)


def read_cifar_python_archive(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read the canonical ``cifar-10-python.tar.gz``: ``{split: (x uint8 (n,32,32,3), y uint8 (n,))}``.

    Call only on a verified file (:func:`verify`); the batches are pickles.
    """
    batches: dict[str, dict] = {}
    with tarfile.open(path, "r:gz") as tar:
        for member in tar.getmembers():
            name = Path(member.name).name
            if re.fullmatch(r"data_batch_[1-5]|test_batch", name):
                raw = tar.extractfile(member).read()
                batches[name] = _ArrayUnpickler(io.BytesIO(raw), encoding="bytes").load()
    expected = [f"data_batch_{i}" for i in range(1, 6)]
    if any(b not in batches for b in expected + ["test_batch"]):
        raise DataError(f"{path} lacks CIFAR-10 batches; found {sorted(batches)}")

    def stack(names):
        x = np.concatenate([np.asarray(batches[n][b"data"], np.uint8) for n in names])
        y = np.concatenate([np.asarray(batches[n][b"labels"], np.uint8) for n in names])
        return x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), y

    return {"train": stack(expected), "test": stack(["test_batch"])}


def read_cifar_jpeg_archive(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read the JPEG copy ``<split>/<class>/<name>.jpg``: ``{split: (x uint8 (n,32,32,3), y uint8)}``.

    Within a class, images keep their file-name order; classes are interleaved (see module doc).
    """
    from PIL import Image

    found: dict[str, dict[int, list[tuple[str, np.ndarray]]]] = {"train": {}, "test": {}}
    pattern = re.compile(r"(?:.*/)?(train|test)/([a-z]+)/([^/]+)\.(?:jpe?g|png)$")
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            match = pattern.match(member.name)
            if not member.isfile() or not match:
                continue
            split, cls, stem = match.groups()
            if cls not in CIFAR10_CLASSES:
                raise DataError(f"{path}: unknown class folder {cls!r} in {member.name}")
            with Image.open(tar.extractfile(member)) as img:
                pixels = np.asarray(img.convert("RGB"), dtype=np.uint8)
            if pixels.shape != (32, 32, 3):
                raise DataError(f"{path}: {member.name} has shape {pixels.shape}, not (32, 32, 3)")
            found[split].setdefault(CIFAR10_CLASSES.index(cls), []).append((stem, pixels))
    out = {}
    for split, by_class in found.items():
        if not by_class:
            raise DataError(f"{path} has no {split}/<class>/*.jpg images")
        order = []  # (rank within class, class, pixels)
        for label, items in by_class.items():
            items.sort(key=lambda item: item[0])
            order.extend((rank, label, px) for rank, (_, px) in enumerate(items))
        order.sort(key=lambda item: (item[0], item[1]))
        out[split] = (np.stack([px for _, _, px in order]),
                      np.array([label for _, label, _ in order], np.uint8))
    return out


def read_idx(path: Path) -> np.ndarray:
    """Read a (gzipped) IDX file of unsigned bytes, e.g. the Fashion-MNIST images / labels."""
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise DataError(f"{path} is not a readable IDX file: {err}") from err
    if len(raw) < 4:
        raise DataError(f"{path} is too short to be an IDX file ({len(raw)} bytes)")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise DataError(f"{path}: IDX magic {raw[:4].hex()} is not an unsigned-byte IDX file")
    shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    body = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DataError(f"{path}: header says shape {shape} but holds {body.size} values (truncated?)")
    return body.reshape(shape)


# ----------------------------------------------------------------------------- loaders


def _decoded(path: Path, checksum: str, kind: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Decode a verified CIFAR archive once; later calls read the ``.npz`` cache."""
    cached = cache_dir() / "decoded" / f"cifar10-{checksum.replace(':', '-')[:40]}.npz"
    if cached.is_file():
        with np.load(cached) as z:
            return {s: (z[f"{s}_x"], z[f"{s}_y"]) for s in ("train", "test")}
    reader = read_cifar_python_archive if kind == "cifar-python" else read_cifar_jpeg_archive
    splits = reader(path)
    cached.parent.mkdir(parents=True, exist_ok=True)
    # A name of this process's own: two processes decoding at once (pytest-xdist workers, a sweep's
    # jobs) must not write into one temporary file; the rename makes either result whole.
    tmp = cached.with_name(f"{cached.stem}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp.npz")
    np.savez(tmp, **{f"{s}_{k}": a for s, (x, y) in splits.items() for k, a in (("x", x), ("y", y))})
    tmp.replace(cached)
    return splits


def _select(x, y, names, n, per_class, classes, split):
    if n is not None and per_class is not None:
        raise ValueError(f"give n={n} or per_class={per_class}, not both")
    if classes is not None:
        idx = [names.index(c) if isinstance(c, str) and c in names else c for c in classes]
        bad = [c for c in idx if not isinstance(c, (int, np.integer)) or not 0 <= c < len(names)]
        if bad or len(set(idx)) != len(idx):
            raise ValueError(f"classes={list(classes)} must be distinct names or indices from {list(names)}")
        relabel = np.full(len(names), -1)
        relabel[idx] = np.arange(len(idx))  # the i-th class given becomes label i
        keep = relabel[y] >= 0
        x, y = x[keep], relabel[y[keep]]
        names = tuple(names[c] for c in idx)
    if per_class is not None:
        if per_class < 1:
            raise ValueError(f"per_class={per_class} must be ≥ 1")
        take = np.concatenate([np.nonzero(y == c)[0][:per_class] for c in range(len(names))])
        short = [names[c] for c in range(len(names)) if (y == c).sum() < per_class]
        if short:
            raise ValueError(f"per_class={per_class}: the {split} split has fewer for {short}")
        take.sort()
        x, y = x[take], y[take]
    if n is not None:
        if not 1 <= n <= len(y):
            raise ValueError(f"n={n} must be between 1 and {len(y)} (the {split} split's size)")
        x, y = x[:n], y[:n]
    return x, y.astype(np.int32), names


def _check_standardize(standardize, stats):
    if isinstance(standardize, np.ndarray) or not any(
            standardize is v or (isinstance(v, str) and standardize == v) for v in _STANDARDIZE):
        raise ValueError(f"standardize={standardize!r} is not allowed; allowed: True or 'channel' "
                         "(per channel), 'pixel' (per pixel), False")
    if isinstance(stats, str) and stats != "train":
        raise ValueError(f"stats={stats!r} is not allowed; allowed: None (the returned examples'), "
                         "'train' (the whole training split's) or a (mean, std) pair")


def pixel_stats(x_uint8: np.ndarray, axes: tuple[int, ...], block: int = 5000
                ) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of ``x_uint8 / 255`` over ``axes`` (0 for per pixel, (0, 1, 2)
    per channel), accumulated in float64 ``block`` images at a time (float32 sums over 50,000
    images drift by ~n·eps; a float64 copy of them would take 1.2 GB)."""
    total = total_sq = 0.0
    count = 0
    for lo in range(0, len(x_uint8), block):
        chunk = x_uint8[lo:lo + block].astype(np.float64) / 255.0
        total = total + chunk.sum(axis=axes)
        total_sq = total_sq + (chunk ** 2).sum(axis=axes)
        count += chunk.size // np.size(chunk.sum(axis=axes))
    mean = total / count
    return mean, np.sqrt(np.maximum(total_sq / count - mean ** 2, 0.0))


def _finish(x_uint8, y, names, source, standardize, stats, order="canonical", train_x=None):
    x = x_uint8.astype(np.float32) / 255.0
    mean = std = None
    if standardize:
        axes = 0 if standardize == "pixel" else (0, 1, 2)
        if isinstance(stats, str):  # "train": the whole training split's statistics
            stats = pixel_stats(train_x, axes)
        elif stats is None:
            stats = pixel_stats(x_uint8, axes)
        mean, std = (np.asarray(s, np.float32) for s in stats)
        x = (x - mean) / np.where(std > 0, std, 1)  # a constant channel (pixel) is only centred
    return Dataset(x=x, y=y, classes=names, source=source, mean=mean, std=std, order=order)


def _check_split(split):
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r} is not one of ['train', 'test']")


def load_cifar10(
    split: str = "train",
    *,
    n: int | None = None,
    per_class: int | None = None,
    classes: Sequence[str | int] | None = None,
    standardize: bool = True,
    stats: tuple[np.ndarray, np.ndarray] | None = None,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    registry: dict[str, tuple[Source, ...]] = REGISTRY,
) -> Dataset:
    """CIFAR-10 (Krizhevsky 2009), images ``(n, 32, 32, 3)``.

    Args:
      split: ``"train"`` (50,000) or ``"test"`` (10,000).
      n: keep the first ``n`` examples (after ``classes``), e.g. ``n=5000`` as in Cohen et al.
      per_class: keep the first ``per_class`` examples of each class (exclusive with ``n``).
      classes: keep these classes (names or indices), relabelled 0..k−1 in the order given.
      standardize: ``True`` or ``"channel"``: subtract the per-channel mean and divide by the
        per-channel std; ``"pixel"``: the same per pixel (each of the 32×32×3 values, as Cohen
        et al.); ``False``: pixels in [0, 1].
      stats: whose statistics standardise: ``None`` the returned examples', ``"train"`` the whole
        training split's (all 50,000 images, before any subset), or a ``(mean, std)`` pair (pass
        the training set's for a test set).
      data_dir, download, registry: where to look (see the module docstring).
    """
    _check_split(split)
    _check_standardize(standardize, stats)
    path, source, checksum = locate("cifar10", data_dir=data_dir, download=download, registry=registry)
    splits = _decoded(path, checksum, source.kind)
    x, y = splits[split]
    x, y, names = _select(x, y, CIFAR10_CLASSES, n, per_class, classes, split)
    return _finish(x, y, names, f"{path.name} ({checksum})", standardize, stats,
                   ORDERS[source.kind], splits["train"][0])


def load_fashion_mnist(
    split: str = "train",
    *,
    n: int | None = None,
    per_class: int | None = None,
    classes: Sequence[str | int] | None = None,
    standardize: bool = True,
    stats: tuple[np.ndarray, np.ndarray] | None = None,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    registry: dict[str, tuple[Source, ...]] = REGISTRY,
) -> Dataset:
    """Fashion-MNIST (Xiao et al. 2017), images ``(n, 28, 28, 1)``; arguments as :func:`load_cifar10`.

    The flatness-bias paper's setting is ``classes=[0, 1, 2, 3]`` (its App. K).
    """
    _check_split(split)
    _check_standardize(standardize, stats)
    files = {}
    for part in ("images", "labels"):
        path, _, checksum = locate(f"fashion-mnist/{split}-{part}", data_dir=data_dir,
                                   download=download, registry=registry)
        files[part] = (path, checksum)
    x = read_idx(files["images"][0])[..., None]
    y = read_idx(files["labels"][0])
    if len(x) != len(y):
        raise DataError(f"{len(x)} images but {len(y)} labels in the {split} split")
    x, y, names = _select(x, y, FASHION_MNIST_CLASSES, n, per_class, classes, split)
    source = f"{files['images'][0].name} ({files['images'][1]})"
    train_x = None
    if stats == "train":
        train_x = read_idx(locate("fashion-mnist/train-images", data_dir=data_dir,
                                  download=download, registry=registry)[0])[..., None]
    return _finish(x, y, names, source, standardize, stats, "canonical", train_x)


# ----------------------------------------------------------------------------- augmentation


def augment_static(ds: Dataset, copies: int, *, seed: int, pad: int = 4, block: int = 10_000
                   ) -> Dataset:
    """A fixed, augmented training set: ``copies`` random views of every image of ``ds``, as the
    flatness-bias paper's "10× augmented" CIFAR-10 (500,000 images from 50,000; its Table 1).

    Each view is the standard CIFAR pipeline's random crop and flip, drawn once: the image padded
    by ``pad`` pixels of black on every side (pixel value 0 before standardising; for a
    standardised ``ds`` that is ``−mean/std`` per channel), a random ``H × W`` window of the
    padded image (offsets uniform in ``0 … 2·pad`` on each axis), mirrored left–right with
    probability ½. Output example ``c·N + i`` is view ``c`` of image ``i`` (copy-major); labels
    are repeated, ``classes``, ``source``, ``mean`` and ``std`` kept. The same ``seed`` gives the
    same set.

    Memory: the result is ``copies·N`` float32 images: 500,000 CIFAR-10 images are 6.1 GB, held
    in host memory (and on the device when trained on). Views are cut ``block`` images at a time,
    so the padded copy never exceeds that many.

    Raises:
      ValueError: ``copies`` not an int ≥ 1, ``pad`` not an int ≥ 0, ``block`` not an int ≥ 1,
        or ``ds.x`` not ``(N, H, W, C)``.
    """
    for name, value, low in (("copies", copies, 1), ("pad", pad, 0), ("block", block, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"augment_static: {name}={value!r} is not allowed; allowed: an int "
                             f">= {low}")
    x = np.asarray(ds.x)
    if x.ndim != 4:
        raise ValueError(f"augment_static: ds.x must be images (N, H, W, C); got shape {x.shape}")
    n, h, w, c = x.shape
    black = np.zeros(c, np.float32)
    if ds.mean is not None and np.ndim(ds.mean) != 1:
        raise ValueError("augment_static: a per-pixel standardised ds has no one black value to "
                         "pad with; augment a per-channel (or unstandardised) set")
    if ds.mean is not None:
        std = np.where(np.asarray(ds.std) > 0, ds.std, 1)
        black = (-np.asarray(ds.mean, np.float32) / std).astype(np.float32)
    rng = np.random.default_rng(seed)
    out = np.empty((copies * n, h, w, c), np.float32)
    rows, cols = np.arange(h), np.arange(w)
    for k in range(copies):
        dy = rng.integers(0, 2 * pad + 1, n)
        dx = rng.integers(0, 2 * pad + 1, n)
        flip = rng.random(n) < 0.5
        for lo in range(0, n, block):
            hi = min(lo + block, n)
            padded = np.broadcast_to(black, (hi - lo, h + 2 * pad, w + 2 * pad, c)).copy()
            padded[:, pad:pad + h, pad:pad + w] = x[lo:hi]
            r = dy[lo:hi, None] + rows  # (b, H)
            q = dx[lo:hi, None] + cols  # (b, W)
            q = np.where(flip[lo:hi, None], q[:, ::-1], q)
            b = np.arange(hi - lo)[:, None, None]
            out[k * n + lo:k * n + hi] = padded[b, r[:, :, None], q[:, None, :]]
    return Dataset(x=out, y=np.tile(np.asarray(ds.y), copies), classes=ds.classes,
                   source=ds.source, mean=ds.mean, std=ds.std, order=ds.order)
