"""nnet.data.preprocess: arbitrary pictures -> MNIST-style 28x28 inputs, the way MNIST was made.

Center-of-mass convention (the one nnet.data.preprocess documents): pixel [r, c] sits at (r, c),
no half-pixel offset. Measured this way on the 10,000 MNIST test digits, the mean center of
mass is (13.99, 14.01) (row, column) with standard deviation 0.29 in each coordinate, i.e.
MNIST's digits were shifted by whole pixels towards (14, 14) (a uniform rounding error on
[-0.5, 0.5] has std 0.289). test_mnist_center_of_mass_convention re-measures it.
"""

from __future__ import annotations

import io
import pathlib
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from nnet.data.idx import read_idx
from nnet.data.preprocess import MIN_CONTRAST, load_image, to_mnist
from nnet.errors import NnetError

N_DIGITS = 1000  # MNIST test digits read for the statistics (the first 20 for round trips)


# ----------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def mnist(mnist_dir: Path) -> np.ndarray:
    """The first N_DIGITS MNIST test images, uint8 (N, 28, 28)."""
    return read_idx(mnist_dir / "mnist" / "t10k-images-idx3-ubyte.gz")[:N_DIGITS]


def com(img: np.ndarray) -> np.ndarray:
    """Center of mass (row, column), pixel [r, c] at (r, c)."""
    r = np.arange(img.shape[0])
    c = np.arange(img.shape[1])
    m = img.sum()
    return np.array([r @ img.sum(axis=1), c @ img.sum(axis=0)]) / m


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def aligned_corr(a: np.ndarray, b: np.ndarray) -> float:
    """Best correlation over shifts of a by at most one pixel each way.

    MNIST's own integer centering leaves each digit up to half a pixel off (14, 14); a
    re-rendered digit can round the other way, a one-pixel shift of the same picture.
    """
    return max(corr(np.roll(a, (dy, dx), axis=(0, 1)), b) for dy in (-1, 0, 1) for dx in (-1, 0, 1))


def save_png(path: Path, gray: np.ndarray) -> Path:
    """Save a [0, 1] grayscale array as an 8-bit PNG."""
    Image.fromarray(np.round(gray * 255).astype(np.uint8)).save(path)
    return path


def on_grey_canvas(digit: np.ndarray) -> np.ndarray:
    """An MNIST digit drawn black on a light grey 200x300 (w x h) canvas, 7x larger."""
    big = Image.fromarray(255 - digit).resize((196, 196), Image.Resampling.BICUBIC)
    canvas = Image.new("L", (200, 300), 255)
    canvas.paste(big, (2, 60))
    return np.asarray(canvas, dtype=np.float64) / 255 * 0.85  # background 0.85, ink 0


def check_mnist_like(out: np.ndarray) -> None:
    """The properties every to_mnist output has."""
    assert out.shape == (28, 28)
    assert out.dtype == np.float64
    assert out.min() >= 0 and out.max() == pytest.approx(1.0)
    rows = np.flatnonzero(out.any(axis=1))
    cols = np.flatnonzero(out.any(axis=0))
    height, width = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    assert max(height, width) <= 20
    assert max(height, width) >= 19  # the longer side fills the 20 px box (edge pixels faint)
    touches_edge = rows[0] == 0 or cols[0] == 0 or rows[-1] == 27 or cols[-1] == 27
    if not touches_edge:  # the shift was not clipped to keep the digit inside
        assert np.abs(com(out) - 14.0).max() <= 0.5 + 1e-9


def assert_error(path: Path, *words: str) -> NnetError:
    with pytest.raises(NnetError) as info:
        load_image(path)
    msg = str(info.value)
    assert str(path) in msg
    assert "\n" not in msg
    for word in words:
        assert word in msg
    return info.value


# ----------------------------------------------------------------- real MNIST digits
def test_mnist_center_of_mass_convention(mnist: np.ndarray) -> None:
    # Pixel [r, c] at (r, c): MNIST's mean center of mass is (13.99, 14.01), std 0.29.
    centers = np.array([com(d.astype(np.float64)) for d in mnist])
    assert np.abs(centers.mean(axis=0) - 14.0).max() < 0.05
    assert np.abs(centers - 14.0).max() <= 0.6  # whole-pixel shifts (plus MNIST's rounding)
    assert 0.25 < centers.std(axis=0).min() and centers.std(axis=0).max() < 0.33


