"""numpy kernels of MIL ops for deployer's ML program interpreter (runtimes/coreml.py).

Each kernel takes the op's inputs by their MIL names (coremltools' op definitions,
`coremltools/converters/mil/mil/ops/defs/iOS15..iOS18`, fill in every default when a
program is loaded) and follows the op's documented semantics. Floating inputs arrive as
float32 and kernels compute in float32: the op loop rounds each result to the dtype the
program stores (float16 in deployer's programs), as CoreML does between ops, so a
composite kernel (layer_norm, gelu...) rounds once, at its output. Integer results
(indices, shapes) are int32 as in MIL.

An op or a mode a kernel does not implement raises `UnsupportedOp` naming it: the run is
then `unverified`, never a pass by omission.
"""

from __future__ import annotations

import math

import numpy as np

from deployer.errors import CannotVerify


class UnsupportedOp(CannotVerify):
    """`op_type` is an op type ('while_loop') or an op with the mode it lacks ('pad(mode=x)');
    `where` names the program's ops of that type (the converter names them after the layer)."""

    def __init__(self, op_type: str, where: str = ""):
        at = f" (at {where})" if where else ""
        super().__init__(f"MIL op '{op_type}' is not implemented by deployer's ML program interpreter{at}: the "
                         "artifact is built but cannot be run here; verify it on macOS (coremltools runs it there)")
        self.op_type = op_type


def _ints(values) -> list[int]:
    return [int(v) for v in np.asarray(values).reshape(-1)]


def _axis(axis, rank: int) -> int:
    axis = int(axis)
    return axis + rank if axis < 0 else axis


def _axes(axes, rank: int) -> tuple[int, ...] | None:
    return None if axes is None else tuple(_axis(a, rank) for a in _ints(axes))


def _per_channel(values, rank: int) -> np.ndarray:
    """A [C] parameter shaped to broadcast along axis 1 of a rank-`rank` tensor."""
    return np.asarray(values, np.float32).reshape((1, -1) + (1,) * (rank - 2))


# ---------------------------------------------------------------------------- convolution

