"""torchvision's compiled ops (``torchvision.ops``: ``roi_align``, ``roi_pool``, ``ps_roi_align``,
``ps_roi_pool``, ``nms``, ``deform_conv2d`` and their backward ops), priced from their definitions:
torchvision's CPU kernels (``csrc/ops/cpu/*_kernel.cpp``), whose CUDA kernels compute the same per
output element. FlopCounterMode has no formula for any of them (it counts them as 0); the tests
write each one's arithmetic out by hand.

Conventions, as for PyTorch's own ops: resampling (RoI Align's bilinear samples) costs FLOPs and no
MACs, as interpolation does (:func:`fxcost.counting.arithmetic.interpolation`), and the
interpolation weights (computed from coordinates, shared by every channel) are not counted; a max
or average over a window costs one FLOP per window element (:func:`~fxcost.counting.arithmetic.pooling`);
index arithmetic is never counted.

Some costs depend on the boxes' coordinates (RoI pooling's window sizes, RoI Align's sampling grid
when ``sampling_ratio <= 0``): with real tensors (``--real``) they are counted exactly from the
values; on data-free tensors the op is reported unsupported, saying so (:class:`ValueDependent`),
never priced at a guess.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterator
from typing import Any

import torch

from fxcost.counting import arithmetic as A
from fxcost.counting.arithmetic import Cost
from fxcost.counting.registry import FormulaRegistry, ValueDependent

Shape = Any


def _values(t: Any, what: str) -> list[list[float]]:
    """The rows of a real tensor (the boxes ``[K, 5]``); :class:`ValueDependent` for a data-free one."""
    if not isinstance(t, torch.Tensor) or t.device.type == "meta" or isinstance(t, torch._subclasses.FakeTensor):
        raise ValueDependent(f"its cost depends on the {what}' coordinates, which data-free tensors do not have: "
                             f"--real counts it exactly")
    return t.detach().to("cpu", torch.float64).tolist()  # type: ignore[no-any-return]


def _in_dtype(dtype: torch.dtype) -> Callable[[float], float]:
    """Rounds a value to ``dtype`` as the kernel's arithmetic in that type does (float32: each
    product or quotient of float32 values, exact in float64, rounded once)."""
    if dtype == torch.float64:
        return float
    return lambda v: struct.unpack("f", struct.pack("f", v))[0]  # type: ignore[no-any-return]


def _round_half_away(v: float) -> int:
    """C's ``round``: halves away from zero (Python's round() goes to even)."""
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


# --- RoI Align ------------------------------------------------------------------------------


def _align_grids(rois: Any, scale: float, ph: int, pw: int, sampling_ratio: int, aligned: bool) -> Iterator[int]:
    """Each box's samples per output bin, grid_h * grid_w, as roi_align_kernel.cpp computes them:
    ``sampling_ratio`` each way, or (``<= 0``) ceil(roi_size / pooled_size) from the box."""
    if sampling_ratio > 0:
        yield from (sampling_ratio * sampling_ratio for _ in range(_count(rois)))
        return
    f = _in_dtype(rois.dtype)
    offset = 0.5 if aligned else 0.0
    for _, x1, y1, x2, y2 in _values(rois, "boxes"):
        width = f(f(x2 * scale) - offset) - f(f(x1 * scale) - offset)
        height = f(f(y2 * scale) - offset) - f(f(y1 * scale) - offset)
        if not aligned:  # too small boxes are forced to 1 x 1
            width, height = max(width, 1.0), max(height, 1.0)
        yield math.ceil(f(height / ph)) * math.ceil(f(width / pw))


def _count(rois: Any) -> int:
    return int(rois.shape[0] if isinstance(rois, torch.Tensor) else rois[0])


def _roi_align_flops(rois: Any, channels: int, scale: float, ph: int, pw: int, sampling_ratio: int,
                     aligned: bool, per_sample: int) -> int:
    return sum(channels * ph * pw * (per_sample * samples + 1)
               for samples in _align_grids(rois, scale, ph, pw, sampling_ratio, aligned))


def _roi_align(x: Any, rois: Any, spatial_scale: float, pooled_height: int, pooled_width: int, sampling_ratio: int,
               aligned: bool, *_: Any, out: Any = None, **__: Any) -> Cost:
    """[K, C, PH, PW] = roi_align(input[N, C, H, W], rois[K, 5], scale, PH, PW, sampling_ratio, aligned):
    each output element averages ``s`` bilinear samples (s = sampling_ratio², or the box's own
    grid when sampling_ratio <= 0): per sample 4 taps, each multiplied by its weight and added
    (8 FLOPs), then one division by s: FLOPs = K * C * PH * PW * (8 * s + 1)."""
    return Cost(0, _roi_align_flops(rois, int(_shape(x)[1]), spatial_scale, int(pooled_height), int(pooled_width),
                                    int(sampling_ratio), bool(aligned), per_sample=8))


def _roi_align_backward(grad: Any, rois: Any, spatial_scale: float, pooled_height: int, pooled_width: int,
                        batch_size: int, channels: int, height: int, width: int, sampling_ratio: int, aligned: bool,
                        *_: Any, out: Any = None, **__: Any) -> Cost:
    """[N, C, H, W] = _roi_align_backward(grad[K, C, PH, PW], rois, ...): each output gradient is
    divided by its sample count once, and each sample's 4 taps get it times their weight, added
    into the input gradient (8 FLOPs a sample): the forward's FLOPs. Samples that fall outside
    the feature map are counted although the kernel skips them."""
    return Cost(0, _roi_align_flops(rois, int(channels), spatial_scale, int(pooled_height), int(pooled_width),
                                    int(sampling_ratio), bool(aligned), per_sample=8))


def _ps_roi_align(x: Any, rois: Any, spatial_scale: float, pooled_height: int, pooled_width: int,
                  sampling_ratio: int, *_: Any, out: Any = None, **__: Any) -> Cost:
    """[K, C / (PH * PW), PH, PW], channel_mapping = ps_roi_align(input[N, C, H, W], rois[K, 5], ...):
    position-sensitive RoI Align (R-FCN): output bin (ph, pw) of output channel c samples input
    channel (c * PH + ph) * PW + pw, as roi_align does (8 FLOPs a sample, one division), with
    the non-aligned box arithmetic: FLOPs = K * C/(PH*PW) * PH * PW * (8 * s + 1)"""
    ph, pw = int(pooled_height), int(pooled_width)
    return Cost(0, _roi_align_flops(rois, int(_shape(x)[1]) // (ph * pw), spatial_scale, ph, pw, int(sampling_ratio),
                                    False, per_sample=8))


def _ps_roi_align_backward(grad: Any, rois: Any, channel_mapping: Any, spatial_scale: float, pooled_height: int,
                           pooled_width: int, sampling_ratio: int, *_: Any, out: Any = None, **__: Any) -> Cost:
    """the input gradient of ps_roi_align: its forward's FLOPs (see _roi_align_backward)"""
    ph, pw = int(pooled_height), int(pooled_width)
    return Cost(0, _roi_align_flops(rois, int(_shape(grad)[1]), spatial_scale, ph, pw, int(sampling_ratio), False,
                                    per_sample=8))


