"""The MIL interpreter's numpy kernels against PyTorch (and numpy) references on random arrays,
with the parameters coremltools' converters give each op. Kernels compute in float32 (the op
loop rounds to float16 between ops), so they must match float32 references closely."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deployer.runtimes import coreml_ops as ops
from deployer.runtimes.coreml_ops import KERNELS

RNG = np.random.default_rng(0)
TOL = dict(rtol=1e-5, atol=1e-5)


def rand(*shape, low=-2.0, high=2.0):
    return RNG.uniform(low, high, shape).astype(np.float32)


def t(x):
    return torch.from_numpy(np.asarray(x))


def close(got, want, **tol):
    want = want.numpy() if isinstance(want, torch.Tensor) else want
    assert np.asarray(got).shape == np.asarray(want).shape
    np.testing.assert_allclose(got, want, **(tol or TOL))


# ---------------------------------------------------------------------------- pooling

@pytest.mark.parametrize("k,s,p,ceil", [(5, 1, 2, False), (3, 2, 1, True), (3, 2, 0, True), (2, 2, 0, False),
                                        (3, 2, 1, False)])
def test_max_pool_matches_torch(k, s, p, ceil):
    x = rand(1, 3, 11, 14)
    got = KERNELS["max_pool"](x, [k, k], [s, s], "custom", [p] * 4, ceil)
    close(got, F.max_pool2d(t(x), k, s, p, ceil_mode=ceil))


@pytest.mark.parametrize("include_pad", [True, False])
@pytest.mark.parametrize("k,s,p,ceil", [(3, 2, 1, True), (3, 1, 1, False), (2, 2, 0, True), (3, 2, 1, False)])
def test_avg_pool_matches_torch(k, s, p, ceil, include_pad):
    x = rand(2, 3, 9, 12)
    got = KERNELS["avg_pool"](x, [k, k], [s, s], "custom", [p] * 4, ceil, exclude_padding_from_average=not include_pad)
    close(got, F.avg_pool2d(t(x), k, s, p, ceil_mode=ceil, count_include_pad=include_pad))


def _same_pads(size, k, s):
    total = max(0, (-(-size // s) - 1) * s + k - size)
    return total // 2, total - total // 2


@pytest.mark.parametrize("k,s", [(3, 2), (2, 2), (3, 1), (4, 3)])
def test_same_pooling_pads_the_end_more_and_averages_real_pixels(k, s):
    """TensorFlow's SAME: the odd padding pixel goes at the end, averages exclude padding."""
    x = rand(1, 2, 10, 7)
    (t0, b0), (l0, r0) = _same_pads(10, k, s), _same_pads(7, k, s)
    padded = F.pad(t(x), (l0, r0, t0, b0), value=-np.inf)
    close(KERNELS["max_pool"](x, [k, k], [s, s], "same", None, False), F.max_pool2d(padded, k, s))
    zeros = F.pad(t(x), (l0, r0, t0, b0))
    ones = F.pad(torch.ones_like(t(x)), (l0, r0, t0, b0))
    want = F.avg_pool2d(zeros, k, s) / F.avg_pool2d(ones, k, s)
    close(KERNELS["avg_pool"](x, [k, k], [s, s], "same", None, False, exclude_padding_from_average=True), want)


def test_l2_pool_and_1d_pooling():
    x = rand(1, 3, 8, 8, low=0.1)
    close(KERNELS["l2_pool"](x, [2, 2], [2, 2], "valid"), F.lp_pool2d(t(x), 2, 2, 2))
    x1 = rand(1, 4, 13)
    close(KERNELS["max_pool"](x1, [3], [2], "custom", [1, 1], False), F.max_pool1d(t(x1), 3, 2, 1))