def test_converted_digits_match_mnist_statistics(mnist: np.ndarray) -> None:
    outs = np.array([to_mnist(d / 255.0) for d in mnist[:300]])
    centers = np.array([com(o) for o in outs])
    assert np.abs(centers.mean(axis=0) - 14.0).max() < 0.05
    assert centers.std(axis=0).max() < 0.33
    for o in outs:
        check_mnist_like(o)


def test_mnist_digits_survive_to_mnist(mnist: np.ndarray) -> None:
    for d in mnist[:20]:
        orig = d / 255.0
        out = to_mnist(orig)
        check_mnist_like(out)
        assert corr(out, orig) > 0.9
        assert np.abs(com(out) - com(orig)).max() < 1.0


def test_mnist_digit_as_grey_png_and_jpeg(mnist: np.ndarray, tmp_path: Path) -> None:
    png, jpg = [], []
    for i, d in enumerate(mnist[:20]):
        canvas = on_grey_canvas(d)
        p = save_png(tmp_path / f"d{i}.png", canvas)
        j = tmp_path / f"d{i}.jpg"
        Image.open(p).save(j, quality=85)
        orig = d / 255.0
        for path, scores in ((p, png), (j, jpg)):
            out = load_image(path)
            check_mnist_like(out)
            assert np.abs(com(out) - com(orig)).max() < 1.0
            scores.append(aligned_corr(out, orig))
    for scores in (png, jpg):
        assert min(scores) > 0.85 and np.mean(scores) > 0.95


def test_png_black_on_white_equals_original(mnist: np.ndarray, tmp_path: Path) -> None:
    d = mnist[0]
    out = load_image(save_png(tmp_path / "inv.png", 1.0 - d / 255.0))
    np.testing.assert_allclose(out, to_mnist(d / 255.0), atol=1e-12)


# ----------------------------------------------------------------- formats
@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_transparent_png_is_composited_over_white(
    mnist: np.ndarray, tmp_path: Path, mode: str
) -> None:
    d = mnist[1]
    alpha = d  # black strokes where the digit is, fully transparent elsewhere
    black = np.zeros_like(d)
    if mode == "RGBA":
        px = np.stack([black, black, black, alpha], axis=-1)
    else:
        px = np.stack([black, alpha], axis=-1)
    path = tmp_path / "t.png"
    Image.fromarray(px, mode=mode).save(path)
    out = load_image(path)
    np.testing.assert_allclose(out, to_mnist(d / 255.0), atol=0.01)


def test_sixteen_bit_png(mnist: np.ndarray, tmp_path: Path) -> None:
    d = mnist[2]
    path = tmp_path / "d16.png"
    Image.fromarray((65535 - d.astype(np.uint16) * 257).astype(np.uint16)).save(path)
    assert Image.open(path).mode.startswith("I")
    np.testing.assert_allclose(load_image(path), to_mnist(d / 255.0), atol=1e-6)


def test_exif_rotated_jpeg_is_turned_upright(mnist: np.ndarray, tmp_path: Path) -> None:
    d = mnist[0]  # a 7: not symmetric under a quarter turn
    upright = Image.fromarray(np.round(on_grey_canvas(d) * 255).astype(np.uint8))
    straight = tmp_path / "straight.jpg"
    upright.save(straight, quality=90)
    # Stored turned a quarter counter-clockwise; orientation 6 says "turn clockwise to show".
    exif = Image.Exif()
    exif[0x0112] = 6
    turned = tmp_path / "turned.jpg"
    upright.transpose(Image.Transpose.ROTATE_90).save(turned, quality=90, exif=exif)
    ref = load_image(straight)
    assert corr(load_image(turned), ref) > 0.95
    no_exif = tmp_path / "no_exif.jpg"
    upright.transpose(Image.Transpose.ROTATE_90).save(no_exif, quality=90)
    assert corr(load_image(no_exif), ref) < 0.6