# --- RoI pooling ----------------------------------------------------------------------------


def _pool_windows(rois: Any, scale: float, ph: int, pw: int, height: int, width: int, *, plus_one: bool,
                  last: int) -> Iterator[int]:
    """The number of input pixels in each output bin of each box (0 for an empty bin), as
    roi_pool_kernel.cpp (``plus_one``: a box's size is end - start + 1; bins clipped to
    ``height``/``width``) and ps_roi_pool_kernel.cpp (end - start; its forward clips to one less:
    ``last`` = -1) compute them."""
    f = _in_dtype(rois.dtype)
    extra = 1 if plus_one else 0
    for _, x1, y1, x2, y2 in _values(rois, "boxes"):
        start_w, start_h = _round_half_away(f(x1 * scale)), _round_half_away(f(y1 * scale))
        end_w, end_h = _round_half_away(f(x2 * scale)), _round_half_away(f(y2 * scale))
        bin_h = f(max(end_h - start_h + extra, 1) / ph)
        bin_w = f(max(end_w - start_w + extra, 1) / pw)
        for i in range(ph):
            h0 = min(max(math.floor(f(i * bin_h)) + start_h, 0), height + last)
            h1 = min(max(math.ceil(f((i + 1) * bin_h)) + start_h, 0), height + last)
            for j in range(pw):
                w0 = min(max(math.floor(f(j * bin_w)) + start_w, 0), width + last)
                w1 = min(max(math.ceil(f((j + 1) * bin_w)) + start_w, 0), width + last)
                yield (h1 - h0) * (w1 - w0) if h1 > h0 and w1 > w0 else 0


