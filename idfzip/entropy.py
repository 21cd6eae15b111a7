"""Entropy coding of integer latents with constriction's rANS stack coder.

Prior parameters are quantised before they reach the coder: a logistic's mean becomes an
integer centre plus one of ``FRACTIONS`` fractional offsets, its log-scale one of ``SCALES``
grid points. Each (scale, fraction) pair owns one probability table over offsets
``-W..W`` from the centre plus an escape symbol; a latent outside the window is sent as the
escape symbol followed by its raw 32-bit value. Symbols are grouped by table and each group
is coded with one call, so there is no Python loop per symbol.

The tables are computed with :func:`deterministic_exp`, which uses only IEEE-754 addition,
multiplication and division (correctly rounded on every machine), never a platform ``exp``
whose last bit may differ; so the encoder and the decoder always build identical tables.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import NamedTuple, Protocol

import constriction
import numpy as np

from .distributions import LOG_SCALE_MAX, LOG_SCALE_MIN

SCALES = 64  # log-scale grid points between LOG_SCALE_MIN and LOG_SCALE_MAX
FRACTIONS = 16  # sub-integer positions of the mean
TAIL = 12.0  # a table spans TAIL scales each side of the mean; beyond it, escape
MAX_WINDOW = 4096  # cap on a table's half-width (the largest scale would need ~3000)
RAW_LIMIT = 2**31  # escaped values must lie in [-RAW_LIMIT, RAW_LIMIT)
LOG_SCALE_STEP = (LOG_SCALE_MAX - LOG_SCALE_MIN) / (SCALES - 1)

_model = constriction.stream.model
_RAW_HALF = _model.Uniform(2**16)


class CodingError(ValueError):
    """A bitstream is damaged or does not belong to this model."""


def deterministic_exp(x: np.ndarray) -> np.ndarray:
    """exp(x) for x in [-60, 60] from basic IEEE operations only (bit-identical everywhere).

    Range reduction by 2^-10, a 14-term Taylor series, then 10 squarings; relative error
    ~1e-13, ample for probability tables.
    """
    x = np.asarray(x, dtype=np.float64)
    if np.any(np.abs(x) > 60):
        raise ValueError("deterministic_exp is defined on [-60, 60]")
    r = x / 1024.0
    term = np.ones_like(r)
    total = np.ones_like(r)
    for k in range(1, 15):
        term = term * r / k
        total = total + term
    for _ in range(10):
        total = total * total
    return total


def logistic_cdf(t: np.ndarray) -> np.ndarray:
    """sigmoid(t), deterministic (see :func:`deterministic_exp`)."""
    return 1.0 / (1.0 + deterministic_exp(-np.clip(t, -60.0, 60.0)))


@lru_cache(maxsize=1)
def scale_grid() -> np.ndarray:
    """The SCALES logistic scales tables are built for."""
    return deterministic_exp(LOG_SCALE_MIN + LOG_SCALE_STEP * np.arange(SCALES))


def window(scale_index: int) -> int:
    return min(MAX_WINDOW, int(math.ceil(TAIL * scale_grid()[scale_index])) + 1)


def fraction_value(fraction_index: int) -> float:
    """Centre of fraction bin ``j`` of [-1/2, 1/2)."""
    return -0.5 + (fraction_index + 0.5) / FRACTIONS


def _with_escape(pmf: np.ndarray) -> np.ndarray:
    """Append the escape symbol's mass (what the window leaves out, at least 2^-20)."""
    return np.append(pmf, max(1.0 - pmf.sum(), 2.0**-20))


def logistic_pmf(key: int) -> np.ndarray:
    """The pmf of table ``key = scale_index * FRACTIONS + fraction_index`` over offsets
    ``-W..W`` from its centre (no escape symbol)."""
    scale_index, fraction_index = divmod(key, FRACTIONS)
    w = window(scale_index)
    offsets = np.arange(-w, w + 2, dtype=np.float64) - 0.5 - fraction_value(fraction_index)
    return np.diff(logistic_cdf(offsets / scale_grid()[scale_index]))


