"""Data augmentation for images: random affine transforms and elastic distortions.

A training batch of images (B, H, W[, C]) is resampled through one sampling grid per image:

- an affine transform about the image's centre, drawn per image: rotation by an angle in
  [-rotate, rotate] degrees, scaling of each axis by a factor in [1 - zoom, 1 + zoom],
  horizontal shear by an angle in [-shear, shear] degrees, translation by up to
  ``translate`` pixels along each axis;
- an elastic distortion (Simard, Steinkraus and Platt, 2003): a displacement field of
  uniform(-1, 1) noise (16 random bits each), one value per pixel and axis, smoothed by a
  Gaussian of width ``elastic_sigma`` pixels (separable, so two small matrix products
  ``K_h @ f @ K_w.T``) and scaled by ``elastic_alpha`` pixels.

Both are composed into one grid of source coordinates, and every output pixel is one
bilinear read of the source image, zero outside it. Pixel values are those of the inputs
(pixels / 255, background 0), so the zero fill is the background. Everything is vectorized
over the batch: no loop over images.

:class:`Augmenter` draws the random parameters of each batch from its own generator, in a
fixed order (the affine parameters, then the elastic noise), and distorts a batch of input
rows in place; its generator's state is what a checkpoint saves. The functions below it
(:func:`affine_matrices`, :func:`warp`, ...) take the parameters explicitly, for tests and
pictures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from nnet.errors import NnetError

Array = np.ndarray

# How far the Gaussian kernel reaches, in standard deviations (as scipy.ndimage's default).
TRUNCATE = 4.0


@dataclass(frozen=True)
class Strengths:
    """How strong each distortion is; 0 turns it off (``elastic_sigma`` is a width)."""

    translate: float = 0.0  # pixels, along each axis
    rotate: float = 0.0  # degrees
    zoom: float = 0.0  # relative scaling of each axis, below 1
    shear: float = 0.0  # degrees, below 90
    elastic_alpha: float = 0.0  # pixels
    elastic_sigma: float = 4.0  # pixels

    def __post_init__(self) -> None:
        limits = {
            "translate": (0.0, math.inf, "pixels"),
            "rotate": (0.0, 180.0, "degrees"),
            "zoom": (0.0, 1.0, "(a fraction below 1)"),
            "shear": (0.0, 90.0, "degrees (below 90)"),
            "elastic_alpha": (0.0, math.inf, "pixels"),
            "elastic_sigma": (0.0, math.inf, "pixels (above 0)"),
        }
        for f in fields(self):
            value = getattr(self, f.name)
            lo, hi, unit = limits[f.name]
            bad = isinstance(value, bool) or not isinstance(value, int | float)
            bad = bad or not math.isfinite(value) or value < lo or value > hi
            bad = bad or (f.name in ("zoom", "shear") and value >= hi)
            bad = bad or (f.name == "elastic_sigma" and value <= 0)
            if bad:
                raise NnetError(
                    f"augmentation strength {f.name} must be a number from {lo:g} to {hi:g} "
                    f"{unit}; got {value!r}."
                )


def image_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(H, W, C) of images given as (H, W) or (H, W, C); NnetError otherwise."""
    if len(shape) == 2:
        shape = (*shape, 1)
    if len(shape) != 3 or min(shape) < 1:
        raise NnetError(f"augmentation needs images of shape (H, W) or (H, W, C); got {shape}.")
    return int(shape[0]), int(shape[1]), int(shape[2])


def affine_matrices(rotate: Array, zoom_x: Array, zoom_y: Array, shear: Array) -> Array:
    """The forward affine maps (B, 2, 2) on (x, y) pixel coordinates, x to the right and y
    down: rotation by ``rotate`` degrees counterclockwise as displayed, after a horizontal
    shear by ``shear`` degrees, after scaling x by ``zoom_x`` and y by ``zoom_y`` (all (B,))."""
    theta, phi = np.radians(rotate), np.radians(shear)
    c, s = np.cos(theta), np.sin(theta)
    zx, zy, k = np.asarray(zoom_x, float), np.asarray(zoom_y, float), np.tan(phi)
    # R = [[c, s], [-s, c]] (counterclockwise on screen, y down); Sh = [[1, k], [0, 1]];
    # Z = diag(zx, zy); M = R @ Sh @ Z
    m = np.empty((len(theta), 2, 2))
    m[:, 0, 0] = c * zx
    m[:, 0, 1] = (c * k + s) * zy
    m[:, 1, 0] = -s * zx
    m[:, 1, 1] = (c - s * k) * zy
    return m


