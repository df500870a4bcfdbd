import warnings

import numpy as np
import pytest

from openai_s2s.media import g711
from openai_s2s.media.codec import DownlinkDecoder, UplinkEncoder
from openai_s2s.media.formats import PCM24, PCMA, PCMU, format_from_wire
from openai_s2s.media.resample import Resampler, ThirdsResampler


def tone(freq, rate, seconds, amp=8000):
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype("<i2").tobytes()


def dominant_freq(pcm, rate):
    x = np.frombuffer(pcm, "<i2").astype(float)
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.argmax(spec) * rate / len(x)


def test_g711_round_trip_is_close():
    pcm = tone(440, 8000, 0.1)
    for enc, dec in ((g711.ulaw_encode, g711.ulaw_decode), (g711.alaw_encode, g711.alaw_decode)):
        coded = enc(pcm)
        assert len(coded) == len(pcm) // 2
        back = np.frombuffer(dec(coded), "<i2").astype(int)
        orig = np.frombuffer(pcm, "<i2").astype(int)
        assert np.max(np.abs(back - orig)) < 300   # G.711 step size at amplitude 8000


def test_g711_known_codes():
    # Silence and full scale, from ITU-T G.711 tables.
    assert g711.ulaw_encode(b"\0\0") == b"\xff"
    assert g711.alaw_encode(b"\0\0") == b"\xd5"
    assert g711.ulaw_decode(b"\x00") == (-32124).to_bytes(2, "little", signed=True)
    assert g711.alaw_decode(b"\xd5") == (8).to_bytes(2, "little", signed=True)


def test_format_from_wire_both_generations():
    assert format_from_wire({"type": "audio/pcm", "rate": 24000}) == PCM24
    assert format_from_wire({"type": "audio/pcmu"}) == PCMU
    assert format_from_wire("g711_alaw") == PCMA
    assert format_from_wire("pcm16") == PCM24
    assert format_from_wire("mp3") is None
    assert PCMU.ga == {"type": "audio/pcmu"} and PCM24.beta == "pcm16"


@pytest.mark.parametrize("rate", [8000, 16000])
def test_tone_survives_uplink_resampling_in_20ms_chunks(rate):
    enc = UplinkEncoder(rate, PCM24)
    src = tone(440, rate, 1.0)
    frame = rate // 50 * 2
    out = b"".join(enc.encode(src[i:i + frame]) for i in range(0, len(src), frame))
    # streaming resampler: about 3x the samples, minus its filter delay
    assert abs(len(out) / 2 - 24000) < 24000 * 0.05
    assert abs(dominant_freq(out[4800:], 24000) - 440) < 3


def test_g711_at_8k_skips_resampling():
    enc = UplinkEncoder(8000, PCMU)
    pcm = tone(300, 8000, 0.02)
    assert enc.encode(pcm) == g711.ulaw_encode(pcm)
    dec = DownlinkDecoder(PCMU, 8000)
    assert dec.decode(b"\xff" * 160) == bytes(320)


def test_downlink_keeps_a_split_sample():
    dec = DownlinkDecoder(PCM24, 24000)
    pcm = tone(1000, 24000, 0.01)
    assert dec.decode(pcm[:101]) + dec.decode(pcm[101:]) == pcm


def test_downlink_24k_to_8k_keeps_the_tone():
    dec = DownlinkDecoder(PCM24, 8000)
    src = tone(600, 24000, 1.0)
    out = b"".join(dec.decode(src[i:i + 4800]) for i in range(0, len(src), 4800))
    assert abs(dominant_freq(out[1600:], 8000) - 600) < 3


def _rms(x):
    return float(np.sqrt(np.mean(np.asarray(x, float) ** 2)))


def test_thirds_resampler_output_does_not_depend_on_chunking():
    x = (np.random.default_rng(3).standard_normal(24000) * 0.1).astype(np.float32)
    whole = ThirdsResampler(up=False).process(x)
    pieces = ThirdsResampler(up=False)
    chunked = np.concatenate([pieces.process(x[i:i + 257]) for i in range(0, len(x), 257)])
    assert len(whole) == len(chunked) == 8000 and np.allclose(whole, chunked, atol=1e-6)
    up_whole = ThirdsResampler(up=True).process(x[:8000])
    up = ThirdsResampler(up=True)
    up_chunked = np.concatenate([up.process(x[i:i + 160]) for i in range(0, 8000, 160)])
    assert np.allclose(up_whole, up_chunked, atol=1e-6)