def _pad_same(x, k, s, d, lower=False):
    """Explicit (begin, end) padding of CoreML's 'same' for each spatial dim: the odd pixel
    goes at the end ('same') or at the beginning ('same_lower')."""
    pads = []
    for size, kk, ss, dd in zip(x.shape[2:], k, s, d):
        eff = (kk - 1) * dd + 1
        out = -(-size // ss)
        total = max(0, (out - 1) * ss + eff - size)
        small = total // 2
        pads.append((total - small, small) if lower else (small, total - small))
    return pads


def _conv_pads(x, kernel, strides, dilations, pad_type, pad):
    if pad_type in ("same", "same_lower"):
        return _pad_same(x, kernel, strides, dilations, lower=pad_type == "same_lower")
    if pad_type == "custom":
        return [(int(pad[2 * i]), int(pad[2 * i + 1])) for i in range(len(kernel))]
    if pad_type == "valid":
        return [(0, 0)] * len(kernel)
    raise UnsupportedOp(f"conv(pad_type={pad_type})")


def conv(x, weight, bias=None, strides=None, pad_type="valid", pad=None, dilations=None, groups=1):
    if x.ndim == 3:   # 1-D: as 2-D with a height of 1
        pad = None if pad is None else [0, 0, *_ints(pad)]
        strides = None if strides is None else [1, *_ints(strides)]
        dilations = None if dilations is None else [1, *_ints(dilations)]
        return conv(x[:, :, None], weight[:, :, None], bias, strides, pad_type, pad, dilations, groups)[:, :, 0]
    if x.ndim != 4:
        raise UnsupportedOp(f"conv ({x.ndim - 2}-D)")
    oc, icg, kh, kw = weight.shape
    strides = _ints(strides) if strides is not None else [1, 1]
    dilations = _ints(dilations) if dilations is not None else [1, 1]
    pads = _conv_pads(x, (kh, kw), strides, dilations, str(pad_type), pad)
    xp = np.pad(x, ((0, 0), (0, 0), *pads))
    win = np.lib.stride_tricks.sliding_window_view(xp, ((kh - 1) * dilations[0] + 1, (kw - 1) * dilations[1] + 1),
                                                   axis=(2, 3))
    win = win[:, :, ::strides[0], ::strides[1], ::dilations[0], ::dilations[1]]   # n, c, oh, ow, kh, kw
    g = int(groups)
    outs = []
    for gi in range(g):
        xs = win[:, gi * icg:(gi + 1) * icg]
        ws = weight[gi * (oc // g):(gi + 1) * (oc // g)]
        outs.append(np.einsum("ncxykl,ockl->noxy", xs, ws, optimize=True))
    y = np.concatenate(outs, 1)
    return y if bias is None else y + _per_channel(bias, 4)


def _scatter_taps(x, weight, strides, dilations, groups):
    """Every input pixel times the kernel, added at stride * position + dilation * tap: the
    transposed convolution before cropping, (n, C_out, (H-1)*s + (kH-1)*d + 1, ...)."""
    n, cin, h, w = x.shape
    cin_g, cout_g, kh, kw = weight.shape[0] // groups, weight.shape[1], weight.shape[2], weight.shape[3]
    (sh, sw), (dh, dw) = strides, dilations
    full = np.zeros((n, cout_g * groups, (h - 1) * sh + (kh - 1) * dh + 1, (w - 1) * sw + (kw - 1) * dw + 1),
                    np.float32)
    for g in range(groups):
        taps = np.einsum("nchw,cokl->noklhw", x[:, g * cin_g:(g + 1) * cin_g], weight[g * cin_g:(g + 1) * cin_g],
                         optimize=True)
        for i in range(kh):
            for j in range(kw):
                full[:, g * cout_g:(g + 1) * cout_g, i * dh:i * dh + (h - 1) * sh + 1:sh,
                     j * dw:j * dw + (w - 1) * sw + 1:sw] += taps[:, :, i, j]
    return full


def conv_transpose(x, weight, bias=None, pad=None, output_shape=None, pad_type="valid", strides=None,
                   dilations=None, groups=1):
    """2-D transposed convolution; weight (C_in, C_out / groups, kH, kW) as in PyTorch. `pad`
    crops the full result at both ends; `output_shape` sets the size kept from the begin crop
    on (PyTorch's output_padding keeps more of the end)."""
    if x.ndim != 4:
        raise UnsupportedOp(f"conv_transpose ({x.ndim - 2}-D)")
    strides = _ints(strides) if strides is not None else [1, 1]
    full = _scatter_taps(x, weight, strides, _ints(dilations) if dilations is not None else [1, 1], int(groups))
    if str(pad_type) == "custom":
        crops = np.asarray(_ints(pad)).reshape(2, 2)
    elif str(pad_type) == "same":   # the output is input * stride
        total = [max(0, f - i * s) for f, i, s in zip(full.shape[2:], x.shape[2:], strides)]
        crops = np.asarray([(t // 2, t - t // 2) for t in total])
    else:
        crops = np.zeros((2, 2), int)
    size = [f - b - e for f, (b, e) in zip(full.shape[2:], crops)]
    if output_shape is not None:   # PyTorch's output_padding: crop less at the end (zeros past the taps)
        size = _ints(output_shape)[-2:]
        full = np.pad(full, [(0, 0), (0, 0)] + [(0, max(0, b + n - f)) for f, (b, _), n
                                                 in zip(full.shape[2:], crops, size)])
    y = full[:, :, crops[0, 0]:crops[0, 0] + size[0], crops[1, 0]:crops[1, 0] + size[1]]
    return y if bias is None else y + _per_channel(bias, 4)


# ---------------------------------------------------------------------------- pooling

def _pool_dim(size, k, s, pad_type, pad, ceil_mode):
    """(pad before, pad after, overhang past the padded input, output size) of one spatial
    dim, as coremltools' `spatial_dimensions_out_shape` defines the output size."""
    if pad_type == "valid":
        begin = end = 0
    elif pad_type == "custom":
        begin, end = pad
    else:  # same / same_lower: the output is ceil(size / stride)
        total = max(0, (-(-size // s) - 1) * s + k - size)
        begin = total // 2 if pad_type == "same" else total - total // 2
        end = total - begin
    if ceil_mode:
        out = (size + begin + end - k + s - 1) // s + 1
        if (out - 1) * s >= size + begin and begin + end > 0:
            out -= 1   # the last window must start inside the input or its left padding
    else:
        out = (size + begin + end - k) // s + 1
    return begin, end, max(0, (out - 1) * s + k - (size + begin + end)), out


def _pool_windows(x, kernel_sizes, strides, pad_type, pad, ceil_mode, fill, pad_counts):
    """Every pooling window of x (n, c, *D) as (n, c, *D_out, *K), and the count of
    elements each averages over: the real ones, plus the explicit padding if `pad_counts`
    (a ceil_mode overhang past the padding is never counted, as in PyTorch)."""
    spatial = x.ndim - 2
    kernel = _ints(kernel_sizes)
    strides = _ints(strides) if strides is not None else [1] * spatial
    pads = _ints(pad) if pad is not None else [0] * 2 * spatial
    dims = [_pool_dim(x.shape[2 + i], kernel[i], strides[i], str(pad_type), pads[2 * i:2 * i + 2], bool(ceil_mode))
            for i in range(spatial)]
    widths = [(0, 0), (0, 0)] + [(b, e + over) for b, e, over, _ in dims]
    xp = np.pad(x, widths, constant_values=fill)
    real = np.pad(np.ones(x.shape[2:], np.float32), [(b, e) for b, e, _, _ in dims],
                  constant_values=1.0 if pad_counts else 0.0)
    real = np.pad(real, [(0, over) for _, _, over, _ in dims])
    axes = tuple(range(2, x.ndim))
    step = (slice(None),) * 2 + tuple(slice(None, out * s, s) for (_, _, _, out), s in zip(dims, strides))
    windows = np.lib.stride_tricks.sliding_window_view(xp, kernel, axis=axes)[step]
    counts = np.lib.stride_tricks.sliding_window_view(real, kernel)[step[2:]]
    return windows, counts.sum(tuple(range(spatial, 2 * spatial)))


def max_pool(x, kernel_sizes, strides=None, pad_type="valid", pad=None, ceil_mode=False):
    windows, _ = _pool_windows(x, kernel_sizes, strides, pad_type, pad, ceil_mode, -np.inf, True)
    return windows.max(tuple(range(x.ndim, windows.ndim)))


def avg_pool(x, kernel_sizes, strides=None, pad_type="valid", pad=None, ceil_mode=False,
             exclude_padding_from_average=False):
    windows, counts = _pool_windows(x, kernel_sizes, strides, pad_type, pad, ceil_mode, 0.0,
                                    not bool(exclude_padding_from_average))
    return windows.sum(tuple(range(x.ndim, windows.ndim))) / counts


def l2_pool(x, kernel_sizes, strides=None, pad_type="valid", pad=None, ceil_mode=False):
    windows, _ = _pool_windows(x, kernel_sizes, strides, pad_type, pad, ceil_mode, 0.0, True)
    return np.sqrt(np.square(windows).sum(tuple(range(x.ndim, windows.ndim))))


# ---------------------------------------------------------------------------- normalization

def batch_norm(x, mean, variance, gamma=None, beta=None, epsilon=1e-5):
    scale = 1.0 / np.sqrt(_per_channel(variance, x.ndim) + np.float32(epsilon))
    y = (x - _per_channel(mean, x.ndim)) * scale
    if gamma is not None:
        y = y * _per_channel(gamma, x.ndim)
    return y if beta is None else y + _per_channel(beta, x.ndim)


def _normalize(x, axes, epsilon):
    """(x - mean) / sqrt(biased variance + epsilon) over `axes`."""
    mean = x.mean(axes, keepdims=True)
    var = np.square(x - mean).mean(axes, keepdims=True)
    return (x - mean) / np.sqrt(var + np.float32(epsilon))


def instance_norm(x, gamma=None, beta=None, epsilon=1e-5):
    y = _normalize(x, tuple(range(2, x.ndim)), epsilon)
    if gamma is not None:
        y = y * _per_channel(gamma, x.ndim)
    return y if beta is None else y + _per_channel(beta, x.ndim)


def layer_norm(x, axes=None, gamma=None, beta=None, epsilon=1e-5):
    axes = _axes(axes, x.ndim) if axes is not None else tuple(range(x.ndim))
    y = _normalize(x, axes, epsilon)
    # gamma and beta have the shape x.shape[axes]: put them on those axes.
    shape = [x.shape[i] if i in axes else 1 for i in range(x.ndim)]
    if gamma is not None:
        y = y * np.asarray(gamma, np.float32).reshape(shape)
    return y if beta is None else y + np.asarray(beta, np.float32).reshape(shape)


def l2_norm(x, epsilon=1e-6):
    """Normalized over the last three dims; leading dims are batch."""
    axes = tuple(range(max(0, x.ndim - 3), x.ndim))
    return x / np.sqrt(np.square(x).sum(axes, keepdims=True) + np.float32(epsilon))


def local_response_norm(x, size, alpha=1e-4, beta=0.75, k=1.0):
    """x / (k + alpha / size * sum of x^2 over `size` channels around c)^beta (PyTorch's
    window: size // 2 channels before, (size - 1) // 2 after)."""
    size = int(size)
    sq = np.pad(np.square(x), [(0, 0), (size // 2, (size - 1) // 2)] + [(0, 0)] * (x.ndim - 2))
    window = np.lib.stride_tricks.sliding_window_view(sq, size, axis=1).sum(-1)
    return x / np.power(np.float32(k) + np.float32(alpha) / size * window, np.float32(beta))


# ---------------------------------------------------------------------------- resizing

def _grid(n_in: int, n_out: int, mode: str) -> np.ndarray:
    """Source coordinates of each output sample along one axis, for resize_bilinear's
    sampling modes (op documentation: iOS15 image_resizing.resize_bilinear)."""
    i = np.arange(n_out, dtype=np.float64)
    if mode in ("STRICT_ALIGN_CORNERS", "ALIGN_CORNERS"):
        if n_out == 1:
            g = np.full(1, (n_in - 1) / 2 if mode == "ALIGN_CORNERS" else 0.0)
        else:
            g = i * (n_in - 1) / (n_out - 1)
    elif mode == "DEFAULT":   # TensorFlow's legacy (align_corners=False, half_pixel_centers=False)
        g = i * n_in / n_out
    elif mode == "OFFSET_CORNERS":
        delta = max(1, n_in - 1) / n_out
        g = 0.5 * delta + i * delta
    elif mode == "UNALIGN_CORNERS":   # half-pixel centres: PyTorch align_corners=False, TF2
        g = (i + 0.5) * n_in / n_out - 0.5
    else:
        raise UnsupportedOp(f"resize sampling_mode={mode}")
    return np.clip(g, 0, n_in - 1)


def _linear_axis(x, axis: int, n_out: int, mode: str):
    g = _grid(x.shape[axis], n_out, mode)
    lo = np.floor(g).astype(np.int64)
    hi = np.minimum(lo + 1, x.shape[axis] - 1)
    shape = [1] * x.ndim
    shape[axis] = n_out
    frac = (g - lo).astype(np.float32).reshape(shape)
    return np.take(x, lo, axis) * (1 - frac) + np.take(x, hi, axis) * frac


def _bilinear(x, height: int, width: int, mode: str):
    return _linear_axis(_linear_axis(x, x.ndim - 2, height, mode), x.ndim - 1, width, mode)


def _scaled(size: int, scale) -> int:
    return int(np.floor(size * float(scale)))


def upsample_bilinear(x, scale_factor_height=1, scale_factor_width=1, align_corners=True, half_pixel_centers=None):
    """Output floor(size * scale); the sampling grid is recomputed from the output size."""
    if half_pixel_centers is None:
        half_pixel_centers = not bool(align_corners)
    mode = "STRICT_ALIGN_CORNERS" if bool(align_corners) else "UNALIGN_CORNERS" if bool(half_pixel_centers) \
        else "DEFAULT"
    h, w = x.shape[-2:]
    return _bilinear(x, _scaled(h, scale_factor_height), _scaled(w, scale_factor_width), mode)


def resize_bilinear(x, target_size_height=1, target_size_width=1, sampling_mode="DEFAULT"):
    return _bilinear(x, int(target_size_height), int(target_size_width), str(sampling_mode))


def _nearest(x, height: int, width: int, half_pixel: bool):
    """Source index floor(i * in / out), or with half-pixel centres floor((i + 0.5) * in / out)
    (TensorFlow's ResizeNearestNeighbor(half_pixel_centers=True), what the converter maps to
    resize_nearest_neighbor), clamped to the input."""
    for axis, n_out in ((x.ndim - 2, height), (x.ndim - 1, width)):
        n_in = x.shape[axis]
        i = np.arange(n_out, dtype=np.float64) + (0.5 if half_pixel else 0.0)
        x = np.take(x, np.minimum(np.floor(i * n_in / n_out).astype(np.int64), n_in - 1), axis)
    return x


def upsample_nearest_neighbor(x, scale_factor_height=1, scale_factor_width=1):
    h, w = x.shape[-2:]
    return _nearest(x, _scaled(h, scale_factor_height), _scaled(w, scale_factor_width), half_pixel=False)


def resize_nearest_neighbor(x, target_size_height, target_size_width):
    return _nearest(x, int(target_size_height), int(target_size_width), half_pixel=True)


def resize(x, shape, resized_dims, interpolation_mode="LINEAR", sampling_mode="DEFAULT"):
    """iOS17's resize of the last `resized_dims` (1 or 2) dims to `shape`."""
    dims = int(resized_dims)
    size = _ints(shape)[-dims:]
    if dims == 1:
        size = [x.shape[-2], size[0]]
    if str(interpolation_mode) == "NEAREST_NEIGHBOR":
        return _nearest(x, size[0], size[1], half_pixel=str(sampling_mode) == "UNALIGN_CORNERS")
    return _bilinear(x, size[0], size[1], str(sampling_mode))


# ---------------------------------------------------------------------------- tensor transformation

def split(x, axis, num_splits=None, split_sizes=None):
    axis = _axis(axis, x.ndim)
    if split_sizes is None:
        return tuple(np.split(x, int(num_splits), axis))
    return tuple(np.split(x, np.cumsum(_ints(split_sizes))[:-1], axis))


def concat(values, axis, interleave=False):
    axis = _axis(axis, values[0].ndim)
    if not bool(interleave):
        return np.concatenate(values, axis)
    # output[i::n] = values[i] along axis
    stacked = np.stack(values, axis + 1)
    shape = list(values[0].shape)
    shape[axis] *= len(values)
    return stacked.reshape(shape)


def reshape(x, shape):
    """A 0 in shape copies x's dim at the same position counted from the right (1 past its rank)."""
    shape = _ints(shape)
    for i, s in enumerate(shape):
        if s == 0:
            j = x.ndim - (len(shape) - i)
            shape[i] = x.shape[j] if j >= 0 else 1
    return x.reshape(shape)


def slice_by_index(x, begin, end, stride=None, begin_mask=None, end_mask=None, squeeze_mask=None):
    idx = []
    for i in range(x.ndim):
        b = None if (begin_mask is not None and begin_mask[i]) else int(begin[i])
        e = None if (end_mask is not None and end_mask[i]) else int(end[i])
        s = int(stride[i]) if stride is not None else 1
        idx.append(int(b) if squeeze_mask is not None and squeeze_mask[i] else slice(b, e, s))
    return x[tuple(idx)]


def crop(x, crop_height, crop_width):
    """Removes (top, bottom) rows and (left, right) columns of the last two dims."""
    (top, bottom), (left, right) = _ints(crop_height), _ints(crop_width)
    return x[..., top:x.shape[-2] - bottom, left:x.shape[-1] - right]


def slice_by_size(x, begin, size):
    begin, size = _ints(begin), _ints(size)
    return x[tuple(slice(b, None if s == -1 else b + s) for b, s in zip(begin, size))]


def squeeze(x, axes=None):
    return np.squeeze(x, _axes(axes, x.ndim))


def flatten2d(x, axis=1):
    axis = _axis(axis, x.ndim)
    return x.reshape(int(np.prod(x.shape[:axis])), -1)


def depth_to_space(x, block_size):
    """TensorFlow's depth_to_space (DCR) in NCHW: channel (i * b + j) * C' + c goes to (h*b+i, w*b+j)."""
    b = int(block_size)
    n, c, h, w = x.shape
    y = x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
    return y.reshape(n, c // (b * b), h * b, w * b)


def space_to_depth(x, block_size):
    b = int(block_size)
    n, c, h, w = x.shape
    y = x.reshape(n, c, h // b, b, w // b, b).transpose(0, 3, 5, 1, 2, 4)
    return y.reshape(n, c * b * b, h // b, w // b)


def pixel_shuffle(x, upscale_factor):
    """PyTorch's pixel_shuffle (CRD): channel c * b * b + i * b + j goes to (h*b+i, w*b+j)."""
    b = int(upscale_factor)
    *lead, c, h, w = x.shape
    y = x.reshape(*lead, c // (b * b), b, b, h, w)
    y = np.moveaxis(y, (-4, -3), (-3, -1))   # ..., c', h, i, w, j
    return y.reshape(*lead, c // (b * b), h * b, w * b)


def pad(x, pad, mode="constant", constant_val=0.0):
    """`pad` holds (before, after) pairs for the last len(pad) / 2 dims."""
    pairs = np.asarray(_ints(pad)).reshape(-1, 2).tolist()
    widths = [(0, 0)] * (x.ndim - len(pairs)) + [tuple(p) for p in pairs]
    mode = str(mode)
    if mode == "constant":
        return np.pad(x, widths, constant_values=np.asarray(constant_val, x.dtype))
    if mode in ("reflect", "replicate"):
        return np.pad(x, widths, mode="reflect" if mode == "reflect" else "edge")
    raise UnsupportedOp(f"pad(mode={mode})")


def cumsum(x, axis=0, exclusive=False, reverse=False):
    axis = _axis(axis, x.ndim)
    y = np.flip(x, axis) if bool(reverse) else x
    out = np.cumsum(y, axis, dtype=x.dtype)
    if bool(exclusive):
        out = np.concatenate([np.zeros_like(np.take(out, [0], axis)), np.take(out, range(out.shape[axis] - 1), axis)],
                             axis)
    return np.flip(out, axis) if bool(reverse) else out


# ---------------------------------------------------------------------------- gather

def _gather(x, indices, axis: int, batch_dims: int):
    if batch_dims == 0:
        return np.take(x, indices, axis)
    return np.stack([_gather(x[b], indices[b], axis - 1, batch_dims - 1) for b in range(x.shape[0])])


def gather(x, indices, axis=0, batch_dims=0, validate_indices=False):
    return _gather(x, np.asarray(indices, np.int64), _axis(axis, x.ndim), int(batch_dims))


def gather_along_axis(x, indices, axis=0, validate_indices=False):
    axis = _axis(axis, x.ndim)
    indices = np.asarray(indices, np.int64)
    return np.take_along_axis(x, np.where(indices < 0, indices + x.shape[axis], indices), axis)


def _gather_nd(x, indices, batch_dims: int):
    if batch_dims == 0:
        return x[tuple(np.moveaxis(indices, -1, 0))]
    return np.stack([_gather_nd(x[b], indices[b], batch_dims - 1) for b in range(x.shape[0])])


def gather_nd(x, indices, batch_dims=0, validate_indices=False):
    """tf.gather_nd: the last dim of indices indexes the leading dims of x (after batch_dims)."""
    return _gather_nd(x, np.asarray(indices, np.int64), int(batch_dims))


# ---------------------------------------------------------------------------- reductions, sorting

def _reduce(fn):
    def kernel(x, axes=None, keep_dims=False):
        return fn(x, _axes(axes, x.ndim), bool(keep_dims))
    return kernel


def _arg_reduce(fn):
    def kernel(x, axis=-1, keep_dims=False, output_dtype="int32"):
        out = fn(x, axis=_axis(axis, x.ndim), keepdims=bool(keep_dims))
        return out.astype(np.int32)
    return kernel


def _order(x, axis: int, ascending: bool) -> np.ndarray:
    """Sorting indices along axis; ties keep the lower index first in both directions."""
    return np.argsort(x if ascending else -x, axis=axis, kind="stable")


def topk(x, k=1, axis=-1, ascending=False, sort=True, return_indices=True, output_indices_dtype="int32"):
    axis = _axis(axis, x.ndim)
    k = x.shape[axis] if int(k) == -1 else int(k)
    idx = np.take(_order(x, axis, bool(ascending)), range(k), axis)
    values = np.take_along_axis(x, idx, axis)
    return (values, idx.astype(np.int32)) if bool(return_indices) else values


def argsort(x, axis=-1, ascending=False):
    return _order(x, _axis(axis, x.ndim), bool(ascending)).astype(np.int32)


def softmax(x, axis=-1):
    axis = _axis(axis, x.ndim)
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


# ---------------------------------------------------------------------------- activations

def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def softplus(x):
    return np.logaddexp(np.float32(0), x)


def prelu(x, alpha):
    a = _per_channel(alpha, x.ndim)
    return np.maximum(x, 0) + a * np.minimum(x, 0)


def leaky_relu(x, alpha):
    return np.where(x >= 0, x, np.float32(alpha) * x)


def elu(x, alpha):
    return np.where(x > 0, x, np.float32(alpha) * np.expm1(np.minimum(x, 0)))


def softplus_parametric(x, alpha, beta):
    return _per_channel(alpha, x.ndim) * softplus(x * _per_channel(beta, x.ndim))


def erf(x):
    """numpy has no erf (and scipy is not a dependency): Numerical Recipes' Chebyshev fit of
    erfc, fractional error below 1.2e-7 everywhere, about float32's resolution."""
    a = np.abs(x).astype(np.float64)
    t = 1.0 / (1.0 + 0.5 * a)
    poly = -a * a - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))))
    y = 1.0 - t * np.exp(poly)
    return (np.sign(x) * y).astype(np.float32)


def gelu(x, mode="EXACT"):
    mode = str(mode)
    if mode == "EXACT":
        return np.float32(0.5) * x * (1 + erf(x / np.float32(math.sqrt(2))))
    if mode == "TANH_APPROXIMATION":
        inner = np.float32(math.sqrt(2 / math.pi)) * (x + np.float32(0.044715) * x ** 3)
        return np.float32(0.5) * x * (1 + np.tanh(inner))
    if mode == "SIGMOID_APPROXIMATION":
        return x * sigmoid(np.float32(1.702) * x)
    raise UnsupportedOp(f"gelu(mode={mode})")


# ---------------------------------------------------------------------------- detection

def _corners(boxes):
    """(x_center, y_center, w, h) -> x1, y1, x2, y2 (float32)."""
    cx, cy, w, h = (boxes[..., i] for i in range(4))
    return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2


def _greedy_nms(boxes, scores, iou_threshold: float) -> list[int]:
    """Indices kept by greedy NMS in descending score order (ties: lower index first);
    a box is suppressed by a kept one when their IoU > iou_threshold."""
    x1, y1, x2, y2 = _corners(boxes)
    area = (x2 - x1) * (y2 - y1)
    keep = []
    for i in np.argsort(-scores, kind="stable"):
        if keep:
            k = np.asarray(keep)
            inter = (np.clip(np.minimum(x2[i], x2[k]) - np.maximum(x1[i], x1[k]), 0, None)
                     * np.clip(np.minimum(y2[i], y2[k]) - np.maximum(y1[i], y1[k]), 0, None))
            if (inter / (area[i] + area[k] - inter) > iou_threshold).any():
                continue
        keep.append(int(i))
    return keep


def _pick_top(boxes, best, candidates, labels, iou_threshold: float) -> list[int]:
    """Greedy NMS of the `candidates` rows, ranked by `best`; with `labels`, only boxes of the
    same label suppress each other. Kept rows in descending score order (ties: lower index
    first), the per-label results merged in that order."""
    if labels is None:
        return [int(candidates[i]) for i in _greedy_nms(boxes[candidates], best[candidates], iou_threshold)]
    kept = []
    for c in np.unique(labels[candidates]):
        members = candidates[labels[candidates] == c]
        kept += [int(members[i]) for i in _greedy_nms(boxes[members], best[members], iou_threshold)]
    return sorted(kept, key=lambda i: (-best[i], i))


def _nms_one(boxes, scores, iou_threshold, score_threshold, max_boxes, per_class):
    """One image: boxes (B, 4) centre-size, scores (B, K). A box ranks by its best class
    score; boxes scoring at most score_threshold are dropped first. Per-class suppression
    only compares boxes whose best class is the same; the merged result is in descending
    score order. Core ML returns at least one box: the best one when none survives."""
    best = scores.max(-1)
    candidates = np.flatnonzero(best > score_threshold)
    kept = _pick_top(boxes, best, candidates, scores.argmax(-1) if per_class else None, iou_threshold)
    if not kept:
        kept = [int(np.argmax(best))]
    return kept[:max_boxes]


def nms_model(confidence, coordinates, iou_threshold: float, confidence_threshold: float, per_class: bool,
              max_boxes: int | None = None) -> np.ndarray:
    """Core ML's NonMaximumSuppression *model* (a pipeline stage, NonMaximumSuppression.proto,
    not the MIL op above): confidence (N, C), coordinates (N, 4) centre x, centre y, width,
    height. Rows whose best confidence is below `confidence_threshold` are discarded first
    ("remove bounding boxes below this threshold"); PickTop then keeps the most confident box
    and suppresses the others within the IoU radius, boxes whose IoU with it is above
    `iou_threshold` (the proto words it the other way round, but says 1.0 means no
    suppression, which only "above" gives); with perClass, only among boxes of the same label,
    "argmax of the confidence". Returns the kept rows, most confident first, at most
    `max_boxes`; unlike the MIL op, none when nothing passes the threshold."""
    confidence = np.asarray(confidence, np.float32)
    confidence = confidence.reshape(-1, confidence.shape[-1])
    best = confidence.max(-1) if confidence.size else np.zeros(len(confidence), np.float32)
    candidates = np.flatnonzero(best >= np.float32(confidence_threshold))
    labels = confidence.argmax(-1) if per_class and confidence.size else None
    kept = _pick_top(np.asarray(coordinates, np.float32), best, candidates, labels, float(iou_threshold))
    return np.asarray(kept[:max_boxes] if max_boxes is not None else kept, np.int64)


def non_maximum_suppression(boxes, scores, iou_threshold, max_boxes, score_threshold=None,
                            per_class_suppression=False):
    """iOS15: boxes (n, B, 4), scores (n, B, K) -> boxes, scores, indices (padded with 0, 0, -1
    up to max_boxes) and the count per image. iOS17 (no score_threshold): boxes (n, 4, B),
    scores (n, K, B) -> the first three, box axis last."""
    ios17 = score_threshold is None
    if ios17:
        boxes, scores = boxes.transpose(0, 2, 1), scores.transpose(0, 2, 1)
    n, _, k = scores.shape
    max_boxes = int(max_boxes)
    out_boxes = np.zeros((n, max_boxes, 4), np.float32)
    out_scores = np.zeros((n, max_boxes, k), np.float32)
    out_idx = np.full((n, max_boxes), -1, np.int32)
    counts = np.zeros(n, np.int32)
    threshold = -np.inf if ios17 else float(score_threshold)
    for b in range(n):
        kept = _nms_one(boxes[b], scores[b], float(iou_threshold), threshold, max_boxes, bool(per_class_suppression))
        counts[b] = len(kept)
        out_boxes[b, :len(kept)] = boxes[b, kept]
        out_scores[b, :len(kept)] = scores[b, kept]
        out_idx[b, :len(kept)] = kept
    if ios17:
        return out_boxes.transpose(0, 2, 1), out_scores.transpose(0, 2, 1), out_idx
    return out_boxes, out_scores, out_idx, counts


# ---------------------------------------------------------------------------- the table

def _cast(x, dtype):
    dtypes = {"fp16": np.float16, "fp32": np.float32, "int32": np.int32, "int16": np.int16, "int8": np.int8,
              "uint8": np.uint8, "uint16": np.uint16, "bool": bool}
    if str(dtype) not in dtypes:
        raise UnsupportedOp(f"cast(dtype={dtype})")
    return x.astype(dtypes[str(dtype)])


def _matmul(x, y, transpose_x=False, transpose_y=False):
    return np.matmul(np.swapaxes(x, -1, -2) if bool(transpose_x) else x,
                     np.swapaxes(y, -1, -2) if bool(transpose_y) else y)


def _linear(x, weight, bias=None):
    y = x @ weight.T
    return y if bias is None else y + bias


def _one_hot(indices, one_hot_vector_size, axis=-1, on_value=1, off_value=0):
    depth = int(one_hot_vector_size)
    hot = np.arange(depth) == np.asarray(indices)[..., None]
    out = np.where(hot, np.asarray(on_value), np.asarray(off_value))
    return np.moveaxis(out, -1, _axis(axis, out.ndim))


def _band_part(x, lower=-1, upper=-1):
    rows, cols = np.indices(x.shape[-2:])
    lower, upper = int(lower), int(upper)
    keep = ((lower < 0) | (rows - cols <= lower)) & ((upper < 0) | (cols - rows <= upper))
    return np.where(keep, x, np.zeros_like(x))


def _unary(fn):
    return lambda x: fn(x)


def _binary(fn):
    return lambda x, y: fn(x, y)


_EPSILON_DEFAULTS = {"log": 1e-45, "rsqrt": 1e-12, "inverse": 1e-4}


KERNELS = {
    # elementwise binary (broadcasting as numpy)
    "add": _binary(np.add), "sub": _binary(np.subtract), "mul": _binary(np.multiply),
    "real_div": _binary(np.true_divide), "floor_div": _binary(np.floor_divide), "mod": _binary(np.mod),
    "pow": _binary(np.power), "maximum": _binary(np.maximum), "minimum": _binary(np.minimum),
    "equal": _binary(np.equal), "not_equal": _binary(np.not_equal), "greater": _binary(np.greater),
    "greater_equal": _binary(np.greater_equal), "less": _binary(np.less), "less_equal": _binary(np.less_equal),
    "logical_and": _binary(np.logical_and), "logical_or": _binary(np.logical_or),
    "logical_xor": _binary(np.logical_xor), "logical_not": _unary(np.logical_not),
    "select": lambda cond, a, b: np.where(cond, a, b),
    # elementwise unary
    "abs": _unary(np.abs), "ceil": _unary(np.ceil), "floor": _unary(np.floor), "round": _unary(np.round),
    "sign": _unary(np.sign), "square": _unary(np.square), "sqrt": _unary(np.sqrt), "exp": _unary(np.exp),
    "exp2": _unary(np.exp2), "sin": _unary(np.sin), "cos": _unary(np.cos), "tan": _unary(np.tan),
    "asin": _unary(np.arcsin), "acos": _unary(np.arccos), "atan": _unary(np.arctan), "sinh": _unary(np.sinh),
    "cosh": _unary(np.cosh), "tanh": _unary(np.tanh), "atanh": _unary(np.arctanh), "erf": erf,
    "log": lambda x, epsilon=_EPSILON_DEFAULTS["log"]: np.log(x + np.float32(epsilon)),
    "rsqrt": lambda x, epsilon=_EPSILON_DEFAULTS["rsqrt"]: 1.0 / np.sqrt(x + np.float32(epsilon)),
    "inverse": lambda x, epsilon=_EPSILON_DEFAULTS["inverse"]: 1.0 / (x + np.float32(epsilon)),
    "clip": lambda x, alpha, beta: np.minimum(np.maximum(x, np.float32(alpha)), np.float32(beta)),
    "threshold": lambda x, alpha: np.maximum(x, np.float32(alpha)),
    "cast": _cast,
    "identity": lambda x: x,
    # activations
    "relu": lambda x: np.maximum(x, 0), "relu6": lambda x: np.clip(x, 0, 6), "sigmoid": sigmoid,
    "softplus": softplus, "silu": lambda x: x * sigmoid(x), "softsign": lambda x: x / (1 + np.abs(x)),
    "softmax": softmax, "prelu": prelu, "leaky_relu": leaky_relu, "elu": elu, "gelu": gelu,
    "thresholded_relu": lambda x, alpha: np.where(x >= np.float32(alpha), x, np.zeros_like(x)),
    "sigmoid_hard": lambda x, alpha, beta: np.clip(np.float32(alpha) * x + np.float32(beta), 0, 1),
    "clamped_relu": lambda x, alpha, beta: np.minimum(np.where(x >= 0, x, np.float32(alpha) * x), np.float32(beta)),
    "scaled_tanh": lambda x, alpha, beta: np.float32(alpha) * np.tanh(np.float32(beta) * x),
    "linear_activation": lambda x, alpha, beta: np.float32(alpha) * x + np.float32(beta),
    "softplus_parametric": softplus_parametric,
    # linear algebra, convolution, pooling, normalization
    "matmul": _matmul, "linear": _linear, "einsum": lambda values, equation: np.einsum(str(equation), *values),
    "conv": conv, "conv_transpose": conv_transpose, "max_pool": max_pool, "avg_pool": avg_pool, "l2_pool": l2_pool,
    "batch_norm": batch_norm, "instance_norm": instance_norm, "layer_norm": layer_norm, "l2_norm": l2_norm,
    "local_response_norm": local_response_norm,
    # resizing
    "upsample_nearest_neighbor": upsample_nearest_neighbor, "upsample_bilinear": upsample_bilinear,
    "resize_nearest_neighbor": resize_nearest_neighbor, "resize_bilinear": resize_bilinear, "resize": resize,
    # tensor transformation
    "reshape": reshape, "transpose": lambda x, perm: x.transpose(_ints(perm)), "concat": concat,
    "split": split, "stack": lambda values, axis: np.stack(values, _axis(axis, values[0].ndim + 1)),
    "slice_by_index": slice_by_index, "slice_by_size": slice_by_size, "crop": crop,
    "tile": lambda x, reps: np.tile(x, _ints(reps)),
    "expand_dims": lambda x, axes: np.expand_dims(x, tuple(int(a) for a in _ints(axes))),
    "squeeze": squeeze, "flatten2d": flatten2d, "reverse": lambda x, axes=None: np.flip(x, _axes(axes, x.ndim)),
    "depth_to_space": depth_to_space, "space_to_depth": space_to_depth, "pixel_shuffle": pixel_shuffle,
    "pad": pad, "cumsum": cumsum, "one_hot": _one_hot, "band_part": _band_part,
    "shape": lambda x: np.asarray(x.shape, np.int32),
    "fill": lambda shape, value=0.0: np.full(_ints(shape), value),
    "range_1d": lambda end, start, step: np.arange(start, end, step),
    # gather
    "gather": gather, "gather_along_axis": gather_along_axis, "gather_nd": gather_nd,
    # reductions, sorting
    "reduce_sum": _reduce(lambda x, a, k: x.sum(a, keepdims=k)),
    "reduce_mean": _reduce(lambda x, a, k: x.mean(a, keepdims=k)),
    "reduce_max": _reduce(lambda x, a, k: x.max(a, keepdims=k)),
    "reduce_min": _reduce(lambda x, a, k: x.min(a, keepdims=k)),
    "reduce_prod": _reduce(lambda x, a, k: x.prod(a, keepdims=k)),
    "reduce_l1_norm": _reduce(lambda x, a, k: np.abs(x).sum(a, keepdims=k)),
    "reduce_l2_norm": _reduce(lambda x, a, k: np.sqrt(np.square(x).sum(a, keepdims=k))),
    "reduce_sum_square": _reduce(lambda x, a, k: np.square(x).sum(a, keepdims=k)),
    "reduce_log_sum": _reduce(lambda x, a, k: np.log(x.sum(a, keepdims=k))),
    "reduce_log_sum_exp": _reduce(lambda x, a, k: np.log(np.exp(x - x.max(a, keepdims=True)).sum(a, keepdims=k))
                                  + x.max(a, keepdims=k)),
    "reduce_argmax": _arg_reduce(np.argmax), "reduce_argmin": _arg_reduce(np.argmin),
    "topk": topk, "argsort": argsort,
    "non_maximum_suppression": non_maximum_suppression,
}