def gaussian_matrix(n: int, sigma: float, dtype: np.dtype | type = np.float32) -> Array:
    """(n, n): row i is a Gaussian of width ``sigma`` centred on i, truncated at
    ``TRUNCATE`` sigma and normalized to sum 1 over its whole extent, zero beyond the image
    (scipy.ndimage.gaussian_filter1d with mode="constant")."""
    radius = int(TRUNCATE * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    total = np.exp(-0.5 * (offsets / sigma) ** 2).sum()
    d = np.arange(n)[:, None] - np.arange(n)[None, :]
    k = np.where(np.abs(d) <= radius, np.exp(-0.5 * (d / sigma) ** 2), 0.0) / total
    return k.astype(dtype)


def smooth(noise: Array, sigma: float) -> Array:
    """Fields ``noise`` (..., H, W) smoothed by a Gaussian of width ``sigma`` along both
    image axes, K_h @ f @ K_w.T each (the reference form; :class:`Augmenter` computes the
    same products on its own layout of the noise, without transposes)."""
    *_, H, W = noise.shape
    kh, kw = gaussian_matrix(H, sigma, noise.dtype), gaussian_matrix(W, sigma, noise.dtype)
    return np.matmul(kh, noise @ kw.T)


def inverse_maps(matrices: Array, shifts: Array, H: int, W: int) -> tuple[Array, Array]:
    """The sampling maps of forward affine ``matrices`` (B, 2, 2) about the centre of an
    H x W image followed by ``shifts`` (B, 2): (inv (B, 2, 2), offset (B, 2)) such that the
    output pixel p = (x, y) reads the source at inv @ p + offset."""
    centre = np.array([(W - 1) / 2.0, (H - 1) / 2.0])
    inv = np.linalg.inv(np.asarray(matrices, float))
    # p = M (q - c) + c + t  <=>  q = inv (p - c - t) + c
    offset = centre - np.einsum("bij,bj->bi", inv, np.asarray(shifts, float) + centre)
    return inv, offset


class Workspace:
    """The arrays one resampling of up to ``B`` images (H, W, C) works in, allocated once
    and reused: allocating them afresh for every batch costs more than the arithmetic (page
    faults of new memory). ``get(name, shape)`` is a view of the first elements of the
    buffer ``name``."""

    def __init__(self, B: int, shape: tuple[int, int, int], dtype: np.dtype) -> None:
        H, W, C = shape
        self.B, self.shape, self.dtype = B, shape, dtype
        pixels = B * H * W
        self._buffers: dict[str, Array] = {
            name: np.empty(
                pixels * (C if name in ("top", "right", "bottom", "result") else 1), dtype
            )
            for name in ("x", "y", "x0", "y0", "top", "right", "bottom", "result")
        }
        self._buffers["idx"] = np.empty(pixels, np.intp)
        # zero borders (one row and column before, two after), written once: only the
        # inside is overwritten by every batch
        self.padded = np.zeros((B, H + 3, W + 3, C), dtype)

    def get(self, name: str, shape: tuple[int, ...]) -> Array:
        return self._buffers[name][: math.prod(shape)].reshape(shape)


def sample(
    images: Array,
    inv: Array,
    offset: Array,
    dx: Array | None = None,
    dy: Array | None = None,
    *,
    out: Array | None = None,
    work: Workspace | None = None,
) -> Array:
    """``images`` (B, H, W, C) resampled: output pixel p = (x, y) of image b is the bilinear
    read, zero outside the image, of the source at inv[b] @ p + offset[b] + (dx, dy)[b, y, x]
    (``dx``, ``dy``: (B, H, W) displacements in pixels, any strides, or None). Returns
    (B, H, W, C), in ``out`` when given (which may be ``images`` itself: they are read
    first); ``work``: arrays to reuse (a :class:`Workspace` of at least B images of this
    shape and dtype)."""
    B, H, W, C = images.shape
    dtype = images.dtype if images.dtype.kind == "f" else np.dtype(np.float32)
    if work is None or work.B < B or work.shape != (H, W, C) or work.dtype != dtype:
        work = Workspace(B, (H, W, C), dtype)
    inv, offset = inv.astype(dtype), offset.astype(dtype)
    gx = np.arange(W, dtype=dtype)
    gy = np.arange(H, dtype=dtype)
    # Every array of the grid is laid out (H, B, W), the layout of the Augmenter's elastic
    # fields: adding those is then a pass in memory order. (The order of the arithmetic
    # does not change its results.)
    grid = (H, B, W)
    x, y = work.get("x", grid), work.get("y", grid)
    # The source coordinates, + 1: in the images padded by a border of zeros. Each is the
    # sum of a row (B, W) and a column (H, B).
    for coord, k, d in ((x, 0, dx), (y, 1, dy)):
        row = inv[:, k, 0, None] * gx + (offset[:, k, None] + 1)
        np.add(row, (inv[None, :, k, 1] * gy[:, None])[:, :, None], out=coord)
        if d is not None:
            coord += d.transpose(1, 0, 2)
    # A read just outside an image is a read of its zero border; coordinates further out
    # are clipped onto the border.
    padded = work.padded[:B]
    padded[:, 1 : H + 1, 1 : W + 1] = images
    flat = padded.reshape(-1, C) if C > 1 else padded.reshape(-1)
    np.clip(x, 0, W + 1, out=x)
    np.clip(y, 0, H + 1, out=y)
    x0, y0 = work.get("x0", grid), work.get("y0", grid)
    np.floor(x, out=x0)  # at most W + 1, whose right neighbour is the second zero column
    np.floor(y, out=y0)
    x -= x0  # the weights of the right and lower neighbours
    y -= y0
    stride = W + 3
    y0 *= stride
    y0 += x0  # the index of the upper left neighbour within its padded image
    base = np.arange(B) * ((H + 3) * stride)  # where each padded image starts in ``flat``
    idx = work.get("idx", grid)
    if len(flat) < 2 ** np.finfo(dtype).nmant:  # every index exact in ``dtype``: add it there
        y0 += base.astype(dtype)[:, None]
        np.copyto(idx, y0, casting="unsafe")
    else:
        np.copyto(idx, y0, casting="unsafe")
        idx += base[:, None]
    shape = (H, B, W, C) if C > 1 else grid
    # gray images: the neighbours go where x0 and y0 were (done with), a smaller working set
    names = ("x0", "right", "y0") if C == 1 else ("top", "right", "bottom")
    top, right, bottom = (work.get(name, shape) for name in names)
    if C > 1:
        x, y = x[..., None], y[..., None]
    # the four neighbours: ``flat`` read at idx, idx + 1, idx + stride, idx + stride + 1, as
    # views of it shifted by those offsets (every index is in range: no bounds to check)
    np.take(flat, idx, axis=0, out=top, mode="clip")
    np.take(flat[1:], idx, axis=0, out=right, mode="clip")
    right -= top
    right *= x
    top += right  # the upper neighbours, interpolated along x
    np.take(flat[stride + 1 :], idx, axis=0, out=right, mode="clip")
    np.take(flat[stride:], idx, axis=0, out=bottom, mode="clip")
    right -= bottom
    right *= x
    bottom += right  # the lower neighbours, interpolated along x
    bottom -= top
    bottom *= y
    if out is None:
        out = np.empty((B, H, W, C), dtype)
    # (H, B, W[, C]) views of ``out``: only an axis of 1 is dropped, and axes swapped
    target = out.swapaxes(0, 1) if C > 1 else out[..., 0].swapaxes(0, 1)
    np.add(top, bottom, out=target)
    return out


def warp(
    images: Array,
    matrices: Array,
    shifts: Array,
    displacement: Array | None = None,
) -> Array:
    """``images`` (B, H, W) or (B, H, W, C) moved by the forward affine maps ``matrices``
    (B, 2, 2) about their centres, then by ``shifts`` (B, 2) = (dx, dy) pixels, and read
    through the displacement field ``displacement`` (B, 2, H, W) = (dx, dy) pixels (None:
    none): one bilinear read per pixel, zero outside the images. Returns float images of
    the same shape (float32 unless the images are float64)."""
    images = np.asarray(images)
    gray = images.ndim == 3
    im = images[..., None] if gray else images
    if im.ndim != 4:
        raise NnetError(f"warp takes images (B, H, W) or (B, H, W, C); got {images.shape}.")
    B, H, W, _ = im.shape
    dtype = im.dtype if im.dtype.kind == "f" else np.dtype(np.float32)
    inv, offset = inverse_maps(matrices, shifts, H, W)
    dx = dy = None
    if displacement is not None:
        dx, dy = displacement[:, 0], displacement[:, 1]
    result = sample(im.astype(dtype, copy=False), inv, offset, dx, dy)
    return result[..., 0] if gray else result


class Augmenter:
    """Random distortions of training batches of images of ``shape`` (H, W[, C]), drawn
    from ``rng`` (its own stream: a checkpoint saves its state).

    Called on a batch of input rows (B, H*W*C) — the image part of a^0, pixels in row-major
    (H, W, C) order, background 0 — it distorts them in place. Its arrays are allocated for
    the largest batch seen and reused.
    """

    def __init__(
        self,
        strengths: Strengths,
        shape: tuple[int, ...],
        rng: np.random.Generator,
        dtype: np.dtype | type = np.float32,
    ) -> None:
        self.strengths = strengths
        self.shape = image_shape(tuple(shape))
        self.rng = rng
        self.dtype = np.dtype(dtype)
        if self.dtype.kind != "f":
            raise NnetError(f"the augmenter works in float32 or float64; got {self.dtype}.")
        H, W, _ = self.shape
        alpha, sigma = strengths.elastic_alpha, strengths.elastic_sigma
        if alpha:
            # The noise is u = (k + 1/2) / 32768 - 1 for k uniform in 0 .. 65535 (16 random
            # bits: uniform on (-1, 1) to 1/32768, which the smoothing makes immaterial),
            # so alpha K_h u K_w^T = (alpha / 32768) K_h k K_w^T - c (K_h 1)(K_w 1)^T
            # with c = alpha (1 - 1/65536): the scaling and the shift folded into constants.
            kh, kw = gaussian_matrix(H, sigma, np.float64), gaussian_matrix(W, sigma, np.float64)
            self._kh = (alpha / 32768 * kh).astype(self.dtype)
            self._kw_t = np.ascontiguousarray(kw.T, dtype=self.dtype)
            const = alpha * (1 - 1 / 65536) * np.outer(kh.sum(axis=1), kw.sum(axis=1))
            self._const = const.astype(self.dtype)[:, None, None, :]
        self._work: Workspace | None = None
        self._fields = np.empty((0,), self.dtype)

    @property
    def n_inputs(self) -> int:
        H, W, C = self.shape
        return H * W * C

    def _reserve(self, B: int) -> Workspace:
        if self._work is None or self._work.B < B:
            H, W, _ = self.shape
            self._work = Workspace(B, self.shape, self.dtype)
            self._fields = np.empty(3 * B * 2 * H * W if self.strengths.elastic_alpha else 0,
                                    self.dtype)  # fmt: skip
        return self._work

    def draw(self, B: int) -> tuple[Array, Array, Array | None]:
        """The parameters of the next batch of B images, drawn from the generator in a fixed
        order: six uniform(-1, 1) numbers per image (rotation, zoom of x, zoom of y, shear,
        translation along x and y), then, when elastic distortion is on, the uniform noise
        of the displacement fields. Returns the forward affine maps (B, 2, 2), the shifts
        (B, 2) and the displacement fields (B, 2, H, W) (a view of arrays reused by the next
        call), or None."""
        s, rng = self.strengths, self.rng
        u = rng.uniform(-1.0, 1.0, size=(B, 6))
        matrices = affine_matrices(
            s.rotate * u[:, 0], 1 + s.zoom * u[:, 1], 1 + s.zoom * u[:, 2], s.shear * u[:, 3]
        )
        shifts = s.translate * u[:, 4:6]
        if not s.elastic_alpha:
            return matrices, shifts, None
        self._reserve(B)
        H, W, _ = self.shape
        n = B * 2 * H * W
        noise, once, twice = (self._fields[k * n : (k + 1) * n] for k in range(3))
        # The noise is laid out (H, B, 2, W), so that both products of K_h f K_w^T are one
        # matrix product each, with no transpose: K_h on (H, B*2*W), K_w^T on (H*B*2, W).
        # 16 bits per value, four per 64-bit word of the generator (twice as fast as
        # rng.random; the order of the words is the generator's, the machine's byte order
        # decides which value of a word goes where)
        words = rng.bit_generator.random_raw(-(-n // 4))
        np.copyto(noise, words.view(np.uint16)[:n], casting="unsafe")
        np.matmul(self._kh, noise.reshape(H, -1), out=once.reshape(H, -1))
        f = np.matmul(once.reshape(-1, W), self._kw_t, out=twice.reshape(-1, W))
        f = f.reshape(H, B, 2, W)
        f -= self._const
        return matrices, shifts, f.transpose(1, 2, 0, 3)  # (B, 2, H, W), a view

    def __call__(self, rows: Array) -> None:
        """Distort the images in ``rows`` (B, H*W*C), in place."""
        B, D = rows.shape
        if D != self.n_inputs:
            raise NnetError(
                f"the augmenter takes images of {self.shape} ({self.n_inputs} values); got "
                f"rows of {D}."
            )
        if B == 0:
            return
        H, W, C = self.shape
        matrices, shifts, displacement = self.draw(B)
        inv, offset = inverse_maps(matrices, shifts, H, W)
        dx = dy = None
        if displacement is not None:
            dx, dy = displacement[:, 0], displacement[:, 1]
        work = self._reserve(B)
        images = rows.reshape(B, H, W, C)
        if np.shares_memory(images, rows):  # the usual case: written straight back
            sample(images, inv, offset, dx, dy, out=images, work=work)
            return
        result = work.get("result", (B, H, W, C))
        sample(images, inv, offset, dx, dy, out=result, work=work)
        np.copyto(rows, result.reshape(B, D))
