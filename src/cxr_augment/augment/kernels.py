"""Compiled kernels for four per-image augmentations: the Gaussian blur, the bilinear resize of
a crop, the PIL-exact colouring and the horizontal flip.

OpenCV's general routines spend most of their time outside the arithmetic these need (a
filter engine with float buffers and border modes for any depth, a resize for any depth and
interpolation), and the colouring's per-call table building in numpy costs more than its
passes over the pixels. These kernels are compiled by numba (LLVM, vectorised for the CPU it
runs on) and cached (``_cache_available``), one machine-code variant per kernel radius:

- ``gaussian_blur``: a separable symmetric filter, rows then columns, in float32, the border
  reflected as OpenCV's default (``BORDER_REFLECT_101``). The row pass reads each row once
  into a padded buffer; with AVX-512 (radius up to 8) it makes each 16 outputs from two
  aligned loads and their shifts in registers (``_row_vectors``), the same floats as the
  plain loop at two thirds of its time. The column pass makes four output rows per sweep,
  so the rows they share are read once. Within 0.5 of the same filter in float64, so a grey
  level (on some images two) from ``cv2.GaussianBlur``, which rounds its kernel to fixed
  point.
- ``resize_linear``: OpenCV's ``INTER_LINEAR`` map (pixel centres, edges clamped) in float32,
  as two passes that each combine whole rows: the horizontal pass runs on the transposed
  crop (``cv2.transpose``), so both passes are vectorised along memory. Within a grey level
  of ``cv2.resize``.
- ``colour``: PIL's brightness then contrast, grey level for grey level: both 256-entry tables
  are built in compiled code, and StringZilla's own C routines (its SIMD byte lookup and byte
  sum, the ones its Python ``translate`` and ``bytesum`` call) run on the pixels.
- ``flip_horizontal``: each row reversed by vector byte permutations, 64 bytes at a time with
  AVX-512 (``cv2.flip`` took three to four times as long to reverse an image's rows as to
  copy them).

Floating point is compiled with contraction to fused multiply-adds only (no reassociation),
so a machine gives the same bytes every run.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import threading

import cv2
import llvmlite.binding as llvm
import numba as nb
import numpy as np
import stringzilla
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core import config as numba_config
from numba.extending import intrinsic

_FAST = {"contract"}  # fused multiply-add; nothing that reorders a sum
log = logging.getLogger(__name__)


def _probe() -> None:  # a function of this file, for _cache_available
    pass


def _cache_available() -> bool:
    """Whether numba can cache this file's compiled code: in ``__pycache__`` beside it, else
    in the user's cache folder (``~/.cache/numba``), or in ``NUMBA_CACHE_DIR``. A read-only
    install run by a user without a writable home has none; numba then refuses
    ``cache=True`` outright, so the kernels are compiled in each process instead (about 2 s
    each), and a warning says how to keep them."""
    try:
        nb.njit(cache=True)(_probe)
    except RuntimeError as e:  # numba: "cannot cache function ...: no locator available"
        log.warning(
            "%s; the augmentation kernels are compiled in every process (about 2 s each): "
            "set NUMBA_CACHE_DIR to a writable folder to keep them",
            e,
        )
        return False
    return True


_CACHE = _cache_available()


# --- Gaussian blur --------------------------------------------------------------------------


@nb.njit(nogil=True, cache=_CACHE)
def _empty_aligned(n):
    # n float32 values starting on a 64-byte boundary (one cache line, one AVX-512 vector):
    # how the unaligned loads of a pass fall across cache lines is then the same every run
    buf = np.empty(n + 16, np.float32)
    skip = (-(buf.ctypes.data // 4)) % 16
    return buf[skip : skip + n]


def _valign_available() -> bool:
    """Whether the row pass may use AVX-512's ``valignd``: the CPU has AVX-512F and numba
    compiles for this CPU (``NUMBA_CPU_NAME`` / ``NUMBA_CPU_FEATURES`` unset)."""
    if numba_config.CPU_NAME or numba_config.CPU_FEATURES:
        return False
    try:
        features = llvm.get_host_cpu_features().flatten()
    except RuntimeError:  # llvmlite: the host's features cannot be read here
        return False
    return "+avx512f" in features.split(",")


_VALIGN = _valign_available()
if _VALIGN:
    llvm.initialize_native_asmparser()  # for the inline assembly below

_F32 = ir.FloatType()
_V16 = ir.VectorType(_F32, 16)


def _shifted(builder, hi, lo, j: int):
    # lanes j .. j + 15 of lo:hi (16 floats each), by valignd. As inline assembly: LLVM folds
    # a shuffle of two aligned loads back into one unaligned load, which is what this avoids
    if j in (0, 16):
        return lo if j == 0 else hi
    shift = ir.InlineAsm(
        ir.FunctionType(_V16, [_V16, _V16]), f"valignd $${j}, $2, $1, $0", "=v,v,v"
    )
    return builder.call(shift, [hi, lo])


@intrinsic
def _row_vectors(typingctx, line_address, dst_address, k_address, n, radius):
    """``dst[x] = k[r] * line[x + r] + sum_j k[j] * (line[x + j] + line[x + 2r - j])`` for x
    in 16 * [0, n), ``r`` a literal (the shifts are immediates), the operations in the order
    of ``rows``' loop (so the same floats): each vector of 16 outputs from two aligned 64-byte
    loads of ``line`` and its ``2r`` shifted copies made in registers. An unaligned load of
    64 bytes spans two cache lines; the plain loop makes ten such loads for every 16 outputs,
    and they bound it."""
    if not isinstance(radius, types.IntegerLiteral):
        raise nb.core.errors.RequireLiteralValue("_row_vectors: the radius must be a constant")
    r = radius.literal_value

    def codegen(context, builder, signature, args):
        line_a, dst_a, k_a, count, _ = args
        line = builder.inttoptr(line_a, _F32.as_pointer())
        dst = builder.inttoptr(dst_a, _F32.as_pointer())
        k = builder.inttoptr(k_a, _F32.as_pointer())
        lanes = ir.Constant(ir.VectorType(ir.IntType(32), 16), [0] * 16)
        kv = []
        for j in range(r + 1):
            kj = builder.load(builder.gep(k, [ir.Constant(ir.IntType(64), j)]))
            one = builder.insert_element(
                ir.Constant(_V16, ir.Undefined), kj, ir.Constant(ir.IntType(32), 0)
            )
            kv.append(builder.shuffle_vector(one, ir.Constant(_V16, ir.Undefined), lanes))
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_V16, [_V16] * 3), "llvm.fma.v16f32"
        )
        with cgutils.for_range(builder, count) as loop:
            at = builder.mul(loop.index, ir.Constant(loop.index.type, 16))
            nxt = builder.add(at, ir.Constant(loop.index.type, 16))
            lo = builder.load(builder.bitcast(builder.gep(line, [at]), _V16.as_pointer()), align=64)
            hi = builder.load(
                builder.bitcast(builder.gep(line, [nxt]), _V16.as_pointer()), align=64
            )
            s = [_shifted(builder, hi, lo, j) for j in range(2 * r + 1)]
            # as LLVM contracts rows' loop: k[r] * centre + k[0] * pair0 is one fma
            acc = builder.call(
                fma, [kv[r], s[r], builder.fmul(kv[0], builder.fadd(s[0], s[2 * r]))]
            )
            for j in range(1, r):
                acc = builder.call(fma, [kv[j], builder.fadd(s[j], s[2 * r - j]), acc])
            builder.store(acc, builder.bitcast(builder.gep(dst, [at]), _V16.as_pointer()), align=4)
        return context.get_dummy_value()

    return types.void(types.uintp, types.uintp, types.uintp, types.intp, radius), codegen


@functools.cache
def _blur_passes(r: int):
    """The blur for a kernel of radius ``r``, a row pass then a column pass. ``r`` is a
    constant of the compiled code (the closure's cell is part of numba's cache key), so its
    tap loops unroll and the pixel loops vectorise."""

    @nb.njit(nogil=True, fastmath=_FAST, cache=_CACHE)
    def rows(image, k, padded):
        # padded: (h + 2r, w) float32; rows r .. r + h - 1 get the row-filtered image, the r
        # rows above and below its mirror (reflect 101), ready for the column pass
        h, w = image.shape
        line = _empty_aligned(w + 2 * r)
        for y in range(h):
            src = image[y]
            for x in range(w):
                line[x + r] = src[x]
            for i in range(r):
                line[r - 1 - i] = src[i + 1]
                line[w + r + i] = src[w - 2 - i]
            dst = padded[y + r]
            for x in range(w):
                s = k[r] * line[x + r]
                for j in range(r):
                    s += k[j] * (line[x + j] + line[x + 2 * r - j])
                dst[x] = s
        for i in range(r):
            padded[r - 1 - i] = padded[r + 1 + i]
            padded[r + h + i] = padded[r + h - 2 - i]

    @nb.njit(nogil=True, fastmath=_FAST, cache=_CACHE)
    def columns(padded, k, out):
        # out[y] = sum_j k[j] * padded[y + j]: four output rows a sweep share their inputs.
        # Unsigned flat indices, each written as row * width + column in full: no
        # negative-index branch, and LLVM sees every tap as a fixed row offset, so the pixel
        # loop vectorises (about 7x slower when the offsets are summed beforehand).
        h, w = out.shape
        flat = padded.ravel()
        width = np.uint64(w)
        half = np.float32(0.5)
        y = 0
        while y + 4 <= h:
            base = np.uint64(y) * width
            o0, o1, o2, o3 = out[y], out[y + 1], out[y + 2], out[y + 3]
            for xi in range(w):
                c = base + np.uint64(xi)
                s0 = k[r] * flat[c + np.uint64(r) * width]
                s1 = k[r] * flat[c + np.uint64(r + 1) * width]
                s2 = k[r] * flat[c + np.uint64(r + 2) * width]
                s3 = k[r] * flat[c + np.uint64(r + 3) * width]
                for j in range(r):
                    kj = k[j]
                    s0 += kj * (
                        flat[c + np.uint64(j) * width] + flat[c + np.uint64(2 * r - j) * width]
                    )
                    s1 += kj * (
                        flat[c + np.uint64(j + 1) * width]
                        + flat[c + np.uint64(2 * r - j + 1) * width]
                    )
                    s2 += kj * (
                        flat[c + np.uint64(j + 2) * width]
                        + flat[c + np.uint64(2 * r - j + 2) * width]
                    )
                    s3 += kj * (
                        flat[c + np.uint64(j + 3) * width]
                        + flat[c + np.uint64(2 * r - j + 3) * width]
                    )
                o0[xi] = np.int32(s0 + half)
                o1[xi] = np.int32(s1 + half)
                o2[xi] = np.int32(s2 + half)
                o3[xi] = np.int32(s3 + half)
            y += 4
        while y < h:  # the last one to three rows
            base = np.uint64(y) * width
            o = out[y]
            for xi in range(w):
                c = base + np.uint64(xi)
                s = k[r] * flat[c + np.uint64(r) * width]
                for j in range(r):
                    s += k[j] * (
                        flat[c + np.uint64(j) * width] + flat[c + np.uint64(2 * r - j) * width]
                    )
                o[xi] = np.int32(s + half)
            y += 1

    if _VALIGN and 2 * r <= 16:  # the taps of 16 outputs lie in two 16-float vectors

        @nb.njit(nogil=True, fastmath=_FAST, cache=_CACHE)
        def rows_valign(image, k, padded):
            # as rows, with the 16-wide vectors of each row made by _row_vectors; the line is
            # long enough for its aligned loads past the end (lanes it never uses)
            h, w = image.shape
            full = w // 16
            line = _empty_aligned(16 * (full + 2) + 2 * r)
            for y in range(h):
                src = image[y]
                for x in range(w):
                    line[x + r] = src[x]
                for i in range(r):
                    line[r - 1 - i] = src[i + 1]
                    line[w + r + i] = src[w - 2 - i]
                dst = padded[y + r]
                _row_vectors(line.ctypes.data, dst.ctypes.data, k.ctypes.data, full, r)
                for x in range(16 * full, w):
                    s = k[r] * line[x + r]
                    for j in range(r):
                        s += k[j] * (line[x + j] + line[x + 2 * r - j])
                    dst[x] = s
            for i in range(r):
                padded[r - 1 - i] = padded[r + 1 + i]
                padded[r + h + i] = padded[r + h - 2 - i]

        row_pass = rows_valign
    else:
        row_pass = rows

    @nb.njit(nogil=True, cache=_CACHE)
    def blur(image, k, scratch):
        h, w = image.shape
        padded = scratch[: (h + 2 * r) * w].reshape((h + 2 * r, w))
        row_pass(image, k, padded)
        out = np.empty((h, w), np.uint8)
        columns(padded, k, out)
        return out

    blur.row_passes = (rows, row_pass)  # the plain loop and the one in use, for the tests
    return blur


_scratch = threading.local()


def _scratch_for(n: int) -> np.ndarray:
    """This thread's float32 work buffer of at least ``n`` values, 64-byte aligned, kept
    between calls: a fresh half-megabyte buffer each image can come from the system as new
    pages, whose faults cost as much as the blur (glibc returns freed memory above its
    thresholds)."""
    buf = getattr(_scratch, "buf", None)
    if buf is None or buf.size < n:
        buf = _empty_aligned(n)
        _scratch.buf = buf
    return buf


def gaussian_blur(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``image`` (uint8, H x W) filtered by the symmetric 1-D ``kernel`` (odd length, weights
    summing to 1, as ``cv2.getGaussianKernel``) along both axes, border reflected (101)."""
    k = np.ascontiguousarray(kernel, dtype=np.float32).ravel()
    r = k.size // 2
    h, w = image.shape
    if k.size % 2 == 0 or h <= r or w <= r:  # the mirror needs r pixels beyond the edge one
        col = k.reshape(-1, 1)
        return cv2.sepFilter2D(image, -1, col, col, borderType=cv2.BORDER_REFLECT_101)
    return _blur_passes(r)(np.ascontiguousarray(image), k, _scratch_for((h + 2 * r) * w))


