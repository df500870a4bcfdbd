"""The GPT-Live server mixer on a clock of the test's making: output leaves at most 200 ms ahead
of real time (scaled by speed), in 100 ms deltas, words with the audio they belong to, and a
stop drops the rest."""
import numpy as np
import pytest

from openai_s2s.localserver.live_output import DELTA_MS, LEAD_MS, Mixer, Speech

RATE = 8000


def speech(ms: int, text: str = "") -> Speech:
    return Speech(np.ones(RATE * ms // 1000, np.int16), text)


def drain(mixer: Mixer, start: float, speed: float, until: float, timeline_ms: int = 0):
    """Take every delta that is due, stepping a fake clock by 10 ms; (time, ms sent) after each."""
    now, sent, log = start, 0.0, []
    while mixer.busy and now <= until:
        while mixer.busy and mixer.due_in(now, speed) == 0:
            delta = mixer.take(timeline_ms)
            sent += len(delta.samples) * 1000 / RATE
            log.append((now, sent, delta))
        now += 0.01
    return log


@pytest.mark.parametrize("speed", [1.0, 2.5])
def test_output_runs_at_most_the_lead_ahead_of_real_time(speed):
    mixer = Mixer(RATE)
    mixer.say(speech(2000), 100.0, speed)
    log = drain(mixer, 100.0, speed, 110.0)
    assert log[-1][1] == 2000 and not mixer.busy
    for now, sent, delta in log:
        assert len(delta.samples) == RATE * DELTA_MS // 1000
        assert sent <= (now - 100.0) * 1000 * speed + LEAD_MS + 1e-6
    # and not slower than that: each delta goes within a clock step of its time
    assert log[-1][0] - 100.0 <= (2000 - LEAD_MS) / 1000 / speed + 0.011
    assert [round(s) for t, s, _ in log if t == 100.0] == [100, 200]   # the lead, at once


def test_speed_zero_sends_at_once():
    mixer = Mixer(RATE)
    mixer.say(speech(1000), 5.0, 0)
    assert len(drain(mixer, 5.0, 0, 5.0)) == 10


def test_speech_queued_while_the_last_still_plays_gets_no_second_lead():
    mixer = Mixer(RATE)
    mixer.say(speech(300), 0.0, 1.0)
    drain(mixer, 0.0, 1.0, 10.0)          # sent by 0.1 s; it plays until 0.3 s
    mixer.say(speech(500), 0.15, 1.0)
    # 300 ms sent, 150 ms played: the next 100 ms may go when it is 200 ms ahead, at 0.2 s
    assert mixer.due_in(0.15, 1.0) == pytest.approx(0.05)
    drain(mixer, 0.15, 1.0, 10.0)
    mixer.say(speech(100), 9.0, 1.0)      # long after it played out: a new run, with its lead
    assert mixer.due_in(9.0, 1.0) == 0


def test_words_go_with_their_audio_and_a_stop_drops_the_rest():
    mixer = Mixer(RATE)
    mixer.say(speech(1000, "one two three four five"), 0.0, 1.0)
    first, second = mixer.take(1000), mixer.take(1000)
    assert [w.text for w in first.words] == ["one"]
    assert [(w.start_ms, w.end_ms) for w in first.words] == [(1000, 1200)]
    assert second.words == []                 # "two" begins at 200 ms, the third delta's audio
    third = mixer.take(1000)
    assert [w.text for w in third.words] == [" two"]
    assert mixer.stop() is True and not mixer.busy
    assert mixer.stop() is False
    mixer.say(speech(200, "again"), 50.0, 1.0)
    later = mixer.take(1100)
    assert later.words[0].start_ms == 1300    # the timeline goes on from where the stop cut it
    assert mixer.take(1100).finished is not None


def test_a_whole_speech_sends_all_its_words_once():
    mixer = Mixer(RATE)
    mixer.say(speech(250, "a b c d e f g"), 0.0, 0)
    words = [w.text for _, _, d in drain(mixer, 0.0, 0, 0.0) for w in d.words]
    assert "".join(words) == "a b c d e f g"
