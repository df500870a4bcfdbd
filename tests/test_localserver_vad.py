"""The local server's energy VAD: every 20 ms window judged by its RMS, whatever the sizes of
the appends that bring the audio."""
import numpy as np
import pytest

from openai_s2s.localserver.vad import EnergyVad, SpeechStarted, SpeechStopped


def _reference(chunks, rate, threshold, silence_ms):
    """Window by window, RMS by np.mean, as the server judged it before its windows were
    computed together: (kind, ms) of every turn boundary."""
    window = rate // 50
    samples = np.concatenate(chunks)
    out, speaking, silent = [], False, 0
    for i in range(len(samples) // window):
        w = samples[i * window:(i + 1) * window].astype(np.float64)
        loud = float(np.sqrt(np.mean(w ** 2))) > threshold
        end_ms = (i + 1) * 20
        if not speaking:
            if loud:
                speaking, silent = True, 0
                out.append(("started", end_ms - 20))
            continue
        silent = 0 if loud else silent + 20
        if silent >= silence_ms:
            speaking = False
            out.append(("stopped", end_ms))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_turns_are_found_where_each_window_s_rms_puts_them_for_any_append_sizes(seed):
    rng = np.random.default_rng(seed)
    rate = 24000
    bursts = []
    for _ in range(12):     # talk and pauses of random lengths and loudness
        n = int(rng.integers(1, 40)) * rate // 100
        amp = rng.choice([0, 200, 3000])
        bursts.append((amp * rng.standard_normal(n)).clip(-32768, 32767).astype(np.int16))
    samples = np.concatenate(bursts)
    cuts = np.sort(rng.integers(0, len(samples), 60))
    chunks = np.split(samples, cuts)
    vad, got = EnergyVad(), []
    for chunk in chunks:
        for found in vad.feed(chunk, rate, 800.0, 300):
            if isinstance(found, SpeechStarted):
                got.append(("started", found.audio_start_ms))
            else:
                assert isinstance(found, SpeechStopped) and len(found.turn)
                got.append(("stopped", found.audio_end_ms))
    assert got == _reference(chunks, rate, 800.0, 300)
    assert got                                  # the signal has turns in it
    assert vad.audio_ms == len(samples) // (rate // 50) * 20


def test_with_turn_detection_off_audio_is_counted_not_judged():
    vad = EnergyVad()
    assert vad.feed(np.full(24000, 10000, np.int16), 24000, 800.0, None) == []
    assert vad.audio_ms == 1000 and vad.speech_item is None