def test_npy_28x28_uint8_taken_as_is(mnist: np.ndarray, tmp_path: Path) -> None:
    d = mnist[3]
    path = tmp_path / "d.npy"
    np.save(path, d)
    out = load_image(path)
    assert out.dtype == np.float64 and out.shape == (28, 28)
    np.testing.assert_array_equal(out, d / 255.0)


@pytest.mark.parametrize("shape", [(784,), (1, 784)])
def test_npy_784_float_taken_as_is(mnist: np.ndarray, tmp_path: Path, shape: tuple) -> None:
    d = mnist[4] / 255.0
    path = tmp_path / "d.npy"
    np.save(path, d.reshape(shape).astype(np.float32))
    np.testing.assert_allclose(load_image(path), d, atol=1e-7)


def test_npy_float_0_to_255_is_scaled(mnist: np.ndarray, tmp_path: Path) -> None:
    d = mnist[5]
    path = tmp_path / "d.npy"
    np.save(path, d.astype(np.float64))
    np.testing.assert_allclose(load_image(path), d / 255.0)


def test_npy_other_shape_goes_through_to_mnist(mnist: np.ndarray, tmp_path: Path) -> None:
    d = mnist[6]
    # 100 rows x 80 columns, black digit (2.5x larger) on white, as uint8.
    canvas = Image.new("L", (80, 100), 255)
    canvas.paste(Image.fromarray(255 - d).resize((70, 70), Image.Resampling.BICUBIC), (4, 20))
    pic = np.asarray(canvas)
    path = tmp_path / "pic.npy"
    np.save(path, pic)
    out = load_image(path)
    np.testing.assert_allclose(out, to_mnist(pic / 255.0))
    check_mnist_like(out)
    assert aligned_corr(out, d / 255.0) > 0.9


# ----------------------------------------------------------------- properties
@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    height=st.integers(8, 90),
    width=st.integers(8, 90),
    background=st.floats(0.0, 1.0),
    ink=st.floats(0.0, 1.0),
    strokes=st.integers(1, 4),
)
def test_to_mnist_properties(
    seed: int, height: int, width: int, background: float, ink: float, strokes: int
) -> None:
    rng = np.random.default_rng(seed)
    img = np.full((height, width), background)
    for _ in range(strokes):  # rectangles of ink somewhere inside the border
        r0, c0 = rng.integers(1, height - 1), rng.integers(1, width - 1)
        r1 = rng.integers(r0 + 1, min(height - 1, r0 + 40) + 1)
        c1 = rng.integers(c0 + 1, min(width - 1, c0 + 40) + 1)
        img[r0:r1, c0:c1] = ink
    before = img.copy()
    # Ink counts when it is darker than a light background or lighter than a dark one.
    contrast = background - ink if background > 0.5 else ink - background
    assume(abs(contrast - MIN_CONTRAST) > 1e-9)
    if contrast < MIN_CONTRAST:
        with pytest.raises(NnetError, match="no digit"):
            to_mnist(img)
        return
    check_mnist_like(to_mnist(img))
    np.testing.assert_array_equal(img, before)  # the input is untouched


def test_thin_and_tiny_shapes() -> None:
    line = np.zeros((50, 50))
    line[5:45, 25] = 1.0  # a one-pixel "1": 40x1 -> 20x1
    out = to_mnist(line)
    check_mnist_like(out)
    assert np.count_nonzero(out.any(axis=0)) == 1
    dot = np.zeros((9, 9))
    dot[4, 4] = 1.0  # one pixel is enlarged to the 20 px box
    check_mnist_like(to_mnist(dot))


def test_grey_background_becomes_black() -> None:
    img = np.full((40, 40), 0.3)
    img[10:30, 18:22] = 0.9
    out = to_mnist(img)
    assert out.max() == 1.0
    assert np.count_nonzero(out) == np.count_nonzero(to_mnist((img - 0.3) / 0.6))


@pytest.mark.parametrize(
    "bad",
    [np.zeros((3, 3, 3)), np.zeros((0, 5)), np.full((5, 5), 2.0), np.full((5, 5), np.nan)],
)
def test_to_mnist_rejects_bad_arrays(bad: np.ndarray) -> None:
    with pytest.raises(NnetError):
        to_mnist(bad)