def _roi_pool(x: Any, rois: Any, spatial_scale: float, pooled_height: int, pooled_width: int, *_: Any,
              out: Any = None, **__: Any) -> Cost:
    """[K, C, PH, PW], argmax = roi_pool(input[N, C, H, W], rois[K, 5], scale, PH, PW) (Fast R-CNN):
    each output element is the max over its bin's pixels, one comparison each: FLOPs = C * the
    pixels of every bin of every box (the bins' sizes come from the boxes' coordinates)."""
    n, c, h, w = (int(d) for d in _shape(x))
    return Cost(0, c * sum(_pool_windows(rois, spatial_scale, int(pooled_height), int(pooled_width), h, w,
                                         plus_one=True, last=0)))


def _ps_roi_pool(x: Any, rois: Any, spatial_scale: float, pooled_height: int, pooled_width: int, *_: Any,
                 out: Any = None, **__: Any) -> Cost:
    """[K, C / (PH * PW), PH, PW], channel_mapping = ps_roi_pool(...) (R-FCN): each output element
    averages its bin's pixels in its own input channel, one FLOP a pixel (the final division
    replaces the first addition; an empty bin is 0): FLOPs = C/(PH*PW) * the pixels of every bin"""
    n, c, h, w = (int(d) for d in _shape(x))
    ph, pw = int(pooled_height), int(pooled_width)
    return Cost(0, c // (ph * pw) * sum(_pool_windows(rois, spatial_scale, ph, pw, h, w, plus_one=False, last=-1)))


def _roi_pool_backward(grad: Any, rois: Any, argmax: Any, *_: Any, out: Any = None, **__: Any) -> Cost:
    """[N, C, H, W] = _roi_pool_backward(grad[K, C, PH, PW], rois, argmax, ...): each output gradient
    is added at its argmax, one FLOP each (empty bins, argmax -1, are counted too)"""
    return A.pointwise(math.prod(_shape(grad)))


def _ps_roi_pool_backward(grad: Any, rois: Any, channel_mapping: Any, spatial_scale: float, pooled_height: int,
                          pooled_width: int, batch_size: int, channels: int, height: int, width: int, *_: Any,
                          out: Any = None, **__: Any) -> Cost:
    """[N, C, H, W] = _ps_roi_pool_backward(grad[K, C', PH, PW], ...): each output gradient is divided
    by its bin's area once and added to each of the bin's pixels: FLOPs = C' * (pixels + 1) per
    non-empty bin (the backward clips bins to the map, not to one less as the forward does)"""
    ph, pw = int(pooled_height), int(pooled_width)
    windows = _pool_windows(rois, spatial_scale, ph, pw, int(height), int(width), plus_one=False, last=0)
    return Cost(0, int(_shape(grad)[1]) * sum(p + 1 for p in windows if p))


# --- deformable convolution and NMS -------------------------------------------------------------


def _deform_conv2d(x: Any, weight: Any, offset: Any, mask: Any, bias: Any, *_: Any, out: Any = None, **kwargs: Any) -> Cost:
    """[N, Co, Ho, Wo] = deform_conv2d(input[N, Ci, H, W], W[Co, Ci/g, kh, kw], offset[N, 2*og*kh*kw, Ho, Wo],
    mask[N, og*kh*kw, Ho, Wo], bias[Co], ...) (Dai et al. 2017; v2 with the mask): each of the
    N * Ci * kh * kw * Ho * Wo input samples is a bilinear interpolation at its offset position
    (4 taps: 7 FLOPs), times its mask value with ``use_mask`` (1 FLOP); then a convolution of the
    sampled columns: MACs = N * Co * Ho * Wo * (Ci/g) * kh * kw, FLOPs 2 * MACs + the bias add."""
    n, co, ho, wo = (int(d) for d in _shape(out))
    ci, kh, kw = int(_shape(x)[1]), int(_shape(weight)[2]), int(_shape(weight)[3])
    use_mask = bool(_[8]) if len(_) > 8 else bool(kwargs.get("use_mask", False))
    samples = n * ci * kh * kw * ho * wo
    sampling = A.interpolation(samples, 4).flops + (samples if use_mask else 0)
    macs = n * co * ho * wo * int(_shape(weight)[1]) * kh * kw
    return Cost(macs, 2 * macs + sampling + n * co * ho * wo)


def _deform_conv2d_backward(grad: Any, x: Any, weight: Any, offset: Any, mask: Any, bias: Any, *args: Any,
                            out: Any = None, **kwargs: Any) -> Cost:
    """d_input, d_weight, d_offset, d_mask, d_bias = _deform_conv2d_backward(grad, ...): the
    columns' gradient (W^T @ grad) and the weight's (grad @ columns^T) cost the forward's MACs
    each; the columns are sampled again for the weight gradient and scattered back to the input
    through the same 4 taps, and the offsets' and mask's gradients take the bilinear weights'
    derivatives (4 taps, both coordinates: 2 * 7 FLOPs a sample, + 1 with the mask);
    the bias gradient sums grad."""
    forward = _deform_conv2d(x, weight, offset, mask, bias, *args, out=grad, **kwargs)
    n, co, ho, wo = (int(d) for d in _shape(grad))
    sampling = forward.flops - 2 * forward.macs - n * co * ho * wo
    return Cost(2 * forward.macs, 4 * forward.macs + 4 * sampling + n * co * ho * wo)


def _nms(dets: Any, scores: Any, iou_threshold: float, *_: Any, out: Any = None, **__: Any) -> Cost:
    """keep = nms(boxes[N, 4], scores[N], threshold): as torchvision's CUDA kernel computes it (its
    CPU kernel skips the pairs of boxes already suppressed: there it is an upper bound), each box's
    area (3 FLOPs) and the IoU of every pair i < j: 4 max/min of the corners, 2 differences, 2
    clamps at 0, the intersection's product, the union (2), the division and the comparison with
    the threshold, 13 FLOPs: FLOPs = 3 N + 13 N (N - 1) / 2. The sort by score is not counted."""
    n = int(_shape(dets)[0])
    return Cost(0, 3 * n + 13 * n * (n - 1) // 2)


def _shape(x: Any) -> Any:
    return x.shape if isinstance(x, torch.Tensor) else x


#: the ops whose formulas read the boxes' values (they get tensors, not shapes)
READ_VALUES = {"torchvision::roi_align", "torchvision::_roi_align_backward", "torchvision::ps_roi_align",
               "torchvision::_ps_roi_align_backward", "torchvision::roi_pool", "torchvision::ps_roi_pool",
               "torchvision::_ps_roi_pool_backward"}


def register(reg: FormulaRegistry) -> None:
    """Price torchvision's ops in ``reg`` (the aten route's table, before it is frozen)."""
    table: dict[str, Any] = {
        "torchvision::roi_align": _roi_align, "torchvision::_roi_align_backward": _roi_align_backward,
        "torchvision::ps_roi_align": _ps_roi_align, "torchvision::_ps_roi_align_backward": _ps_roi_align_backward,
        "torchvision::roi_pool": _roi_pool, "torchvision::_roi_pool_backward": _roi_pool_backward,
        "torchvision::ps_roi_pool": _ps_roi_pool, "torchvision::_ps_roi_pool_backward": _ps_roi_pool_backward,
        "torchvision::deform_conv2d": _deform_conv2d, "torchvision::_deform_conv2d_backward": _deform_conv2d_backward,
        "torchvision::nms": _nms, "torchvision::qnms": _nms,
    }
    for name, fn in table.items():
        if name in READ_VALUES:
            fn.reads_values = True  # type: ignore[attr-defined]
        reg.formula(name)(fn)