# --- bilinear resize ------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _linear_taps(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV's ``INTER_LINEAR`` source taps: ``x = (d + 0.5) * n_in / n_out - 0.5``, its
    floor and the next index with the fraction between, clamped to the edge pixel."""
    x = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    i0 = np.floor(x).astype(np.int64)
    frac = (x - i0).astype(np.float32)
    frac[i0 < 0] = 0.0
    i0[i0 < 0] = 0
    edge = i0 >= n_in - 1
    i0[edge], frac[edge] = n_in - 1, 0.0
    i1 = np.minimum(i0 + 1, n_in - 1)
    for a in (i0, i1, frac):
        a.flags.writeable = False
    return i0, i1, frac


@nb.njit(nogil=True, fastmath=_FAST, cache=_CACHE)
def _mix_rows_u8(src, i0, i1, frac, out):
    # out[r] = (1 - f) * src[i0[r]] + f * src[i1[r]], uint8 rows to float32
    for r in range(out.shape[0]):
        a, b, o = src[i0[r]], src[i1[r]], out[r]
        f = frac[r]
        g = np.float32(1.0) - f
        for x in range(o.shape[0]):
            o[x] = g * np.float32(a[x]) + f * np.float32(b[x])


@nb.njit(nogil=True, fastmath=_FAST, cache=_CACHE)
def _mix_rows_f32(src, i0, i1, frac, out):
    # the same for float32 rows, rounded to uint8
    half = np.float32(0.5)
    for r in range(out.shape[0]):
        a, b, o = src[i0[r]], src[i1[r]], out[r]
        f = frac[r]
        g = np.float32(1.0) - f
        for x in range(o.shape[0]):
            o[x] = np.int32(g * a[x] + f * b[x] + half)


def resize_linear(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)`` for a uint8
    (H x W) image (a view, such as a crop, is read in place)."""
    h_in, w_in = image.shape
    xi0, xi1, xf = _linear_taps(width, w_in)
    yi0, yi1, yf = _linear_taps(height, h_in)
    across = np.empty((width, h_in), np.float32)
    _mix_rows_u8(cv2.transpose(image), xi0, xi1, xf, across)  # columns, as rows
    out = np.empty((height, width), np.uint8)
    _mix_rows_f32(cv2.transpose(across), yi0, yi1, yf, out)
    return out


