"""The entropy coder: deterministic tables, exact round trips (escapes and hostile parameters
included) and a rate within a hair of the ideal code length."""

import math

import constriction
import numpy as np
import pytest
import torch

from idfzip import entropy as E
from idfzip.distributions import LOG_SCALE_MAX, LOG_SCALE_MIN, discretized_logistic_log_pmf


def new_coder():
    return constriction.stream.stack.AnsCoder()


def reader(coder):
    """A fresh decoder over what ``coder`` holds (what a file would carry)."""
    return constriction.stream.stack.AnsCoder(coder.get_compressed())


def logistic_samples(rng, mean, log_scale):
    u = rng.uniform(1e-12, 1 - 1e-12, np.shape(mean))
    return np.round(mean + np.exp(log_scale) * (np.log(u) - np.log1p(-u))).astype(np.int64)


def ideal_bits(z, mean, log_scale) -> float:
    log_p = discretized_logistic_log_pmf(torch.from_numpy(z).double(),
                                         torch.as_tensor(mean, dtype=torch.float64),
                                         torch.as_tensor(log_scale, dtype=torch.float64))
    return float(-log_p.sum()) / math.log(2)


# -- deterministic_exp ----------------------------------------------------------------------

def test_deterministic_exp_matches_math_exp_over_its_whole_range():
    rng = np.random.default_rng(0)
    x = np.concatenate([np.linspace(-60, 60, 24001), rng.uniform(-60, 60, 2000),
                        [-60.0, -1e-300, 0.0, 1e-300, 60.0]])
    got = E.deterministic_exp(x)
    want = np.array([math.exp(v) for v in x])
    assert np.all(np.abs(got / want - 1) < 1e-12)
    assert E.deterministic_exp(0.0) == 1.0


def test_deterministic_exp_refuses_arguments_outside_its_range():
    with pytest.raises(ValueError):
        E.deterministic_exp(np.array([0.0, 60.5]))
    with pytest.raises(ValueError):
        E.deterministic_exp(-61.0)


def test_rebuilt_tables_decode_what_cached_tables_encoded():
    """Tables are a pure function of their key: a decoder that builds them afresh agrees."""
    rng = np.random.default_rng(1)
    mean = rng.normal(0, 4, 4000)
    log_scale = rng.uniform(LOG_SCALE_MIN, LOG_SCALE_MAX, 4000)
    z = logistic_samples(rng, mean, log_scale)
    coder = new_coder()
    E.encode_logistic(coder, z, mean, log_scale)
    E.logistic_table.cache_clear()
    E.scale_grid.cache_clear()
    np.testing.assert_array_equal(E.decode_logistic(reader(coder), mean, log_scale), z)
    assert E.window(E.SCALES - 1) <= E.MAX_WINDOW
    assert E.window(0) >= 2


# -- logistic round trips -------------------------------------------------------------------

def round_trip(z, mean, log_scale):
    coder = new_coder()
    E.encode_logistic(coder, z, mean, log_scale)
    back = E.decode_logistic(reader(coder), mean, log_scale)
    assert back.dtype == np.int64
    np.testing.assert_array_equal(back, z)
    return coder


@pytest.mark.parametrize("seed", range(4))
def test_logistic_round_trip_with_random_parameters(seed):
    rng = np.random.default_rng(seed)
    n = 3000
    mean = rng.normal(0, 50, n)
    log_scale = rng.uniform(LOG_SCALE_MIN - 1, LOG_SCALE_MAX + 1, n)  # some beyond the grid
    z = logistic_samples(rng, mean, log_scale)
    z[::7] = rng.integers(-300, 300, z[::7].shape)  # off the distribution, often escaped
    round_trip(z, mean, log_scale)


def test_escapes_far_outside_the_window_round_trip():
    rng = np.random.default_rng(5)
    extremes = np.array([-2**31, 2**31 - 1, -2**30, 2**30, 10**9, -10**9, 4097, -4097, 0, 1, -1],
                        np.int64)
    z = np.concatenate([extremes, rng.integers(-2**31, 2**31, 500)])
    mean = rng.normal(0, 3, z.size)
    log_scale = rng.uniform(LOG_SCALE_MIN, LOG_SCALE_MAX, z.size)
    coder = round_trip(z, mean, log_scale)
    # each escape costs its 32 raw bits plus the escape symbol: at least 32 bits apiece
    assert len(coder.get_compressed()) * 32 >= 32 * z.size