def test_thirds_resampler_passes_the_telephone_band_and_rejects_aliases():
    t = np.arange(24000) / 24000
    for freq, low, high in ((1000, 0.99, 1.01), (3400, 0.95, 1.02)):
        y = ThirdsResampler(up=False).process(np.sin(2 * np.pi * freq * t).astype(np.float32))
        assert low < _rms(y[100:]) / _rms(np.sin(2 * np.pi * freq * t)) < high, freq
    # 5 kHz at 24 kHz would fold to 3 kHz at 8 kHz: it must be at least 60 dB down
    y = ThirdsResampler(up=False).process(np.sin(2 * np.pi * 5000 * t).astype(np.float32))
    assert _rms(y[100:]) < 1e-3 * _rms(np.sin(2 * np.pi * 5000 * t))


def test_round_trip_through_24k_is_a_whole_sample_delay():
    x = np.frombuffer(tone(700, 8000, 0.5), "<i2")
    up, down = Resampler(8000, 24000), Resampler(24000, 8000)
    y = np.frombuffer(down.process(up.process(x.tobytes())), "<i2")
    delay = 32      # 48 samples at 24 kHz each way = 16 + 16 at 8 kHz
    err = x[200:-delay].astype(float) - y[200 + delay:].astype(float)
    assert _rms(err) < 0.01 * _rms(x)


def test_other_ratios_and_named_converters_use_libsamplerate():
    assert Resampler(16000, 24000)._thirds is None and Resampler(16000, 24000)._converter is not None
    assert Resampler(8000, 24000, "sinc_fastest")._thirds is None
    assert Resampler(8000, 24000)._thirds is not None


def test_g711_is_bit_exact_with_audioop_for_every_sample_and_code():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop", reason="audioop is gone from this Python (3.13+)")
    every_sample = np.arange(-32768, 32768, dtype="<i2").tobytes()
    every_code = bytes(range(256))
    assert g711.ulaw_encode(every_sample) == audioop.lin2ulaw(every_sample, 2)
    assert g711.alaw_encode(every_sample) == audioop.lin2alaw(every_sample, 2)
    assert g711.ulaw_decode(every_code) == audioop.ulaw2lin(every_code, 2)
    assert g711.alaw_decode(every_code) == audioop.alaw2lin(every_code, 2)


@pytest.mark.parametrize("up", [True, False])
def test_fir_resampler_pcm_is_the_filter_within_one_lsb_whatever_the_frame_sizes(up):
    """16-bit in and out: the polyphase product equals the zero-stuffed (up) or decimated
    (down) convolution with the filter, computed in float64, to within the float32 rounding
    of one LSB, in 20 ms frames, 60 ms frames or odd-sized pieces."""
    from openai_s2s.media.resample import THIRDS_FILTER
    rate = 8000 if up else 24000
    x = (np.random.default_rng(7).standard_normal(rate) * 6000).astype("<i2")
    taps = THIRDS_FILTER.astype(np.float64)
    if up:
        stuffed = np.zeros(3 * len(x))
        stuffed[::3] = x
        ref = 3 * np.convolve(stuffed, taps)[:3 * len(x)]
    else:
        ref = np.convolve(x.astype(np.float64), taps)[:len(x)][::3]
    ref = np.clip(np.rint(ref), -32768, 32767)
    frame = rate // 50
    pcm = x.tobytes()
    mixed = np.cumsum(np.random.default_rng(8).integers(1, 3 * frame, len(x)))   # sizes changing every call
    for size in (frame, 3 * frame, 257, "mixed"):
        r = Resampler(8000, 24000) if up else Resampler(24000, 8000)
        cuts = [0] + [int(c) for c in mixed[mixed < len(x)]] + [len(x)] if size == "mixed" \
            else list(range(0, len(x), size)) + [len(x)]
        out = np.frombuffer(b"".join(r.process(pcm[2 * a:2 * b]) for a, b in zip(cuts, cuts[1:])), "<i2")
        assert len(out) == len(ref), size
        assert np.max(np.abs(out.astype(int) - ref.astype(int))) <= 1, size


def test_fir_resampler_clips_to_16_bits():
    square = np.tile(np.r_[np.full(20, 32767), np.full(20, -32768)], 40).astype("<i2").tobytes()
    out = np.frombuffer(Resampler(8000, 24000).process(square), "<i2")
    assert out.max() == 32767 and out.min() == -32768    # the filter's overshoot, clipped
