"""Backends of the 8-bit arithmetic's convolution (:mod:`idfzip.int8net`): each returns the
same exact integers, so a file coded with one decodes with any other.

* ``reference``: int64 convolution; slow, CPU only; what the tests hold the others to.
* ``onednn``: oneDNN's int8 convolution (``torch.ops.onednn.qconv2d_pointwise``, unit scales,
  float32 output, which is the int32 accumulator exactly below 2^24; the first layer, whose
  inputs are latents and whose channels are few, as a float32 convolution); the fast CPU
  path on VNNI / AMX, and on AVX2 for the ``int8`` arithmetic (its 7-bit inputs keep AVX2's
  16-bit pair sums from saturating; ``w8a8``'s 8-bit ones may saturate there). It is an
  internal PyTorch operator: :func:`onednn_exact` checks it once per process and activation
  range against the reference on the bound's worst cases before it is used.
* ``float32``: float32 convolutions, group by group; the GPU path and the fallback of CPUs
  whose PyTorch lacks oneDNN. Exact under :func:`idfzip.intnet.exact_arithmetic` (IEEE
  float32 everywhere, no cuDNN on GPUs), which the codec sets.

Each backend convolves the input channel groups of the layer's bound one at a time; several
groups' sums are added in float64 (every partial sum is an integer of at most 2^24, every
total below 2^53: exact in any order).
"""

from __future__ import annotations

import contextlib
import functools
import weakref

import torch
import torch.nn.functional as F

BACKENDS = ("reference", "onednn", "float32")
_chosen: str | None = None
# oneDNN's prepacked weights per layer: kept out of the module, whose copies and pickles they
# would break (an opaque tensor has no storage), and dropped with it
_PACKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def use_backend(name: str | None):
    """Run every 8-bit convolution with backend ``name`` (None: the default for the device)."""
    global _chosen
    if name is not None and name not in BACKENDS:
        raise ValueError(f"unknown 8-bit backend {name!r}; one of {', '.join(BACKENDS)}")
    saved, _chosen = _chosen, name
    try:
        yield
    finally:
        _chosen = saved


def backend_for(device: torch.device, top: int = 127) -> str:
    """The backend in use on ``device`` for activations ``0..top``: the chosen one, else oneDNN
    on CPUs where it is exact for that range, float32 elsewhere."""
    if _chosen is not None:
        return _chosen
    return "onednn" if device.type == "cpu" and onednn_exact(top) else "float32"


def conv_sum(values: torch.Tensor, zero: int, conv) -> torch.Tensor:
    """``conv(values - zero, W)`` without bias, exact: one group's sum as the backend gives it
    (float32 holding integers up to 2^24, or int64), several groups' added in float64;
    ``values`` (N, C, H, W) uint8 activations, or integer latents in a float dtype (the first
    layer), ``conv`` an :class:`idfzip.int8net.Int8Conv`."""
    backend = _BACKENDS[backend_for(values.device, conv.top)]
    ranges = _group_ranges(values.shape[1], int(conv.groups))
    if len(ranges) == 1:
        return backend(values, zero, conv, 0, values.shape[1])
    out = None
    for start, stop in ranges:
        part = backend(values, zero, conv, start, stop).double()
        out = part if out is None else out.add_(part)
    return out


def _group_ranges(channels: int, groups: int) -> list[tuple[int, int]]:
    """(start, stop) of each input-channel group, as ``torch.tensor_split`` cuts them."""
    return [(int(t[0]), int(t[-1]) + 1)
            for t in torch.tensor_split(torch.arange(channels), groups)]


def _reference(values, zero, conv, start, stop) -> torch.Tensor:
    x = values[:, start:stop].long().contiguous() - zero
    w = conv.weight[:, start:stop].long()
    return F.conv2d(x, w, padding=conv.padding)


def _float32(values, zero, conv, start, stop) -> torch.Tensor:
    x = values[:, start:stop].float() - zero
    w = conv.weight[:, start:stop].float()
    return F.conv2d(x, w, padding=conv.padding)


def _onednn(values, zero, conv, start, stop) -> torch.Tensor:
    if values.dtype != torch.uint8:  # the first layer's latents: a few channels, in float32
        return _float32(values, zero, conv, start, stop)
    x = values[:, start:stop].contiguous(memory_format=torch.channels_last)
    weight = conv.weight
    key = (zero, start, stop, weight.data_ptr(), weight._version)
    cache = _PACKED.setdefault(conv, {})
    packed = cache.get(key)
    if packed is None:
        packed = torch.ops.onednn.qconv_prepack(
            weight[:, start:stop].contiguous(), _unit_scales(weight.shape[0]), 1.0, zero,
            [1, 1], list(conv.padding), [1, 1], 1, None)
        for stale in [k for k in cache if k[3:] != key[3:]]:  # the weights have changed
            del cache[stale]
        cache[key] = packed
    y = torch.ops.onednn.qconv2d_pointwise(
        x, 1.0, zero, packed, _unit_scales(weight.shape[0]),
        torch.zeros(weight.shape[0], dtype=torch.int64), None, [1, 1], list(conv.padding),
        [1, 1], 1, 1.0, 0, torch.float32, "none", [], "")
    return y


def _unit_scales(n: int) -> torch.Tensor:
    return torch.ones(n, dtype=torch.float64)


_BACKENDS = {"reference": _reference, "onednn": _onednn, "float32": _float32}


@functools.cache
def onednn_exact(top: int = 127) -> bool:
    """Whether oneDNN's int8 convolution is present and equals the reference on this CPU for
    activations ``0..top``, on the inputs that reach the bound: every input and weight at its
    extreme, of both signs (the largest partial sums), and random ones, in both zero points the
    first layer uses."""
    from .int8net import PARTIAL_LIMIT, Int8Conv  # the layer type the backends serve
    if not torch.backends.mkldnn.is_available():
        return False
    generator = torch.Generator().manual_seed(0)
    w = torch.randint(-127, 128, (32, 64, 3, 3), generator=generator).double()
    w[0] = 127.0
    w[1] = -127.0
    w[2, ::2] = -127.0
    w[2, 1::2] = 127.0
    conv = Int8Conv(w / 127.0, torch.zeros(32), (1, 1), 1.0, last=True, top=top)
    x = torch.randint(0, top + 1, (2, 64, 7, 9), generator=generator, dtype=torch.uint8)
    x[0] = top
    wide = min(64, PARTIAL_LIMIT // (9 * 127 * top))  # the most channels one group can have
    x[1, ::2] = 0
    try:
        for zero in (0, 64):
            for start, stop in ((0, wide), (3, 40)):
                got = _onednn(x, zero, conv, start, stop)
                if not torch.equal(got.double(), _reference(x, zero, conv, start, stop).double()):
                    return False
    except (RuntimeError, AttributeError, NotImplementedError):  # absent from this build
        return False
    return True
