"""Data sets, splits, on-disk formats, preprocessing parity and batch augmentation."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from cnntool.config import DataConfig
from cnntool.data import augment
from cnntool.data.bundle import load_data, resolve_input_size
from cnntool.data.formats import read_cifar_batch, read_idx, write_idx
from cnntool.data.pipeline import BatchPipeline
from cnntool.data.preprocess import load_for_model, normalize, open_image
from cnntool.errors import DataError
from helpers import make_image_folder, write_cifar10, write_mnist


def test_digits_split_is_stratified_seeded_and_disjoint():
    a = load_data(DataConfig())
    b = load_data(DataConfig())
    assert a.sizes() == {"train": 1149, "val": 288, "test": 360}
    assert sum(a.sizes().values()) == 1797
    for name in ("train", "val", "test"):
        assert torch.equal(a.split(name).images, b.split(name).images)
    counts = torch.bincount(a.split("test").labels, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # ~36 per class: stratified
    assert a.in_channels == 1 and a.input_size == [8, 8] and a.num_classes == 10


def test_split_seed_changes_split_but_not_sizes():
    a = load_data(DataConfig(split_seed=0))
    b = load_data(DataConfig(split_seed=1))
    assert a.sizes() == b.sizes()
    assert not torch.equal(a.split("test").labels, b.split("test").labels) or \
        not torch.equal(a.split("test").images, b.split("test").images)


def test_train_stats_are_computed_on_train_split():
    d = load_data(DataConfig())
    x = d.split("train").images.double() / 255
    assert d.mean[0] == pytest.approx(x.mean().item(), rel=1e-6)
    assert d.std[0] == pytest.approx(x.std().item(), rel=1e-6)


def test_input_size_resolution():
    assert resolve_input_size(None, (8, 8), 8, 64) == [8, 8]
    assert resolve_input_size(None, (8, 8), 32, 64) == [32, 32]
    assert resolve_input_size(None, None, 8, 64) == [64, 64]
    assert resolve_input_size(20, (8, 8), 32, 64) == [20, 20]
    d = load_data(DataConfig(img_size=16))
    assert d.split("train").images.shape[1:] == (1, 16, 16)


def test_mnist_idx_files(tmp_path):
    write_mnist(tmp_path)
    d = load_data(DataConfig(data="mnist", data_dir=str(tmp_path)))
    assert d.sizes()["test"] == 20 and d.sizes()["train"] + d.sizes()["val"] == 60
    assert d.mean == [0.1307] and d.input_size == [28, 28]
    raw = read_idx(tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte")
    assert torch.equal(d.split("test").images[:, 0], torch.from_numpy(raw))


def test_idx_rejects_bad_header(tmp_path):
    bad = tmp_path / "x-idx3-ubyte"
    bad.write_bytes(b"\x00\x00\x08\x03" + (5).to_bytes(4, "big") + b"\x00" * 10)
    with pytest.raises(DataError, match="header says"):
        read_idx(bad)
    write_idx(tmp_path / "ok", np.arange(6, dtype=np.uint8).reshape(2, 3))
    assert read_idx(tmp_path / "ok").tolist() == [[0, 1, 2], [3, 4, 5]]


def test_cifar10_python_batches(tmp_path):
    write_cifar10(tmp_path, per_batch=20)
    d = load_data(DataConfig(data="cifar10", data_dir=str(tmp_path)))
    assert d.class_names[0] == "airplane" and d.in_channels == 3 and d.input_size == [32, 32]
    assert d.sizes()["test"] == 20 and d.sizes()["train"] + d.sizes()["val"] == 100


def test_hostile_cifar_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(DataError, match="not a CIFAR batch"):
        read_cifar_batch(path)
    assert not marker.exists()


def test_missing_named_dataset_says_download(tmp_path):
    with pytest.raises(DataError, match="--download"):
        load_data(DataConfig(data="mnist", data_dir=str(tmp_path)))


def test_image_folder_with_and_without_split_folders(tmp_path):
    flat = make_image_folder(tmp_path / "flat", per_class=10)
    d = load_data(DataConfig(data=str(flat)), default_size=24)
    assert d.class_names == ["cat", "dog", "fox"]
    assert sum(d.sizes().values()) == 30 and d.sizes()["test"] == 6
    split = make_image_folder(tmp_path / "split", per_class=5, splits=("train", "val", "test"))
    d = load_data(DataConfig(data=str(split), img_size=16))
    assert d.sizes() == {"train": 15, "val": 15, "test": 15}
    assert d.split("train").images.shape[1:] == (3, 16, 16)


def test_class_names_come_from_the_model(tmp_path):
    data = make_image_folder(tmp_path / "f", classes=("a", "b"), per_class=6)
    d = load_data(DataConfig(data=str(data)), default_size=24, class_names=["z", "b", "a"])
    assert d.class_names == ["z", "b", "a"]
    # every label now indexes the model's class list: 'a' -> 2, 'b' -> 1
    assert set(torch.cat([d.split(s).labels for s in ("train", "val", "test")]).tolist()) == {1, 2}
    with pytest.raises(DataError, match="does not know"):
        load_data(DataConfig(data=str(data)), default_size=24, class_names=["a"])


def test_large_folder_streams_through_dataloader(tmp_path, monkeypatch):
    import cnntool.data.bundle as bundle

    data = make_image_folder(tmp_path / "f", per_class=6)
    monkeypatch.setattr(bundle, "CACHE_LIMIT_BYTES", 10)
    d = load_data(DataConfig(data=str(data), workers=0), default_size=24)
    split = d.split("train")
    assert isinstance(split, bundle.FileSplit)
    x, y = next(iter(split.batches(4)))
    assert x.dtype == torch.uint8 and x.shape == (4, 3, 24, 24)
    monkeypatch.setattr(bundle, "CACHE_LIMIT_BYTES", 10**12)
    cached = load_data(DataConfig(data=str(data), workers=0), default_size=24).split("train")
    assert torch.equal(cached.images[:4], x)


@pytest.mark.parametrize("mode", ["P", "RGBA", "CMYK", "LA", "I;16", "L"])
def test_image_modes_convert(tmp_path, mode):
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (10, 12, 3), dtype=np.uint8))
    img = {"P": rgb.convert("P"), "RGBA": rgb.convert("RGBA"), "CMYK": rgb.convert("CMYK"),
           "LA": rgb.convert("LA"), "I;16": rgb.convert("L").convert("I;16"), "L": rgb.convert("L")}[mode]
    path = tmp_path / ("x.tif" if mode in ("CMYK", "I;16") else "x.png")
    img.save(path)
    for ch in (1, 3):
        out = open_image(path, ch)
        assert out.mode == ("L" if ch == 1 else "RGB") and out.size == (12, 10)


def test_transparent_pixels_become_white(tmp_path):
    img = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    img.save(tmp_path / "t.png")
    assert np.asarray(open_image(tmp_path / "t.png", 3)).min() == 255


def test_numpy_and_torch_preprocessing_agree(tmp_path):
    data = make_image_folder(tmp_path / "f", per_class=2, size=30)
    paths = sorted(str(p) for p in data.rglob("*.png"))
    mean, std = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
    arrays = np.stack([load_for_model(p, 3, [24, 20], crop_pct=0.875) for p in paths])
    assert arrays.shape == (6, 3, 24, 20)
    np_out = normalize(arrays, mean, std)
    torch_out = BatchPipeline(mean, std)(torch.from_numpy(arrays)).numpy()
    np.testing.assert_array_equal(np_out, torch_out)


# ----------------------------------------------------------------------------- augmentation

def _batch(n=8, c=3, h=12, w=12, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, c, h, w), dtype=np.uint8))


def test_random_crop_is_a_shifted_window_of_the_padded_image():
    x = _batch()
    out = augment.random_crop(x, 3, torch.Generator().manual_seed(1))
    padded = torch.nn.functional.pad(x, (3, 3, 3, 3))
    for i in range(len(x)):
        windows = [(dy, dx) for dy in range(7) for dx in range(7)
                   if torch.equal(padded[i, :, dy:dy + 12, dx:dx + 12], out[i])]
        assert windows, f"image {i} is not a crop of its padded original"


def test_hflip_flips_about_half_and_exactly():
    x = _batch(n=200, h=4, w=5)
    out = augment.hflip(x, torch.Generator().manual_seed(0))
    flipped = [torch.equal(out[i], x[i].flip(2)) for i in range(200)]
    kept = [torch.equal(out[i], x[i]) for i in range(200)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 70 < sum(flipped) < 130


def test_augmentations_are_reproducible_and_keep_shape_and_range():
    ops = {"crop_pad": 2, "hflip": True, "rotate": 20.0, "rrc": 0.4, "color_jitter": 0.3, "blur": 1.0,
           "noise": 0.05, "cutout": 4}
    x = _batch()
    a = augment.apply(x, ops, torch.Generator().manual_seed(5))
    b = augment.apply(x, ops, torch.Generator().manual_seed(5))
    c = augment.apply(x, ops, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (8, 3, 12, 12) and a.dtype == torch.float32
    assert a.min() >= 0 and a.max() <= 1


def test_cutout_blanks_a_square_of_the_requested_size():
    x = torch.zeros(50, 1, 20, 20)
    out = augment.cutout(x, 6, torch.Generator().manual_seed(0), fill=1.0)
    areas = out.flatten(1).sum(1)
    assert areas.max() == 36  # a full 6×6 square where it fits
    assert (areas > 0).all() and (areas <= 36).all()


def test_salt_and_pepper_rate():
    x = torch.full((4, 3, 50, 50), 0.5)
    out = augment.salt_and_pepper(x, 0.1, torch.Generator().manual_seed(0))
    changed = (out[:, 0] != 0.5).float().mean().item()
    assert 0.08 < changed < 0.12
    assert torch.equal(out[:, 0] != 0.5, out[:, 2] != 0.5)  # same pixels in every channel


def test_preset_and_flags_combine():
    cfg = DataConfig(augment="light", hflip=False, cutout=3)
    assert cfg.augmentations() == {"crop_pad": 2, "hflip": True, "cutout": 3}
    assert DataConfig().augmentations() == {}


def test_in_memory_images_resize_exactly_as_their_files(tmp_path):
    from cnntool.data.bundle import _resize_array

    images = np.random.default_rng(1).integers(0, 256, (3, 3, 20, 26), dtype=np.uint8)
    for i, img in enumerate(images):
        Image.fromarray(img.transpose(1, 2, 0)).save(tmp_path / f"{i}.png")
    for crop_pct, interp in ((1.0, "bilinear"), (0.875, "bicubic")):
        in_memory = _resize_array(images, [16, 16], crop_pct, interp)
        from_files = np.stack([load_for_model(tmp_path / f"{i}.png", 3, [16, 16], crop_pct, interp) for i in range(3)])
        np.testing.assert_array_equal(in_memory, from_files)


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp", ".tiff"])
def test_exif_orientation_is_applied(tmp_path, suffix):
    pixels = np.zeros((10, 20, 3), dtype=np.uint8)
    pixels[:, :5] = 255  # white band on the left of a landscape image
    img = Image.fromarray(pixels)
    exif = img.getexif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    path = tmp_path / f"rotated{suffix}"
    img.save(path, exif=exif, **({"quality": 95} if suffix in (".jpg", ".webp") else {}))
    out = np.asarray(open_image(path, 3))
    assert out.shape == (20, 10, 3)  # displayed upright: portrait
    assert out[:5].mean() > 200 and out[-5:].mean() < 50  # the band is now at the top
    with Image.open(path) as ref:  # Pillow's own reading of the orientation agrees
        assert np.asarray(ImageOps.exif_transpose(ref).convert("RGB")).shape == out.shape


def test_hidden_files_and_folders_are_not_training_images(tmp_path):
    from cnntool.data.sources import load_raw

    root = make_image_folder(tmp_path / "flat", per_class=4)
    src = root / "cat" / "cat_0.png"
    (root / "cat" / "._cat_0.png").write_bytes(b"\x00\x05\x16\x07AppleDouble")  # macOS resource fork
    (root / "dog" / ".hidden.png").write_bytes(src.read_bytes())
    (root / "fox" / ".thumbs" / "deep").mkdir(parents=True)
    (root / "fox" / ".thumbs" / "deep" / "t.png").write_bytes(src.read_bytes())
    (root / "fox" / "sub").mkdir()
    (root / "fox" / "sub" / "kept.png").write_bytes(src.read_bytes())
    raw = load_raw(str(root), None, download=False)
    names = sorted(os.path.relpath(p, root) for p in raw.train.paths)
    assert not any(part.startswith(".") for n in names for part in n.split(os.sep)), names
    assert len(names) == 13 and os.path.join("fox", "sub", "kept.png") in names
    d = load_data(DataConfig(data=str(root)), default_size=24)  # the AppleDouble file would not decode
    assert sum(d.sizes().values()) == 13
