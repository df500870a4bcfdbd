"""Barge-in against the local server, which interrupts a response itself as the service does.

The module follows the turn detection the server confirmed: with interrupt_response (the
service's default) it flushes and truncates and leaves the cancel to the server; without it
the model goes on talking unless barge-in is ``always``; with no turn detection the caller's
own ``barge-in`` command does it all. No case may draw an error event.
"""
import time

import orjson
import pytest

from engine_harness import KEY, Harness, silence, tone, wait_until
from openai_s2s.localserver import LocalRealtimeServer


def _update(turn_detection):
    return {"type": "session.update", "session": {"type": "realtime", "audio": {
        "input": {"format": {"type": "audio/pcmu"}, "turn_detection": turn_detection},
        "output": {"format": {"type": "audio/pcmu"}}}}}


VAD = {"type": "server_vad", "threshold": 0.5, "silence_duration_ms": 300}


@pytest.fixture
def hb():
    with LocalRealtimeServer(api_key=KEY, speed=1.2, reply="tone") as server:
        h = Harness(server)
        try:
            yield h
        finally:
            h.finish()


def _model_talking(h, uuid, turn_detection, **variables):
    """A call whose caller has heard 15 frames of the model's answer."""
    call = h.call(uuid, **variables)
    h.create(uuid)
    h.connected(uuid)
    h.send(uuid, _update(turn_detection))
    h.wait_server_event(uuid, "session.updated")
    if turn_detection is None:
        h.send(uuid, {"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello"}]}})
        h.send(uuid, {"type": "response.create"})
    else:
        call.say(tone(300, call.rate, 0.4) + silence(call.rate, 0.5))
    assert h.wait_server_event(uuid, "output_audio.playback_started", timeout=10)
    assert wait_until(lambda: sum(f is not None for f in call.heard_frames) >= 15)
    return call


def _errors(h, uuid):
    return h.server_events(uuid, "error")


def _sent_by_module(h, kind):
    return [e for e in h.received() if e["type"] == kind]


def _truncate_within_bounds(h, call, frames_at_stop):
    truncate = _sent_by_module(h, "conversation.item.truncate")
    assert len(truncate) == 1, truncate
    end_ms = truncate[0]["audio_end_ms"]
    played = sum(f is not None for f in call.heard_frames[:frames_at_stop])
    assert played * 20 - 20 <= end_ms <= played * 20       # what the caller heard, to the frame
    sent_ms = h.server.connections[0].assistant_audio_ms[truncate[0]["item_id"]]
    assert end_ms <= sent_ms                              # and never more than the server sent
    assert wait_until(lambda: h.server.connections[0].truncations)


def test_caller_speech_with_interrupting_vad_flushes_and_truncates_without_a_cancel(hb):
    call = _model_talking(hb, "b-auto", VAD)
    mark = len(hb.switch.events)
    call.say(tone(300, 8000, 0.6) + silence(8000, 0.6))
    stopped = hb.wait_server_event("b-auto", "output_audio.playback_stopped", after=mark)
    assert stopped and orjson.loads(stopped[1])["completion_reason"] == "interrupted"
    frames_at_stop = len(call.heard_frames)
    assert wait_until(lambda: _sent_by_module(hb, "conversation.item.truncate"))
    _truncate_within_bounds(hb, call, frames_at_stop)
    # the server cancelled the response itself; the module sent no cancel of its own
    done = wait_until(lambda: any(e["response"]["status"] == "cancelled"
                                  for e in hb.server_events("b-auto", "response.done")))
    assert done, [e["response"]["status"] for e in hb.server_events("b-auto", "response.done")]
    assert _sent_by_module(hb, "response.cancel") == []
    time.sleep(1.5)     # the caller's turn ends and the server answers it: still no error
    assert _errors(hb, "b-auto") == []
    assert orjson.loads(hb.api("b-auto status")[4:])["counters"]["barge_ins"] == 1


def test_interrupt_response_false_lets_the_model_finish(hb):
    call = _model_talking(hb, "b-keep", dict(VAD, interrupt_response=False))
    heard_before = len([f for f in call.heard_frames if f is not None])
    call.say(tone(300, 8000, 0.5) + silence(8000, 0.5))
    time.sleep(1.0)
    assert len([f for f in call.heard_frames if f is not None]) > heard_before + 20   # still talking
    assert _sent_by_module(hb, "response.cancel") == []
    assert _sent_by_module(hb, "conversation.item.truncate") == []
    status = orjson.loads(hb.api("b-keep status")[4:])
    assert status["counters"]["barge_ins"] == 0
    assert status["barge_in"] == "auto" and status["server_interrupts"] is False
    assert _errors(hb, "b-keep") == []


def test_barge_in_always_cancels_what_the_server_would_not(hb):
    call = _model_talking(hb, "b-always", dict(VAD, interrupt_response=False), openai_s2s_barge_in="always")
    mark = len(hb.switch.events)
    call.say(tone(300, 8000, 0.5) + silence(8000, 0.5))
    stopped = hb.wait_server_event("b-always", "output_audio.playback_stopped", after=mark)
    assert stopped and orjson.loads(stopped[1])["completion_reason"] == "interrupted"
    frames_at_stop = len(call.heard_frames)
    assert wait_until(lambda: _sent_by_module(hb, "conversation.item.truncate"))
    _truncate_within_bounds(hb, call, frames_at_stop)
    assert len(_sent_by_module(hb, "response.cancel")) == 1
    time.sleep(1.0)
    assert _errors(hb, "b-always") == []


def test_barge_in_never_leaves_playout_alone(hb):
    call = _model_talking(hb, "b-never", VAD, openai_s2s_barge_in="never")
    mark = len(hb.switch.events)
    call.say(tone(300, 8000, 0.5) + silence(8000, 0.5))
    time.sleep(1.0)
    assert _sent_by_module(hb, "conversation.item.truncate") == []
    assert _sent_by_module(hb, "response.cancel") == []
    stopped = [orjson.loads(b) for name, hd, b in hb.switch.events[mark:]
               if name == "openai_s2s::server_event" and hd.get("Unique-ID") == "b-never"
               and orjson.loads(b).get("type") == "output_audio.playback_stopped"]
    assert all(s["completion_reason"] != "interrupted" for s in stopped), stopped


def test_the_barge_in_command_without_turn_detection_flushes_cancels_and_truncates(hb):
    call = _model_talking(hb, "b-cmd", None)
    assert hb.api("b-cmd barge-in") == "+OK barged in"
    frames_at_stop = len(call.heard_frames)
    assert wait_until(lambda: _sent_by_module(hb, "conversation.item.truncate"))
    _truncate_within_bounds(hb, call, frames_at_stop)
    time.sleep(0.3)
    assert [f for f in call.heard_frames[frames_at_stop + 1:] if f is not None] == []
    assert wait_until(lambda: any(e["response"]["status"] == "cancelled"
                                  for e in hb.server_events("b-cmd", "response.done")))
    assert _errors(hb, "b-cmd") == []
    assert hb.api("b-cmd barge-in") == "+OK nothing to interrupt"
    assert hb.api("b-cmd barge-in now").startswith("-USAGE")