# --- colouring ------------------------------------------------------------------------------


def _stringzilla_symbols() -> None:
    """Make StringZilla's C byte routines callable from compiled code by name (the cached
    machine code refers to the names, resolved in each process)."""
    lib = ctypes.CDLL(stringzilla.__file__)
    for name in ("sz_lookup", "sz_bytesum"):
        try:
            address = ctypes.cast(getattr(lib, name), ctypes.c_void_p).value
        except AttributeError as e:
            raise ImportError(
                f"stringzilla {stringzilla.__version__} at {stringzilla.__file__} does not "
                f"export {name}; install the version pinned in requirements.lock"
            ) from e
        llvm.add_symbol(name, address)


_stringzilla_symbols()
_sz_lookup = types.ExternalFunction(
    "sz_lookup", types.void(types.voidptr, types.uintp, types.voidptr, types.voidptr)
)
_sz_bytesum = types.ExternalFunction("sz_bytesum", types.uint64(types.voidptr, types.uintp))


@nb.njit(nogil=True, cache=_CACHE)
def _blend_table(table, base, factor):
    # Pillow's Image.blend(grey(base), image, factor) per grey v, in float32 as Blend.c:
    # base + factor * (v - base), clipped to [0, 255], truncated
    f = np.float32(factor)
    b = np.float32(base)
    for v in range(256):
        x = np.float32(np.float32(v - base) * f)
        if base:
            x = np.float32(x + b)
        if x < 0:
            x = np.float32(0.0)
        elif x > 255:
            x = np.float32(255.0)
        table[v] = np.uint8(x)


