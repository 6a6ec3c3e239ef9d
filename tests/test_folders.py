"""nnet.data.folders: a torchvision-style folder of class folders, written here as tiny PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nnet.data import folders
from nnet.data.folders import find_images, read_image, read_image_folder
from nnet.data.tables import DataFileError


def save(path: Path, pixels: np.ndarray, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=fmt)
    return path


@pytest.fixture
def pets(tmp_path) -> tuple[Path, dict[str, list[np.ndarray]]]:
    """dog/ (3 images, one in a sub-folder), cat/ (2), plus files that must be skipped."""
    rng = np.random.default_rng(0)
    root = tmp_path / "pets"
    made: dict[str, list[np.ndarray]] = {"cat": [], "dog": []}
    for name, files in {"dog": ["b.png", "a.PNG", "deep/c.png"], "cat": ["x.png", "y.bmp"]}.items():
        for f in files:
            px = rng.integers(0, 256, (4, 4), dtype=np.uint8)
            save(root / name / f, px)
            made[name].append(px)
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "cat" / "._x.png").write_bytes(b"AppleDouble junk")
    (root / ".hidden").mkdir()
    save(root / ".hidden" / "h.png", np.zeros((4, 4), np.uint8))
    return root, made


def test_reads_classes_sorted_pixels_exact(pets):
    root, made = pets
    t = read_image_folder(root, size=(4, 4))
    assert t.classes == ("cat", "dog") and t.task == "classification" and t.target == "class"
    assert t.y.tolist() == [0, 0, 1, 1, 1] and t.X.shape == (5, 16) and t.X.dtype == np.float64
    # Sorted by path within a class: a.PNG, b.png, then deep/c.png.
    expect = [made["cat"][0], made["cat"][1], made["dog"][1], made["dog"][0], made["dog"][2]]
    assert np.array_equal(t.X, np.array([e.reshape(-1) for e in expect]) / 255.0)
    assert t.feature_names[:2] == ("pixel0", "pixel1") and len(t.feature_names) == 16
    assert np.array_equal(read_image(root / "dog" / "a.PNG", size=(4, 4)), t.X[2])


def test_resize_and_rgb(pets):
    root, _ = pets
    t = read_image_folder(root)  # 28 x 28 gray by default
    assert t.X.shape == (5, 784) and 0 <= t.X.min() and t.X.max() <= 1
    t = read_image_folder(root, size=(3, 2), color="rgb")
    assert t.X.shape == (5, 18) and t.feature_names[:4] == (
        "pixel0_r",
        "pixel0_g",
        "pixel0_b",
        "pixel1_r",
    )
    # A gray image in RGB: the three values of each pixel are equal.
    assert np.array_equal(t.X[:, 0::3], t.X[:, 1::3]) and np.array_equal(t.X[:, 0::3], t.X[:, 2::3])
    img = save(root / "c.png", np.array([[[255, 0, 0], [0, 0, 255]]], np.uint8))
    assert read_image(img, size=(2, 1), color="rgb").tolist() == [1, 0, 0, 0, 0, 1]


def test_16_bit_gray_is_scaled_not_clipped(tmp_path):
    px = np.array([[0, 32768, 65535]], dtype=np.uint16)
    p = tmp_path / "g.png"
    Image.fromarray(px).save(p)
    assert read_image(p, size=(3, 1)).tolist() == [0, 128 / 255, 1]


def test_errors(tmp_path, pets, monkeypatch):
    root, _ = pets

    def err(path, **kw) -> str:
        with pytest.raises(DataFileError) as e:
            read_image_folder(path, **kw)
        assert "\n" not in str(e.value)
        return str(e.value)

    assert "does not exist" in err(tmp_path / "none")
    assert "is not a folder" in err(root / "cat" / "notes.txt")
    loose = tmp_path / "loose"
    save(loose / "1.png", np.zeros((2, 2), np.uint8))
    assert "has no class folders (the 1 images in it belong in them)" in err(loose)
    (root / "emu").mkdir()
    (root / "emu" / "readme.txt").write_text("x")
    msg = err(root, size=(4, 4))
    assert str(root / "emu") in msg and "holds no images" in msg
    (root / "emu" / "readme.txt").unlink()
    (root / "emu").rmdir()
    one = tmp_path / "one"
    save(one / "only" / "1.png", np.zeros((2, 2), np.uint8))
    assert "one class folder only ('only')" in err(one)
    bad = root / "dog" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    msg = err(root, size=(4, 4))
    assert str(bad) in msg and "cannot be read as an image" in msg
    bad.unlink()
    monkeypatch.setattr(folders, "MAX_IMAGES", 4)
    assert "more than 4 images" in err(root)
    monkeypatch.setattr(folders, "MAX_IMAGES", 100)
    assert "size must be" in err(root, size=(0, 28))
    assert "size must be" in err(root, size=(2.5, 28))
    assert "color must be" in err(root, color="cmyk")


def test_find_images_lists_paths_with_classes(pets):
    root, _ = pets
    images, classes = find_images(root)
    assert classes == ("cat", "dog")
    assert [(p.relative_to(root).as_posix(), k) for p, k in images] == [
        ("cat/x.png", 0), ("cat/y.bmp", 0), ("dog/a.PNG", 1), ("dog/b.png", 1),
        ("dog/deep/c.png", 1),
    ]  # fmt: skip
