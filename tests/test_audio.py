import numpy as np
import pytest

from openai_s2s import g711
from openai_s2s.audio import PCM24, PCMA, PCMU, DownlinkDecoder, UplinkEncoder, format_from_wire


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