@nb.njit(nogil=True, cache=_CACHE)
def _colour(image, out, brightness, contrast):
    n = image.size
    table = np.empty(256, np.uint8)
    _blend_table(table, 0, brightness)  # blend with black
    _sz_lookup(out.ctypes.data, n, image.ctypes.data, table.ctypes.data)
    mean = int(_sz_bytesum(out.ctypes.data, n) / n + 0.5)  # ImageStat's mean, as PIL rounds it
    _blend_table(table, mean, contrast)  # blend with the flat mean grey
    _sz_lookup(out.ctypes.data, n, out.ctypes.data, table.ctypes.data)


def colour(image: np.ndarray, brightness: float, contrast: float) -> np.ndarray:
    """PIL's ``ImageEnhance.Brightness(image).enhance(brightness)`` then
    ``ImageEnhance.Contrast(...).enhance(contrast)`` for a uint8 image."""
    image = np.ascontiguousarray(image)
    out = np.empty_like(image)
    _colour(image, out, float(brightness), float(contrast))
    return out


# --- horizontal flip ------------------------------------------------------------------------


@nb.njit(nogil=True, cache=_CACHE)
def _reverse_rows(image, out):
    # out[y, x] = image[y, w - 1 - x], unsigned flat indices (as ``columns``): LLVM sees a
    # reversed contiguous read and makes it whole-vector loads and byte permutations
    h, w = image.shape
    src = image.ravel()
    dst = out.ravel()
    width = np.uint64(w)
    last = np.uint64(w - 1)
    for y in range(h):
        base = np.uint64(y) * width
        for x in range(w):
            dst[base + np.uint64(x)] = src[base + last - np.uint64(x)]


def flip_horizontal(image: np.ndarray) -> np.ndarray:
    """``cv2.flip(image, 1)`` for a uint8 (H x W) image."""
    image = np.ascontiguousarray(image)
    out = np.empty_like(image)
    _reverse_rows(image, out)
    return out