@lru_cache(maxsize=SCALES * FRACTIONS)
def logistic_table(key: int):
    """Categorical model for table ``key``."""
    return _model.Categorical(_with_escape(logistic_pmf(key)), perfect=False)


def quantize_logistic(mean: np.ndarray, log_scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(integer centre, table key) of each element's prior; validates and clamps parameters.
    Computed in slices, so that its temporaries stay small whatever the size of the input."""
    mean, log_scale = np.asarray(mean), np.asarray(log_scale)
    centre = np.empty(mean.shape, np.int64)
    keys = np.empty(mean.shape, np.int64)
    flat = [a.reshape(-1) for a in (mean, log_scale, centre, keys)]
    for start in range(0, mean.size, _SLICE):
        m, s, c, k = (a[start: start + _SLICE] for a in flat)
        c[:], k[:] = _quantize_logistic(m, s)
    return centre, keys


_SLICE = 1 << 18  # elements per slice of quantize_logistic


def _quantize_logistic(mean: np.ndarray, log_scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = np.nan_to_num(np.asarray(mean, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    log_scale = np.clip(np.nan_to_num(np.asarray(log_scale, np.float64), nan=LOG_SCALE_MAX),
                        LOG_SCALE_MIN, LOG_SCALE_MAX)
    mean = np.clip(mean, -RAW_LIMIT / 2, RAW_LIMIT / 2)
    centre = np.floor(mean + 0.5)
    fraction = np.clip(np.floor((mean - centre + 0.5) * FRACTIONS), 0, FRACTIONS - 1)
    scale_index = np.clip(np.round((log_scale - LOG_SCALE_MIN) / LOG_SCALE_STEP), 0, SCALES - 1)
    return centre.astype(np.int64), (scale_index * FRACTIONS + fraction).astype(np.int64)


@lru_cache(maxsize=1)
def _window_of_scale() -> np.ndarray:
    return np.array([window(i) for i in range(SCALES)], dtype=np.int32)


def _windows(keys: np.ndarray) -> np.ndarray:
    return _window_of_scale()[keys // FRACTIONS]


def _groups(keys: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """``order`` (positions sorted by table, stably) and ``(key, start, end)`` of each table's
    run in that order: one canonical order, and each run a contiguous slice of a single
    gather, not a gather of its own (tables number in the hundreds per call)."""
    # keys are < 2^15, and numpy's stable sort of 16-bit integers is a linear radix sort
    keys16 = keys.astype(np.int16)
    order = np.argsort(keys16, kind="stable")
    sorted_keys = keys16[order]
    del keys16
    starts = np.flatnonzero(np.diff(sorted_keys, prepend=np.int16(-1)))  # first of each key
    bounds = np.append(starts, order.size).tolist()
    runs = zip(sorted_keys[starts].tolist(), bounds[:-1], bounds[1:])
    return order, list(runs)


def _encode_raw(coder, values: np.ndarray) -> None:
    if values.size:
        if np.any(values < -RAW_LIMIT) or np.any(values >= RAW_LIMIT):
            raise CodingError("a latent is outside the codable range")
        u = (values + RAW_LIMIT).astype(np.uint64)
        halves = np.stack([u >> 16, u & 0xFFFF], axis=1).reshape(-1).astype(np.int32)
        coder.encode_reverse(halves, _RAW_HALF)


def _decode_raw(coder, count: int) -> np.ndarray:
    halves = coder.decode(_RAW_HALF, 2 * count).astype(np.int64).reshape(-1, 2)
    return (halves[:, 0] << 16) + halves[:, 1] - RAW_LIMIT


def encode_with_tables(coder, values: np.ndarray, keys: np.ndarray,
                       offsets: np.ndarray, windows: np.ndarray, table) -> None:
    """Push ``values`` (flat int64) onto ``coder``; ``value - offset`` in ``[-W, W]`` is coded
    with ``table(key)``, anything else as the escape symbol plus the raw value."""
    d = values - offsets
    escaped = np.abs(d) > windows
    _encode_raw(coder, values[escaped])
    symbols = np.where(escaped, 2 * windows + 1, d + windows).astype(np.int32)
    order, runs = _groups(keys)
    symbols = symbols[order]
    for key, start, end in runs:
        coder.encode_reverse(symbols[start:end], table(key))


def decode_with_tables(coder, keys: np.ndarray, offsets: np.ndarray, windows: np.ndarray,
                       table) -> np.ndarray:
    """Inverse of :func:`encode_with_tables`."""
    order, runs = _groups(keys)
    symbols = np.empty(keys.shape, np.int32)
    for key, start, end in reversed(runs):
        symbols[order[start:end]] = coder.decode(table(key), end - start)
    del order
    values = symbols.astype(np.int64)
    del symbols
    values -= windows  # the offset from the centre, or windows + 1 for the escape symbol
    escaped = values > windows
    values += offsets
    values[escaped] = _decode_raw(coder, int(escaped.sum()))
    return values


def encode_logistic(coder, z: np.ndarray, mean: np.ndarray, log_scale: np.ndarray) -> None:
    """Push integer latents ``z`` under discretized logistics (all arrays flat)."""
    centre, keys = quantize_logistic(mean, log_scale)
    encode_with_tables(coder, z, keys, centre, _windows(keys), logistic_table)


def decode_logistic(coder, mean: np.ndarray, log_scale: np.ndarray) -> np.ndarray:
    centre, keys = quantize_logistic(mean, log_scale)
    return decode_with_tables(coder, keys, centre, _windows(keys), logistic_table)


class SymbolCoder(Protocol):
    """A prior family's entropy-coding adapter (see :mod:`idfzip.priors`): codes flat int64
    latents under flat per-element parameters (the prior's ``coding_params``, flattened)."""

    def encode(self, coder, z: np.ndarray, *params: np.ndarray) -> None: ...

    def decode(self, coder, *params: np.ndarray) -> np.ndarray: ...


class LogisticCoder:
    """Adapter of a discretized logistic per element; parameters ``(mean, log_scale)``."""

    encode = staticmethod(encode_logistic)
    decode = staticmethod(decode_logistic)


LOGISTIC_CODER = LogisticCoder()


class MixtureTables:
    """Adapter of a per-channel logistic mixture with fixed parameters: one table per channel;
    the per-element parameter is the element's channel."""

    def __init__(self, logits: np.ndarray, means: np.ndarray, log_scales: np.ndarray):
        logits, means, log_scales = (np.asarray(a, np.float64) for a in
                                     (logits, means, log_scales))
        log_scales = np.clip(np.nan_to_num(log_scales, nan=LOG_SCALE_MAX), LOG_SCALE_MIN,
                             LOG_SCALE_MAX)
        scales = deterministic_exp(log_scales)
        logits = np.clip(np.nan_to_num(logits), -50, 50)
        weights = deterministic_exp(np.maximum(logits - logits.max(axis=1, keepdims=True), -60.0))
        weights = weights / weights.sum(axis=1, keepdims=True)
        means = np.clip(np.nan_to_num(means), -RAW_LIMIT / 4, RAW_LIMIT / 4)
        self.models, self.centres, self.windows = [], [], []
        for c in range(means.shape[0]):
            lo = math.floor(float(np.min(means[c] - TAIL * scales[c])))
            hi = math.ceil(float(np.max(means[c] + TAIL * scales[c])))
            centre = (lo + hi) // 2
            w = min(MAX_WINDOW, max(1, (hi - lo + 1) // 2))
            edges = np.arange(centre - w, centre + w + 2, dtype=np.float64) - 0.5
            cdf = logistic_cdf((edges[None, :] - means[c][:, None]) / scales[c][:, None])
            pmf = (weights[c][:, None] * np.diff(cdf, axis=1)).sum(axis=0)
            self.models.append(_model.Categorical(_with_escape(pmf), perfect=False))
            self.centres.append(centre)
            self.windows.append(w)

    def _layout(self, channel_of: np.ndarray):
        return (channel_of, np.asarray(self.centres, np.int64)[channel_of],
                np.asarray(self.windows, np.int64)[channel_of])

    def encode(self, coder, z: np.ndarray, channel_of: np.ndarray) -> None:
        keys, offsets, windows = self._layout(channel_of)
        encode_with_tables(coder, z, keys, offsets, windows, self.models.__getitem__)

    def decode(self, coder, channel_of: np.ndarray) -> np.ndarray:
        keys, offsets, windows = self._layout(channel_of)
        return decode_with_tables(coder, keys, offsets, windows, self.models.__getitem__)


@lru_cache(maxsize=1)
def _pmf_bank() -> tuple[np.ndarray, np.ndarray]:
    """Every table's :func:`logistic_pmf`, end to end, and where each key's row starts: one
    array that mixtures gather their components from (under 1 MB)."""
    rows = [logistic_pmf(key) for key in range(SCALES * FRACTIONS)]
    starts = np.cumsum([0] + [row.size for row in rows[:-1]])
    return np.concatenate(rows), starts.astype(np.int64)


@lru_cache(maxsize=1)
def _row_mass() -> np.ndarray:
    """Each table's total mass inside its window (a running sum: one order everywhere)."""
    return np.array([np.cumsum(logistic_pmf(key))[-1] for key in range(SCALES * FRACTIONS)])


_MIXTURE_FAMILY = _model.Categorical(perfect=False)  # probabilities given per symbol
_ROW_BUDGET = 1 << 21  # probabilities built at once (16 MB), whatever the element count


class _MixtureRows(NamedTuple):
    """Per element (one row of :class:`MixtureCoder`): where its row starts and how wide it
    is, and per component its quantised centre, table key, window reach and weight; ``order``
    puts elements of one width together."""

    order: np.ndarray
    lo: np.ndarray
    width: np.ndarray
    centre: np.ndarray
    keys: np.ndarray
    reach: np.ndarray
    weights: np.ndarray


class MixtureCoder:
    """Adapter of a mixture of ``K`` discretized logistics per element; parameters
    ``(logits, means, log_scales)``, ``K`` consecutive values per element.

    Each component is quantised as a single logistic is (:func:`quantize_logistic`); an
    element's pmf over the integers its components' windows span is the weighted sum of their
    table rows, gathered from :func:`_pmf_bank`, so every probability is a product and sum of
    deterministic values in a fixed order (weights by :func:`deterministic_exp`, totals by
    running sums), bit-identical on every machine. Elements are coded in rows of one width (a
    power of two), the value's bin or, where the mixture puts no mass, the escape symbol
    followed by the raw value."""

    def __init__(self, components: int):
        self.components = components

    def _rows(self, logits, means, log_scales) -> _MixtureRows:
        """Each element's row (see :class:`_MixtureRows`)."""
        k = self.components
        centre, keys = quantize_logistic(np.reshape(means, (-1, k)),
                                         np.reshape(log_scales, (-1, k)))
        reach = _windows(keys).astype(np.int64)
        lo = np.min(centre - reach, axis=1)
        span = np.max(centre + reach, axis=1) - lo + 1
        # rows of one width are coded together: widths rounded up to 8 steps an octave
        grain = np.maximum(8, np.left_shift(1, np.floor(np.log2(span)).astype(np.int64) - 3))
        width = -(-span // grain) * grain
        logits = np.clip(np.nan_to_num(np.reshape(logits, (-1, k)).astype(np.float64)), -50, 50)
        top = logits[:, :1]
        for j in range(1, k):
            top = np.maximum(top, logits[:, j: j + 1])
        exps = deterministic_exp(np.maximum(logits - top, -60.0))
        total = exps[:, 0].copy()
        for j in range(1, k):
            total += exps[:, j]
        weights = exps / total[:, None]
        order = np.argsort(width, kind="stable")
        return _MixtureRows(order, lo, width, centre, keys, reach, weights)

    def _chunks(self, order, width):
        """(positions, width) of each group of rows coded by one call, in coding order."""
        sorted_width = width[order]
        starts = np.flatnonzero(np.diff(sorted_width, prepend=-1))
        ends = np.append(starts[1:], order.size)
        for start, end in zip(starts.tolist(), ends.tolist()):
            w = int(sorted_width[start])
            step = max(1, _ROW_BUDGET // (w + 1))
            for first in range(start, end, step):
                yield order[first: min(end, first + step)], w

    def _probabilities(self, rows: _MixtureRows, positions, w):
        """The rows of ``positions``: (n, w + 1) probabilities, the escape last. Each
        component adds its table row into its window's columns, windows of one length at a
        time; the escape takes what the windows leave out."""
        lo, centre, keys, reach, weights = (rows.lo, rows.centre, rows.keys, rows.reach,
                                            rows.weights)
        bank, starts = _pmf_bank()
        pmf = np.zeros((positions.size, w + 1))
        flat = pmf.reshape(-1)
        row_start = np.arange(positions.size) * (w + 1) - lo[positions]
        mass = np.zeros(positions.size)
        for j in range(self.components):
            key, weight = keys[positions, j], weights[positions, j]
            first = row_start + centre[positions, j] - reach[positions, j]
            scale_index = key // FRACTIONS
            for s in np.unique(scale_index).tolist():
                sel = np.flatnonzero(scale_index == s)
                span = np.arange(2 * window(s) + 1)
                flat[first[sel, None] + span] += (bank[starts[key[sel], None] + span]
                                                  * weight[sel, None])
            mass += weight * _row_mass()[key]
        pmf[:, w] = np.maximum(1.0 - mass, 2.0**-20)
        return pmf

    def _mass_at(self, rows: _MixtureRows, z) -> np.ndarray:
        """Each element's pmf at its own value ``z`` (0 where no component's window reaches)."""
        centre, keys, reach, weights = rows.centre, rows.keys, rows.reach, rows.weights
        bank, starts = _pmf_bank()
        mass = np.zeros(z.size)
        for j in range(self.components):
            offset = z - centre[:, j]
            inside = np.abs(offset) <= reach[:, j]
            index = np.where(inside, starts[keys[:, j]] + offset + reach[:, j], 0)
            mass += weights[:, j] * np.where(inside, bank[index], 0.0)
        return mass

    def encode(self, coder, z, logits, means, log_scales) -> None:
        rows = self._rows(logits, means, log_scales)
        d = z - rows.lo
        escaped = (d < 0) | (d >= rows.width) | (self._mass_at(rows, z) <= 0)
        _encode_raw(coder, z[escaped])
        symbols = np.where(escaped, rows.width, d)
        for positions, w in self._chunks(rows.order, rows.width):  # one chunk's rows in memory at a time
            coder.encode_reverse(symbols[positions].astype(np.int32), _MIXTURE_FAMILY,
                                 self._probabilities(rows, positions, w))

    def decode(self, coder, logits, means, log_scales) -> np.ndarray:
        rows = self._rows(logits, means, log_scales)
        z = np.empty(rows.order.size, np.int64)
        escaped = np.zeros(rows.order.size, bool)
        for positions, w in reversed(list(self._chunks(rows.order, rows.width))):
            symbol = coder.decode(_MIXTURE_FAMILY, self._probabilities(rows, positions, w))
            z[positions] = rows.lo[positions] + symbol
            escaped[positions] = symbol == w
        z[escaped] = _decode_raw(coder, int(escaped.sum()))
        return z