# ----------------------------------------------------------------- bad inputs
def test_missing_file(tmp_path: Path) -> None:
    assert_error(tmp_path / "nope.png", "no such file")


def test_directory(tmp_path: Path) -> None:
    assert_error(tmp_path, "folder")


def test_text_file_named_png(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    path.write_text("this is not a picture\n")
    assert_error(path, "not an image")


def test_truncated_png(mnist: np.ndarray, tmp_path: Path) -> None:
    whole = save_png(tmp_path / "whole.png", on_grey_canvas(mnist[0]))
    data = whole.read_bytes()
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    assert_error(path, "damaged")


@pytest.mark.parametrize("level", [0.0, 1.0, 0.5])
def test_blank_image(tmp_path: Path, level: float) -> None:
    path = save_png(tmp_path / "blank.png", np.full((40, 30), level))
    assert_error(path, "no digit")


def test_blank_jpeg_with_faint_noise(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "blank.jpg"
    noise = np.clip(0.9 + rng.normal(0, 0.01, (60, 60)), 0, 1)
    Image.fromarray(np.round(noise * 255).astype(np.uint8)).save(path, quality=75)
    assert_error(path, "no digit")


def test_huge_declared_dimensions(tmp_path: Path) -> None:
    def png_header(width: int, height: int) -> bytes:
        def chunk(kind: bytes, body: bytes) -> bytes:
            crc = __import__("zlib").crc32(kind + body)
            return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

        ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
        return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")

    big = tmp_path / "big.png"  # 64 megapixels: over nnet's limit, under Pillow's warning
    big.write_bytes(png_header(8000, 8000))
    assert_error(big, "megapixels")
    bomb = tmp_path / "bomb.png"  # 400 megapixels: Pillow itself refuses it
    bomb.write_bytes(png_header(20000, 20000))
    assert_error(bomb, "too large")


def test_npy_wrong_shape(tmp_path: Path) -> None:
    path = tmp_path / "cube.npy"
    np.save(path, np.ones((3, 3, 3)))
    assert_error(path, "(3, 3, 3)")


def test_npy_nan(tmp_path: Path) -> None:
    a = np.zeros((28, 28))
    a[3, 4] = np.nan
    path = tmp_path / "nan.npy"
    np.save(path, a)
    assert_error(path, "NaN")


def test_npy_negative_and_too_large_values(tmp_path: Path) -> None:
    neg = tmp_path / "neg.npy"
    np.save(neg, np.full((28, 28), -1.0))
    assert_error(neg, "negative")
    high = tmp_path / "high.npy"
    np.save(high, np.full((28, 28), 300.0))
    assert_error(high, "255")


@pytest.mark.parametrize(
    "array",
    [np.array(["a", "b"]), np.zeros((28, 28), dtype=complex)],
)
def test_npy_non_numeric(tmp_path: Path, array: np.ndarray) -> None:
    path = tmp_path / "odd.npy"
    np.save(path, array)
    assert_error(path, "numbers")


def test_npy_all_black_mnist(tmp_path: Path) -> None:
    path = tmp_path / "black.npy"
    np.save(path, np.zeros((28, 28), dtype=np.uint8))
    assert_error(path, "no digit")


class _TouchOnUnpickle:
    """Unpickling this creates a file: proof that a pickle was (or was not) executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_npy_object_array_is_not_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    path = tmp_path / "obj.npy"
    arr = np.empty(1, dtype=object)
    arr[0] = _TouchOnUnpickle(marker)
    np.save(path, arr, allow_pickle=True)
    np.load(path, allow_pickle=True)  # the marker works: unpickling touches the file
    assert marker.exists()
    marker.unlink()
    assert_error(path, ".npy")
    assert not marker.exists()


def test_npz_named_npy(tmp_path: Path) -> None:
    buf = io.BytesIO()
    np.savez(buf, a=np.zeros((28, 28)))
    path = tmp_path / "arch.npy"
    path.write_bytes(buf.getvalue())
    assert_error(path, ".npz")


def test_corrupt_npy(tmp_path: Path) -> None:
    path = tmp_path / "junk.npy"
    path.write_bytes(b"\x93NUMPY\x01\x00garbage")
    assert_error(path, ".npy")
