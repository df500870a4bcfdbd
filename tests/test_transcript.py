"""Transcripts: both sides' finished transcripts as the server sends them, the ``transcript``
command, the bounded store, and ``transcript-dir`` writing each session's at its end."""
import os
import time

import orjson
import pytest

from engine_harness import SEED_SESSION_UPDATE, Harness, silence, tone, wait_until
from openai_s2s.call import registry
from openai_s2s.call.transcript import Transcript
from openai_s2s.realtime import protocol
from openai_s2s.realtime.protocol import RealtimeProtocol

BETA_PATH = "openai/realtime?api-version=2024-10-01-preview&deployment=gpt-4o-realtime-preview"


def converse(h, uuid, path=None):
    call = h.call(uuid)
    h.create(uuid, **({"path": path} if path else {}))
    assert h.connected(uuid)
    h.send(uuid, SEED_SESSION_UPDATE)          # asks for input transcription
    assert h.wait_server_event(uuid, "session.updated")
    call.say(tone(440, call.rate, 0.6) + silence(call.rate, 0.8))
    assert h.wait_server_event(uuid, "response.done", timeout=10)
    return call


def transcript(h, uuid):
    reply = h.api(f"{uuid} transcript")
    assert reply.startswith("+OK ")
    return orjson.loads(reply[4:])


@pytest.mark.parametrize("generation", ["ga", "beta"])
def test_the_transcript_holds_both_sides_in_order_with_times(h, generation):
    uuid = f"tr-{generation}"
    before = time.time()
    converse(h, uuid, BETA_PATH if generation == "beta" else None)
    assert wait_until(lambda: len(transcript(h, uuid)) == 2)
    user, assistant = transcript(h, uuid)
    said = h.server_events(uuid, "conversation.item.input_audio_transcription.completed")[0]
    done = "response.audio_transcript.done" if generation == "beta" else "response.output_audio_transcript.done"
    answer = h.server_events(uuid, done)[0]
    assert user == {"role": "user", "text": said["transcript"], "at": user["at"], "item_id": said["item_id"]}
    assert assistant == {"role": "assistant", "text": answer["transcript"], "at": assistant["at"],
                         "item_id": answer["item_id"]}
    assert user["text"].startswith("caller spoke") and assistant["text"].startswith("echo of")
    # entries carry times rounded to the millisecond: compare them with rounded bounds (rounding
    # keeps order), or an answer in the last half millisecond reads as after the present
    assert round(before, 3) <= user["at"] <= assistant["at"] <= round(time.time(), 3)


def test_the_transcript_command_answers_usage_and_unknown_sessions(h):
    h.call("tr-empty")
    h.create("tr-empty")
    assert h.connected("tr-empty")
    assert h.api("tr-empty transcript") == "+OK []"
    assert h.api("tr-empty transcript now").startswith("-USAGE: uuid_openai_s2s <uuid> transcript")
    assert h.api("tr-none transcript") == "-ERR no openai_s2s session on tr-none"


def test_the_local_server_transcribes_the_caller_only_when_asked(h):
    call = h.call("tr-off")
    h.create("tr-off")
    assert h.connected("tr-off")
    h.send("tr-off", {"type": "session.update", "session": {"type": "realtime"}})
    assert h.wait_server_event("tr-off", "session.updated")
    call.say(tone(440, call.rate, 0.6) + silence(call.rate, 0.8))
    assert h.wait_server_event("tr-off", "response.done", timeout=10)
    assert h.server_events("tr-off", "conversation.item.input_audio_transcription.completed") == []
    assert [e["role"] for e in transcript(h, "tr-off")] == ["assistant"]


def test_transcript_dir_gets_each_sessions_transcript_as_json_lines(server, tmp_path):
    h = Harness(server, '<configuration name="openai_s2s.conf"><settings>'
                        f'<param name="transcript-dir" value="{tmp_path}"/></settings></configuration>')
    try:
        converse(h, "tr-file")
        assert wait_until(lambda: len(transcript(h, "tr-file")) == 2)
        kept = transcript(h, "tr-file")
        started = int(registry.get("tr-file").created)
        assert os.listdir(tmp_path) == []          # written when the session ends, not before
        assert h.api("tr-file session.delete").startswith("+OK")
        path = tmp_path / f"tr-file-{started}.jsonl"
        assert wait_until(path.exists, 5)
        assert [orjson.loads(line) for line in path.read_bytes().splitlines()] == kept
        assert oct(path.stat().st_mode & 0o777) == "0o600"
    finally:
        h.finish()


def test_a_transcript_that_cannot_be_written_is_logged_not_raised(tmp_path):
    store = Transcript()
    store.add("user", "item_1", "hello", at=1.0)
    assert store.write(str(tmp_path / "missing"), "u", 1.0) is None
    assert Transcript().write(str(tmp_path), "u", 1.0) is None      # nothing to write
    assert store.write(str(tmp_path), "../u/x", 7.9) == str(tmp_path / ".._u_x-7.jsonl")


def test_the_store_keeps_the_newest_entries_within_its_bounds():
    store = Transcript(max_entries=3, max_bytes=10_000)
    for n in range(5):
        store.add("user", f"i{n}", f"t{n}")
    assert [e["item_id"] for e in store.entries()] == ["i2", "i3", "i4"] and store.dropped == 2
    store = Transcript(max_entries=500, max_bytes=1000)
    store.add("assistant", "a", "x" * 600)
    store.add("assistant", "b", "y" * 600)
    assert [e["item_id"] for e in store.entries()] == ["b"]


def test_the_protocol_reports_finished_transcripts_and_drops_malformed_ones():
    proto = RealtimeProtocol()
    cases = [("conversation.item.input_audio_transcription.completed", "transcript", "user"),
             ("response.output_audio_transcript.done", "transcript", "assistant"),
             ("response.audio_transcript.done", "transcript", "assistant"),
             ("response.output_text.done", "text", "assistant")]
    for kind, field, role in cases:
        raw = orjson.dumps({"type": kind, "item_id": "item_9", field: "hi"})
        actions = proto.server_event(raw)
        assert actions == [protocol.Forward(raw), protocol.Transcript(role, "item_9", "hi")]
    bad = proto.server_event(orjson.dumps({"type": cases[0][0], "item_id": 5, "transcript": "x"}))
    assert len(bad) == 1 and isinstance(bad[0], protocol.Log)
