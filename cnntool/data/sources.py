"""Where images come from: the registry of named data sets and class-per-folder trees.

Each source returns a RawData: class names plus train / val / test parts, each either arrays in
memory (small sets) or lists of files (folder sets). Splitting, resizing and normalisation happen
in ``cnntool.data.bundle``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from cnntool.data.formats import read_cifar_batch, read_cifar_images, read_idx
from cnntool.data.preprocess import is_image_file
from cnntool.errors import DataError
from cnntool.spec import class_name_problem

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


@dataclass
class ArrayPart:
    images: np.ndarray  # uint8 (N, C, H, W)
    labels: np.ndarray  # int64 (N,)


@dataclass
class FilePart:
    paths: list[str]
    labels: np.ndarray


Part = ArrayPart | FilePart


@dataclass
class RawData:
    name: str
    class_names: list[str]
    in_channels: int
    train: Part
    test: Part | None = None
    val: Part | None = None
    native_size: tuple[int, int] | None = None
    mean: list[float] | None = None  # known statistics, else computed on the training split
    std: list[float] | None = None
    extra: dict = field(default_factory=dict)


DATASETS: dict[str, Callable[..., RawData]] = {}


def register_dataset(name: str):
    def deco(fn):
        DATASETS[name] = fn
        return fn
    return deco


def default_data_dir() -> Path:
    return Path(os.environ.get("CNNTOOL_DATA_DIR", "data"))


def load_raw(data: str, data_dir: str | None, download: bool, min_classes: int = 2) -> RawData:
    """A registered name, or a path to a class-per-folder tree (``min_classes`` 1 for evaluation: a folder of
    some of a model's classes)."""
    if data in DATASETS:
        root = Path(data_dir) if data_dir else default_data_dir()
        return DATASETS[data](root=root, download=download)
    path = Path(data)
    if path.exists():
        if not path.is_dir():
            raise DataError(f"--data {data}: not a directory (expected a class-per-folder tree)")
        return image_folder(path, min_classes)
    raise DataError(f"--data {data!r}: neither a known data set ({', '.join(DATASETS)}) nor an existing directory")


# --------------------------------------------------------------------------- named data sets

@register_dataset("digits")
def digits(root: Path, download: bool) -> RawData:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, no download)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.rint(d.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[:, None]
    return RawData("digits", [str(c) for c in d.target_names], 1,
                   train=ArrayPart(images, d.target.astype(np.int64)), native_size=(8, 8))


def _fetch(what: str, root: Path, download: bool, expected: Path, fetch: Callable[[], None]) -> None:
    if expected.exists():
        return
    if not download:
        raise DataError(f"{what} not found at {expected}; pass --download to fetch it (needs internet) "
                        f"or --data-dir pointing at the folder that holds it")
    try:
        root.mkdir(parents=True, exist_ok=True)
        fetch()
    except Exception as e:  # noqa: BLE001 - network errors come in many types
        raise DataError(f"could not download {what} into {root} ({type(e).__name__}: {e}); "
                        f"download it by hand and pass --data-dir") from None
    if not expected.exists():
        raise DataError(f"download of {what} finished but {expected} is missing")


def _mnist_like(name: str, folder: str, tv_class: str, classes: list[str], mean: float, std: float):
    def load(root: Path, download: bool) -> RawData:
        raw = root / folder / "raw"

        def fetch():
            import torchvision.datasets as tvd
            getattr(tvd, tv_class)(str(root), train=True, download=True)
            getattr(tvd, tv_class)(str(root), train=False, download=True)

        def find(stem: str) -> Path:
            for cand in (raw / stem, raw / f"{stem}.gz"):
                if cand.exists():
                    return cand
            raise DataError(f"{name}: missing {raw / stem}")

        _fetch(name, root, download, raw, fetch)
        parts = []
        for prefix in ("train", "t10k"):
            x = read_idx(find(f"{prefix}-images-idx3-ubyte"))
            y = read_idx(find(f"{prefix}-labels-idx1-ubyte")).astype(np.int64)
            if x.ndim != 3 or len(x) != len(y):
                raise DataError(f"{name}: {prefix} images and labels do not match in {raw}")
            parts.append(ArrayPart(x.astype(np.uint8)[:, None], y))
        return RawData(name, classes, 1, train=parts[0], test=parts[1], native_size=(28, 28),
                       mean=[mean], std=[std])
    return load


register_dataset("mnist")(_mnist_like("mnist", "MNIST", "MNIST", [str(i) for i in range(10)], 0.1307, 0.3081))
register_dataset("fashion-mnist")(_mnist_like(
    "fashion-mnist", "FashionMNIST", "FashionMNIST",
    ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
    0.2860, 0.3530))


def _names(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


@register_dataset("cifar10")
def cifar10(root: Path, download: bool) -> RawData:
    base = root / "cifar-10-batches-py"

    def fetch():
        import torchvision.datasets as tvd
        tvd.CIFAR10(str(root), train=True, download=True)

    _fetch("CIFAR-10", root, download, base, fetch)
    meta = read_cifar_batch(base / "batches.meta")
    train = [read_cifar_images(base / f"data_batch_{i}") for i in range(1, 6)]
    test = read_cifar_images(base / "test_batch")
    return RawData("cifar10", _names(meta["label_names"]), 3,
                   train=ArrayPart(np.concatenate([t[0] for t in train]), np.concatenate([t[1] for t in train])),
                   test=ArrayPart(*test), native_size=(32, 32),
                   mean=[0.4914, 0.4822, 0.4465], std=[0.2470, 0.2435, 0.2616])


@register_dataset("cifar100")
def cifar100(root: Path, download: bool) -> RawData:
    base = root / "cifar-100-python"

    def fetch():
        import torchvision.datasets as tvd
        tvd.CIFAR100(str(root), train=True, download=True)

    _fetch("CIFAR-100", root, download, base, fetch)
    meta = read_cifar_batch(base / "meta")
    train = read_cifar_images(base / "train")
    test = read_cifar_images(base / "test")
    return RawData("cifar100", _names(meta["fine_label_names"]), 3,
                   train=ArrayPart(*train), test=ArrayPart(*test), native_size=(32, 32),
                   mean=[0.5071, 0.4865, 0.4409], std=[0.2673, 0.2564, 0.2762])


@register_dataset("imagenette")
def imagenette(root: Path, download: bool) -> RawData:
    """Imagenette (10 ImageNet classes), 160 px version; the official val split is our test split."""
    base = root / "imagenette2-160"

    def fetch():
        import torchvision.datasets as tvd
        tvd.Imagenette(str(root), split="train", size="160px", download=True)

    _fetch("Imagenette", root, download, base, fetch)
    import torchvision.datasets as tvd

    parts = {}
    for split in ("train", "val"):
        ds = tvd.Imagenette(str(root), split=split, size="160px")
        parts[split] = FilePart([str(p) for p, _ in ds._samples], np.array([y for _, y in ds._samples], np.int64))
        names = [c[0] for c in ds.classes]
    return RawData("imagenette", names, 3, train=parts["train"], test=parts["val"],
                   mean=IMAGENET_MEAN, std=IMAGENET_STD)


@register_dataset("inaturalist")
def inaturalist(root: Path, download: bool) -> RawData:
    """iNaturalist 2021 'train_mini' (10,000 species); the official validation set is our test split."""
    versions = {"train": "2021_train_mini", "test": "2021_valid"}

    def fetch():
        import torchvision.datasets as tvd
        for v in versions.values():
            tvd.INaturalist(str(root), version=v, download=True)

    _fetch("iNaturalist 2021", root, download, root / versions["train"], fetch)
    import torchvision.datasets as tvd

    parts = {}
    for split, version in versions.items():
        if not (root / version).exists():
            raise DataError(f"iNaturalist {version} not found under {root}; pass --download")
        ds = tvd.INaturalist(str(root), version=version, target_type="full")
        parts[split] = FilePart([os.path.join(ds.root, ds.all_categories[c], f) for c, f in ds.index],
                                np.array([c for c, _ in ds.index], np.int64))
    names = ds.all_categories
    return RawData("inaturalist", names, 3, train=parts["train"], test=parts["test"],
                   mean=IMAGENET_MEAN, std=IMAGENET_STD)


# --------------------------------------------------------------------------- class-per-folder trees

def image_folder(path: Path, min_classes: int = 2) -> RawData:
    """A class-per-folder tree, with train/ val/ test/ subfolders when present."""
    has_splits = (path / "train").is_dir()
    root = path / "train" if has_splits else path
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(f"{root}: no class folders found (expected one sub-folder per class)")
    if len(classes) < min_classes:
        raise DataError(f"{root}: only one class folder ({classes[0]}); a classifier needs at least two")
    for name in classes:  # refused now, not after training: the name goes into the spec, files and ONNX metadata
        why = class_name_problem(name)
        if why:
            raise DataError(f"{root / name!r}: a class folder name that {why} cannot be used as a class name; "
                            f"rename the folder")
    train = _scan(root, classes)
    parts = {}
    if has_splits:
        for split in ("val", "test"):
            if (path / split).is_dir():
                parts[split] = _scan(path / split, classes, require_all=False)
        for alias in ("valid", "validation"):
            if "val" not in parts and (path / alias).is_dir():
                parts["val"] = _scan(path / alias, classes, require_all=False)
    return RawData(path.name or str(path), classes, 3, train=train, val=parts.get("val"), test=parts.get("test"))


def _scan(root: Path, classes: list[str], require_all: bool = True) -> FilePart:
    present = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    unknown = sorted(set(present) - set(classes))
    if unknown:
        raise DataError(f"{root}: class folder {unknown[0]!r} is not among the training classes")
    paths, labels = [], []
    for idx, name in enumerate(classes):
        folder = root / name
        if not folder.is_dir():
            if require_all:
                raise DataError(f"{folder}: class folder missing")
            continue
        # hidden files (macOS ``._x.png`` AppleDouble, ``.x``) and anything under a hidden folder are skipped
        files = sorted(str(p) for p in folder.rglob("*")
                       if not any(part.startswith(".") for part in p.relative_to(folder).parts)
                       and p.is_file() and is_image_file(p))
        if not files:
            raise DataError(f"{folder}: class folder has no images")
        paths += files
        labels += [idx] * len(files)
    if not paths:
        raise DataError(f"{root}: no image files found")
    return FilePart(paths, np.array(labels, dtype=np.int64))