def test_conv_1d_and_same_padding_match_torch():
    x, w, b = rand(1, 4, 9, 11), rand(6, 2, 3, 3), rand(6)
    close(KERNELS["conv"](x, w, b, [1, 1], "custom", [1, 1, 2, 0], [1, 1], 2),
          F.conv2d(F.pad(t(x), (2, 0, 1, 1)), t(w), t(b), groups=2), rtol=1e-5, atol=1e-5)
    # TensorFlow's SAME with stride 2 on an odd size: the extra padding pixel at the end (or start)
    x2 = rand(1, 4, 10, 12)
    for pad_type, pads in (("same", (0, 1, 0, 1)), ("same_lower", (1, 0, 1, 0))):
        close(KERNELS["conv"](x2, w, b, [2, 2], pad_type, None, [1, 1], 2),
              F.conv2d(F.pad(t(x2), pads), t(w), t(b), stride=2, groups=2), rtol=1e-5, atol=1e-5)
    x1, w1 = rand(1, 4, 13), rand(5, 4, 3)
    close(KERNELS["conv"](x1, w1, None, [2], "custom", [1, 1], [2], 1),
          F.conv1d(t(x1), t(w1), stride=2, padding=1, dilation=2), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("k,s,p,op,d,g", [(2, 2, 0, 0, 1, 1), (3, 2, 1, 1, 1, 1), (4, 2, 1, 0, 1, 2),
                                         (3, 1, 1, 0, 2, 1)])
def test_conv_transpose_matches_torch(k, s, p, op, d, g):
    """As the converter writes ConvTranspose2d: pad crops, output_shape adds PyTorch's output_padding."""
    x, w, b = rand(1, 4, 5, 6), rand(4, 6 // g, k, k), rand(6)
    want = F.conv_transpose2d(t(x), t(w), t(b), s, p, op, g, d)
    got = KERNELS["conv_transpose"](x, w, b, [p] * 4, list(want.shape), "custom", [s, s], [d, d], g)
    close(got, want, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------- normalization

def test_batch_instance_layer_norm_match_torch():
    x = rand(2, 5, 6, 7)
    mean, var, gamma, beta = rand(5), rand(5, low=0.2), rand(5), rand(5)
    close(KERNELS["batch_norm"](x, mean, var, gamma, beta, 1e-3),
          F.batch_norm(t(x), t(mean), t(var), t(gamma), t(beta), eps=1e-3))
    close(KERNELS["instance_norm"](x, gamma, beta, 1e-5), F.instance_norm(t(x), weight=t(gamma), bias=t(beta)))
    g2, b2 = rand(6, 7), rand(6, 7)
    close(KERNELS["layer_norm"](x, [-2, -1], g2, b2, 1e-5), F.layer_norm(t(x), (6, 7), t(g2), t(b2)))
    # Over the channel axis of NCHW (Keras LayerNormalization after a transpose): gamma is [C].
    want = ((x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + 1e-3)) * gamma.reshape(1, 5, 1, 1)
    close(KERNELS["layer_norm"](x, [1], gamma, None, 1e-3), want, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------- resizing

@pytest.mark.parametrize("mode,out,grid", [
    # the grid points of the op's documentation (iOS15 resize_bilinear), input [0, 1]
    ("UNALIGN_CORNERS", 5, [0.0, 0.1, 0.5, 0.9, 1.0]),
    ("STRICT_ALIGN_CORNERS", 5, [0.0, 0.25, 0.5, 0.75, 1.0]),
    ("DEFAULT", 5, [0.0, 0.4, 0.8, 1.0, 1.0]),
    ("OFFSET_CORNERS", 5, [0.1, 0.3, 0.5, 0.7, 0.9]),
    ("UNALIGN_CORNERS", 6, [0.0, 0.0, 1 / 3, 2 / 3, 1.0, 1.0]),
    ("DEFAULT", 6, [0.0, 1 / 3, 2 / 3, 1.0, 1.0, 1.0]),
    ("OFFSET_CORNERS", 6, [0.5 / 6 + i / 6 for i in range(6)]),
])
def test_resize_bilinear_sampling_modes_follow_the_op_documentation(mode, out, grid):
    x = np.asarray([[[0.0, 1.0]]], np.float32)   # (1, 1, 2): width 2, values = coordinates
    close(KERNELS["resize_bilinear"](x, 1, out, mode)[0, 0], np.asarray(grid, np.float32), atol=1e-6)


@pytest.mark.parametrize("size,align", [((20, 24), False), ((20, 24), True), ((13, 11), False), ((7, 5), False),
                                        ((13, 11), True)])
def test_bilinear_matches_torch_interpolate(size, align):
    x = rand(1, 3, 10, 12)
    want = F.interpolate(t(x), size=size, mode="bilinear", align_corners=align)
    # the converter's scale factors: floor(in * scale) is the output size
    scale_h, scale_w = (size[0] + 1e-4) / 10, (size[1] + 1e-4) / 12
    close(KERNELS["upsample_bilinear"](x, scale_h, scale_w, align), want)
    close(KERNELS["resize_bilinear"](x, size[0], size[1], "STRICT_ALIGN_CORNERS" if align else "UNALIGN_CORNERS"),
          want)


def test_tensorflow_legacy_bilinear_is_default_mode():
    """upsample_bilinear(align_corners=False, half_pixel_centers=False): source i * in / out."""
    x = rand(1, 2, 4, 6)
    got = KERNELS["upsample_bilinear"](x, 2.0, 2.0, False, False)
    close(got, KERNELS["resize_bilinear"](x, 8, 12, "DEFAULT"))
    close(got[..., ::2, ::2], x)   # even outputs sit on the input samples


@pytest.mark.parametrize("size", [(20, 24), (13, 11), (4, 30)])
def test_nearest_matches_torch(size):
    x = rand(1, 3, 10, 12)
    scale_h, scale_w = (size[0] + 1e-4) / 10, (size[1] + 1e-4) / 12
    close(KERNELS["upsample_nearest_neighbor"](x, scale_h, scale_w), F.interpolate(t(x), size=size, mode="nearest"))
    # TensorFlow's half-pixel nearest (what resize_nearest_neighbor stands for) is torch's nearest-exact
    close(KERNELS["resize_nearest_neighbor"](x, *size), F.interpolate(t(x), size=size, mode="nearest-exact"))


# ---------------------------------------------------------------------------- tensor ops

def test_split_concat_stack_tile():
    x = rand(2, 10, 3)
    for got, want in zip(KERNELS["split"](x, 1, num_splits=2), torch.chunk(t(x), 2, 1)):
        close(got, want)
    for got, want in zip(KERNELS["split"](x, -2, split_sizes=[3, 7]), torch.split(t(x), [3, 7], 1)):
        close(got, want)
    a, b = rand(3, 2), rand(3, 2)
    close(KERNELS["concat"]([a, b], 0, True), np.stack([a, b], 1).reshape(6, 2))   # output[0::2] = a
    close(KERNELS["concat"]([a, b], -1), np.concatenate([a, b], 1))
    close(KERNELS["stack"]([a, b], -1), torch.stack([t(a), t(b)], -1))
    close(KERNELS["tile"](a, [2, 3]), t(a).tile(2, 3))


def test_shape_ops():
    x = rand(2, 1, 3, 4)
    # a 0 copies x's dim at the same position counted from the right (1 past x's rank): the doc's example
    assert KERNELS["reshape"](rand(2, 50), [1, 0, -1, 0]).shape == (1, 1, 2, 50)
    close(KERNELS["reshape"](x, [0, 0, -1, 2]), x.reshape(2, 1, 6, 2))
    close(KERNELS["transpose"](x, [0, 2, 3, 1]), x.transpose(0, 2, 3, 1))
    close(KERNELS["squeeze"](x, [1]), x[:, 0])
    close(KERNELS["expand_dims"](x, [-1]), x[..., None])
    close(KERNELS["slice_by_size"](x, [0, 0, 1, 1], [-1, 1, 2, -1]), x[:, :, 1:3, 1:])
    close(KERNELS["flatten2d"](x, 2), x.reshape(2, 12))
    close(KERNELS["crop"](x, [1, 0], [0, 2]), x[..., 1:, :2])
    y = rand(1, 12, 3, 5)
    close(KERNELS["pixel_shuffle"](y, 2), F.pixel_shuffle(t(y), 2))
    close(KERNELS["depth_to_space"](KERNELS["space_to_depth"](x.reshape(1, 2, 4, 3)[..., :2], 2), 2),
          x.reshape(1, 2, 4, 3)[..., :2])


@pytest.mark.parametrize("mode,torch_mode", [("constant", "constant"), ("reflect", "reflect"),
                                             ("replicate", "replicate")])
def test_pad_matches_torch(mode, torch_mode):
    x = rand(1, 2, 5, 6)
    got = KERNELS["pad"](x, [0, 0, 0, 0, 1, 2, 3, 1], mode, 0.5)
    kwargs = {"value": 0.5} if mode == "constant" else {}
    close(got, F.pad(t(x), (3, 1, 1, 2), mode=torch_mode, **kwargs))
    x3 = x[0]   # a pad shorter than the rank pads the last dims
    close(KERNELS["pad"](x3, [2, 1], mode, 0.5), F.pad(t(x3), (2, 1), mode=torch_mode, **kwargs))


def test_gathers_match_torch():
    x = rand(2, 5, 4)
    idx = np.asarray([[3, -1], [0, 2]], np.int32)
    close(KERNELS["gather"](x, idx, 1), np.take(x, idx, 1))
    close(KERNELS["gather"](x, idx, 1, batch_dims=1), torch.stack([t(x[b])[t(idx[b] % 5).long()] for b in range(2)]))
    along = RNG.integers(0, 4, (2, 5, 3)).astype(np.int32)
    close(KERNELS["gather_along_axis"](x, along, -1), torch.gather(t(x), -1, t(along).long()))
    nd = np.asarray([[[1, 2], [4, 0]]], np.int32)   # (1, 2, 2): pairs index dims 1 and 2 of each batch
    close(KERNELS["gather_nd"](x[:1], nd, batch_dims=1), x[:1][0][[1, 4], [2, 0]][None])
    close(KERNELS["gather_nd"](x, np.asarray([[1, 3], [0, 0]], np.int32)), x[[1, 0], [3, 0]])


# ---------------------------------------------------------------------------- reductions, sorting

@pytest.mark.parametrize("name,fn", [("reduce_sum", torch.sum), ("reduce_mean", torch.mean),
                                     ("reduce_max", torch.amax), ("reduce_min", torch.amin),
                                     ("reduce_prod", lambda x, dim, keepdim: x.prod(dim[0], keepdim=keepdim)),
                                     ("reduce_log_sum_exp", torch.logsumexp)])
@pytest.mark.parametrize("keep", [True, False])
def test_reductions_match_torch(name, fn, keep):
    x = rand(2, 3, 4, low=0.5, high=1.5)
    close(KERNELS[name](x, [-1], keep), fn(t(x), dim=[-1], keepdim=keep))
    if name != "reduce_prod":
        close(KERNELS[name](x, [1, 2], keep), fn(t(x), dim=[1, 2], keepdim=keep))


def test_arg_reductions_topk_argsort_softmax():
    x = RNG.permutation(60).reshape(3, 4, 5).astype(np.float32)   # distinct: no tie ambiguity
    close(KERNELS["reduce_argmax"](x, 1, False), torch.argmax(t(x), 1).int())
    close(KERNELS["reduce_argmin"](x, -1, True), torch.argmin(t(x), -1, keepdim=True).int())
    values, indices = KERNELS["topk"](x, 3, -1)
    want = torch.topk(t(x), 3, -1)
    close(values, want.values)
    close(indices, want.indices.int())
    values, indices = KERNELS["topk"](x, 2, 1, ascending=True)
    want = torch.topk(t(x), 2, 1, largest=False)
    close(values, want.values)
    close(indices, want.indices.int())
    close(KERNELS["argsort"](x, 0), torch.argsort(t(x), 0, descending=True).int())
    y = rand(2, 7, 3)
    close(KERNELS["softmax"](y, 1), torch.softmax(t(y), 1))


# ---------------------------------------------------------------------------- elementwise, activations

def test_elementwise_match_torch():
    x, y = rand(3, 4, low=0.1), rand(3, 4, low=0.1)
    close(KERNELS["clip"](x, np.float32(0.3), np.float32(1.2)), t(x).clamp(0.3, 1.2))
    close(KERNELS["exp"](x), t(x).exp())
    close(KERNELS["log"](x, 1e-45), t(x).log())
    close(KERNELS["sqrt"](x), t(x).sqrt())
    close(KERNELS["rsqrt"](x, 1e-12), t(x).rsqrt())
    close(KERNELS["inverse"](x, 0.0), 1 / t(x))
    close(KERNELS["pow"](x, y), t(x) ** t(y))
    close(KERNELS["square"](x), t(x) ** 2)
    close(KERNELS["real_div"](x, y), t(x) / t(y))
    close(KERNELS["floor_div"](x * 5, y), torch.floor_divide(t(x) * 5, t(y)))
    close(KERNELS["select"](x > y, x, y), torch.where(t(x) > t(y), t(x), t(y)))


def test_activations_match_torch():
    x = rand(2, 4, 5, 6, low=-5, high=5)
    alpha = rand(4, low=0.05, high=0.5)
    close(KERNELS["prelu"](x, alpha), F.prelu(t(x), t(alpha)))
    close(KERNELS["leaky_relu"](x, np.float32(0.1)), F.leaky_relu(t(x), 0.1))
    close(KERNELS["elu"](x, np.float32(1.0)), F.elu(t(x)))
    close(KERNELS["silu"](x), F.silu(t(x)))
    close(KERNELS["sigmoid_hard"](x, np.float32(1 / 6), np.float32(0.5)), F.hardsigmoid(t(x)))
    # torch's hardswish, as the converter writes it: thresholded_relu(-3) * sigmoid_hard
    thr = KERNELS["thresholded_relu"](x, np.float32(-3.0))
    close(thr * KERNELS["sigmoid_hard"](thr, np.float32(1 / 6), np.float32(0.5)), F.hardswish(t(x)))
    close(KERNELS["erf"](x), torch.erf(t(x)), rtol=0, atol=3e-7)
    close(KERNELS["gelu"](x, "EXACT"), F.gelu(t(x)), rtol=1e-5, atol=3e-6)
    close(KERNELS["gelu"](x, "TANH_APPROXIMATION"), F.gelu(t(x), approximate="tanh"))
    close(KERNELS["softplus"](x), F.softplus(t(x)))
    close(KERNELS["matmul"](x, x, False, True), t(x) @ t(x).transpose(-1, -2), rtol=1e-5, atol=1e-4)
    w, b = rand(3, 6), rand(3)
    close(KERNELS["linear"](x, w, b), F.linear(t(x), t(w), t(b)), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------- non-maximum suppression

def _centre(xyxy):
    return np.concatenate([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], 1)


def _boxes(n):
    xy = RNG.uniform(0, 40, (n, 2))
    return np.concatenate([xy, xy + RNG.uniform(5, 20, (n, 2))], 1).astype(np.float32)


@pytest.mark.parametrize("per_class", [False, True])
def test_nms_matches_torchvision(per_class):
    from torchvision.ops import batched_nms, nms

    xyxy, scores = _boxes(40), RNG.uniform(0, 1, (40, 3)).astype(np.float32)
    out_boxes, out_scores, idx, count = KERNELS["non_maximum_suppression"](
        _centre(xyxy)[None], scores[None], np.float32(0.4), 10, np.float32(0.3), per_class)
    best, label = scores.max(1), scores.argmax(1)
    keep = np.flatnonzero(best > 0.3)
    if per_class:
        kept = batched_nms(t(xyxy[keep]), t(best[keep]), t(label[keep]), 0.4)
    else:
        kept = nms(t(xyxy[keep]), t(best[keep]), 0.4)
    want = keep[kept.numpy()][:10]
    assert count[0] == len(want)
    np.testing.assert_array_equal(idx[0, :len(want)], want)
    assert (idx[0, len(want):] == -1).all() and (out_boxes[0, len(want):] == 0).all()
    close(out_boxes[0, :len(want)], _centre(xyxy)[want])
    close(out_scores[0, :len(want)], scores[want])


def test_nms_keeps_the_best_box_when_none_passes_and_ios17_layout():
    xyxy, scores = _boxes(6), RNG.uniform(0, 0.2, (6, 2)).astype(np.float32)
    _, _, idx, count = KERNELS["non_maximum_suppression"](_centre(xyxy)[None], scores[None], np.float32(0.5), 4,
                                                          np.float32(0.9), False)
    assert count[0] == 1 and idx[0, 0] == scores.max(1).argmax()
    boxes17, scores17, idx17 = KERNELS["non_maximum_suppression"](
        _centre(xyxy).T[None], scores.T[None], np.float32(0.5), 4)   # iOS17: box axis last, no score threshold
    assert boxes17.shape == (1, 4, 4) and scores17.shape == (1, 2, 4) and idx17.shape == (1, 4)


def test_unknown_mode_names_the_op():
    with pytest.raises(ops.UnsupportedOp, match="pad\\(mode=symmetric\\)"):
        KERNELS["pad"](rand(1, 2), [1, 1], "symmetric")