def test_mixed_escapes_and_window_values_in_one_group():
    n = 2000
    mean, log_scale = np.full(n, 3.25), np.full(n, 0.0)
    z = np.where(np.arange(n) % 3 == 0, 123456, 3).astype(np.int64)
    round_trip(z, mean, log_scale)


def test_values_beyond_the_raw_range_are_refused_not_miscoded():
    for bad in (2**31, -2**31 - 1, 2**40):
        with pytest.raises(E.CodingError):
            E.encode_logistic(new_coder(), np.array([0, bad], np.int64), np.zeros(2),
                              np.zeros(2))


def test_nan_inf_and_huge_parameters_do_not_raise_and_round_trip():
    specials = np.array([np.nan, np.inf, -np.inf, 1e300, -1e300, 1e30, -1e30, 2.0**31, 0.0,
                         5e-324, -0.0, 1e9])
    mean, log_scale = np.meshgrid(specials, specials)
    mean, log_scale = mean.ravel(), log_scale.ravel()
    rng = np.random.default_rng(7)
    z = np.concatenate([rng.integers(-5, 5, mean.size // 2),
                        rng.integers(-2**31, 2**31, mean.size - mean.size // 2)]).astype(np.int64)
    round_trip(z, mean, log_scale)
    # float32 and non-contiguous parameters are accepted too (huge values overflow to inf)
    with np.errstate(over="ignore"):
        mean32, log_scale32 = mean[::2].astype(np.float32), log_scale[::2].astype(np.float32)
    round_trip(z[::2], mean32, log_scale32)


def test_empty_input_round_trips():
    coder = round_trip(np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
    assert E.decode_logistic(reader(coder), np.zeros(0), np.zeros(0)).size == 0


def test_several_pushes_pop_in_reverse_order():
    rng = np.random.default_rng(9)
    parts = []
    coder = new_coder()
    for i in range(4):
        mean = rng.normal(0, 10, 500)
        log_scale = rng.uniform(LOG_SCALE_MIN, 3, 500)
        z = logistic_samples(rng, mean, log_scale)
        E.encode_logistic(coder, z, mean, log_scale)
        parts.append((z, mean, log_scale))
    dec = reader(coder)
    for z, mean, log_scale in reversed(parts):
        np.testing.assert_array_equal(E.decode_logistic(dec, mean, log_scale), z)


def test_decoding_with_other_parameters_gives_other_values():
    """The coder really depends on the parameters (a stream is not self-describing)."""
    rng = np.random.default_rng(11)
    mean, log_scale = rng.normal(0, 5, 2000), np.full(2000, 1.0)
    z = logistic_samples(rng, mean, log_scale)
    coder = new_coder()
    E.encode_logistic(coder, z, mean, log_scale)
    wrong = E.decode_logistic(reader(coder), mean + 7, log_scale)
    assert not np.array_equal(wrong, z)


def test_quantisation_is_deterministic_and_clamped():
    mean = np.array([0.0, 0.49, 0.5, -0.5, 1e300, np.nan, -np.inf])
    log_scale = np.array([-100.0, 100.0, np.nan, np.inf, -np.inf, 0.0, LOG_SCALE_MIN])
    centre, keys = E.quantize_logistic(mean, log_scale)
    assert np.all((keys >= 0) & (keys < E.SCALES * E.FRACTIONS))
    assert centre[0] == 0 and centre[2] == 1 and centre[3] == 0
    assert abs(centre[4]) <= E.RAW_LIMIT // 2
    c2, k2 = E.quantize_logistic(mean.copy(), log_scale.copy())
    np.testing.assert_array_equal(centre, c2)
    np.testing.assert_array_equal(keys, k2)


# -- mixture tables -------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(3))
def test_mixture_tables_round_trip(seed):
    rng = np.random.default_rng(seed)
    channels, k = 3, 4
    logits = rng.normal(0, 2, (channels, k))
    means = rng.normal(0, 20, (channels, k))
    log_scales = rng.uniform(LOG_SCALE_MIN, 4, (channels, k))
    tables = E.MixtureTables(logits, means, log_scales)
    channel_of = np.repeat(np.arange(channels), 700)
    comp = rng.integers(0, k, channel_of.size)
    z = logistic_samples(rng, means[channel_of, comp], log_scales[channel_of, comp])
    z[::50] = rng.integers(-2**31, 2**31, z[::50].shape)  # escapes
    coder = new_coder()
    tables.encode(coder, z, channel_of)
    # a second, identically built table set decodes (as a decoder process would)
    again = E.MixtureTables(logits.copy(), means.copy(), log_scales.copy())
    np.testing.assert_array_equal(again.decode(reader(coder), channel_of), z)


def test_mixture_tables_survive_hostile_parameters():
    logits = np.array([[np.nan, np.inf, -np.inf], [1e300, 0.0, -1e300]])
    means = np.array([[np.nan, 1e300, -np.inf], [0.0, 1e12, -5.0]])
    log_scales = np.array([[np.nan, np.inf, -np.inf], [1e300, -1e300, 0.0]])
    tables = E.MixtureTables(logits, means, log_scales)
    channel_of = np.repeat(np.arange(2), 100)
    z = np.random.default_rng(0).integers(-2**31, 2**31, 200)
    z[:50] = 0
    coder = new_coder()
    tables.encode(coder, z, channel_of)
    np.testing.assert_array_equal(tables.decode(reader(coder), channel_of), z)


# -- rate ------------------------------------------------------------------------------------

def grid_parameters(rng, n, scale_indices):
    """Means and log-scales exactly on the coder's quantisation grid."""
    k = rng.choice(scale_indices, n)
    j = rng.integers(0, E.FRACTIONS, n)
    log_scale = LOG_SCALE_MIN + k * E.LOG_SCALE_STEP
    mean = rng.integers(-1000, 1000, n) + (-0.5 + (j + 0.5) / E.FRACTIONS)
    return mean, log_scale


@pytest.mark.parametrize("scale_indices", [np.arange(E.SCALES), np.arange(0, 20)],
                         ids=["all-scales", "small-scales"])
def test_rate_is_within_one_percent_of_the_ideal(scale_indices):
    rng = np.random.default_rng(3)
    n = 200_000
    mean, log_scale = grid_parameters(rng, n, scale_indices)
    z = logistic_samples(rng, mean, log_scale)
    coder = new_coder()
    E.encode_logistic(coder, z, mean, log_scale)
    bits = len(coder.get_compressed()) * 32
    ideal = ideal_bits(z, mean, log_scale)
    assert ideal > 0
    assert bits <= 1.01 * ideal + 4 * 32, (bits, ideal)
    assert bits >= 0.99 * ideal - 4 * 32, (bits, ideal)  # a coder cannot beat the entropy much
    np.testing.assert_array_equal(E.decode_logistic(reader(coder), mean, log_scale), z)


def test_rate_with_off_grid_parameters_stays_close_to_the_ideal():
    rng = np.random.default_rng(4)
    n = 100_000
    mean = rng.uniform(-500, 500, n)
    log_scale = rng.uniform(LOG_SCALE_MIN, LOG_SCALE_MAX, n)
    z = logistic_samples(rng, mean, log_scale)
    coder = new_coder()
    E.encode_logistic(coder, z, mean, log_scale)
    bits = len(coder.get_compressed()) * 32
    assert bits <= 1.01 * ideal_bits(z, mean, log_scale) + 4 * 32


# -- the fewest bits a symbol costs (idfzip.limits) -----------------------------------------

def float_pmf(key: int) -> np.ndarray:
    scale_index, fraction_index = divmod(key, E.FRACTIONS)
    w = E.window(scale_index)
    edges = np.arange(-w, w + 2, dtype=np.float64) - 0.5 - E.fraction_value(fraction_index)
    return E._with_escape(np.diff(E.logistic_cdf(edges / E.scale_grid()[scale_index])))


def test_no_table_gives_a_symbol_more_than_the_bounds_probability():
    """limits.MIN_SYMBOL_BITS rests on this: the most probable symbol of any table (narrowest
    scale, any fraction; mixtures are averages of such) has probability at most 0.9867."""
    peaks = [float_pmf(key).max() for key in range(E.SCALES * E.FRACTIONS)]
    assert max(peaks) <= 2 / (1 + math.exp(-0.5 / math.exp(LOG_SCALE_MIN))) - 1 + 1e-12
    assert max(peaks) < 0.9867 and -math.log2(0.9867) > 0.0193


def peaked_tables():
    """The most peaked table of each kind, with its most probable symbol."""
    key = max(range(E.SCALES * E.FRACTIONS), key=lambda k: float_pmf(k).max())
    mixture = E.MixtureTables(np.zeros((1, 3)), np.zeros((1, 3)), np.full((1, 3), -9.0))
    return [(E.logistic_table(key), int(float_pmf(key).argmax())),
            (mixture.models[0], mixture.windows[0])]


@pytest.mark.parametrize("count", [1, 2, 10, 100, 1000, 10_000, 100_000, 1_000_000])
def test_no_stream_is_shorter_than_the_bound_for_its_symbols(count):
    """The cheapest possible streams, every symbol the most probable one of the most peaked
    table, are still at least limits.min_stream_words long (a mix costs more)."""
    from idfzip.limits import min_stream_words
    rng = np.random.default_rng(count)
    for table, peak in peaked_tables():
        for symbols in (np.full(count, peak), np.where(rng.random(count) < 0.99, peak, peak + 1)):
            coder = new_coder()
            coder.encode_reverse(symbols.astype(np.int32), table)
            assert len(coder.get_compressed()) >= min_stream_words(count)


# -- per-element mixtures (MixtureCoder) ------------------------------------------------------

def mixture_case(rng, n, k):
    means = rng.normal(0, 30, (n, k))
    means[: n // 4, 1] = means[: n // 4, 0] + 500  # far apart: a gap no window reaches
    log_scales = rng.uniform(LOG_SCALE_MIN, 2.5, (n, k))
    logits = rng.normal(0, 2, (n, k))
    z = logistic_samples(rng, means[:, 0], log_scales[:, 0])
    z[:3] = [2**31 - 1, -(2**31), means[0, 0].round() + 250]  # raw range ends, in the gap
    return z, logits, means, log_scales


def mixture_ideal_bits(z, logits, means, log_scales) -> float:
    from idfzip.distributions import mixture_log_pmf
    log_p = mixture_log_pmf(*(torch.from_numpy(np.asarray(a, np.float64)) for a in
                              (z, logits, means, log_scales)))
    return float(-log_p.sum()) / math.log(2)


@pytest.mark.parametrize("k", [2, 3])
def test_mixture_coder_round_trips_with_escapes_at_the_ideal_rate(k):
    rng = np.random.default_rng(k)
    z, logits, means, log_scales = mixture_case(rng, 20000, k)
    coder = new_coder()
    mixture = E.MixtureCoder(k)
    flat = [a.reshape(-1) for a in (logits, means, log_scales)]
    mixture.encode(coder, z, *flat)
    dec = reader(coder)
    np.testing.assert_array_equal(mixture.decode(dec, *flat), z)
    assert dec.is_empty()
    ideal = mixture_ideal_bits(z[3:], logits[3:], means[3:], log_scales[3:])
    assert coder.num_bits() < ideal * 1.01 + 300  # escapes cost ~70 bits each


def test_mixture_coder_is_deterministic_and_refuses_nothing_hostile():
    rng = np.random.default_rng(9)
    z, logits, means, log_scales = mixture_case(rng, 500, 2)
    logits[0] = [np.nan, np.inf]
    means[1] = [np.inf, -np.inf]
    log_scales[2] = [np.nan, 99.0]
    flat = [a.reshape(-1) for a in (logits, means, log_scales)]
    streams = []
    for _ in range(2):
        coder = new_coder()
        E.MixtureCoder(2).encode(coder, z, *flat)
        streams.append(coder.get_compressed().tobytes())
    assert streams[0] == streams[1]
    back = E.MixtureCoder(2).decode(constriction.stream.stack.AnsCoder(
        np.frombuffer(streams[0], np.uint32).copy()), *flat)
    np.testing.assert_array_equal(back, z)
