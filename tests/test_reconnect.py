"""Calls longer than a session: a new session on the same call before the service's limit (or,
opted in, after the server ends one), the last session.update and the conversation replayed,
openai_s2s::reconnect instead of a disconnect, and the caller heard by the new session."""
import orjson

from engine_harness import SEED_SESSION_UPDATE, silence, tone, wait_until
from openai_s2s.call import registry
from openai_s2s.call.replay import MAX_ITEMS, conversation_items


def _reconnects(h, uuid):
    return [orjson.loads(b) for hd, b in h.switch.named("openai_s2s::reconnect") if hd.get("Unique-ID") == uuid]


def _disconnects(h, uuid):
    return [orjson.loads(b) for hd, b in h.switch.named("openai_s2s::disconnect") if hd.get("Unique-ID") == uuid]


def _appends(connection):
    return [e for e in connection.received if e["type"] == "input_audio_buffer.append"]


def test_before_the_session_limit_the_call_moves_to_a_new_session(h):
    # a 4 s limit: from 2 s before it, the module opens a new session at a quiet moment
    call = h.call("r-limit", openai_s2s_session_limit="4", openai_s2s_expiry_warning="3")
    h.create("r-limit")
    h.connected("r-limit")
    h.send("r-limit", SEED_SESSION_UPDATE)
    assert h.wait_server_event("r-limit", "session.updated")
    assert wait_until(lambda: _reconnects(h, "r-limit"), 8)
    assert _reconnects(h, "r-limit")[0] == {"reason": "session limit", "reconnects": 1}
    assert wait_until(lambda: len(h.server.connections) == 2)
    second = h.server.connections[1]
    assert wait_until(lambda: any(e["type"] == "session.update" for e in second.received))
    first_update = [e for e in h.server.connections[0].received if e["type"] == "session.update"]
    assert [e for e in second.received if e["type"] == "session.update"] == first_update
    # the caller is heard by the new session, and the model answers there
    call.say(tone(440, 8000, 0.5) + silence(8000, 0.6))
    assert wait_until(lambda: len(_appends(second)) > 10)
    assert wait_until(lambda: any(e["type"] == "response.done" for e in second.sent), 10)
    status = orjson.loads(h.api("r-limit status")[4:])
    assert status["state"] == "connected" and status["counters"]["reconnects"] == 1
    assert _disconnects(h, "r-limit") == []
    assert len(h.switch.named("openai_s2s::connect")) == 1      # one connect, for the call's first


def test_reconnect_always_follows_a_server_close(h):
    h.call("r-close", openai_s2s_reconnect="always")
    h.server.set_fault("close_after:2")   # after session.created and session.updated
    h.create("r-close")
    h.connected("r-close")
    h.server.set_fault(None)
    h.send("r-close", SEED_SESSION_UPDATE)
    assert wait_until(lambda: _reconnects(h, "r-close"), 8), (_disconnects(h, "r-close"), h.logs[-5:])
    assert _reconnects(h, "r-close")[0] == {"reason": "server closed", "reconnects": 1}
    assert wait_until(lambda: len(h.server.connections) == 2)
    assert wait_until(lambda: any(e["type"] == "session.update" for e in h.server.connections[1].received))
    assert registry.get("r-close").state == "connected"
    assert _disconnects(h, "r-close") == []


def test_reconnect_off_ends_the_call_at_the_limit(h):
    h.call("r-off", openai_s2s_reconnect="off", openai_s2s_session_limit="3", openai_s2s_expiry_warning="2")
    h.server.set_fault("expire_after:2.5")
    h.create("r-off")
    h.connected("r-off")
    h.server.set_fault(None)
    assert wait_until(lambda: _disconnects(h, "r-off"), 8)
    assert _disconnects(h, "r-off")[0]["reason"] == "session_expired"
    assert _reconnects(h, "r-off") == [] and len(h.server.connections) == 1


def test_the_conversation_is_replayed_as_text_items_newest_kept():
    entries = [{"role": "user", "text": "my order is 42"}, {"role": "assistant", "text": "it shipped"},
               {"role": "system", "text": "ignored"}, {"role": "user", "text": ""}]
    items = conversation_items(entries, "ga")
    assert [i["item"]["role"] for i in items] == ["user", "assistant"]
    assert items[0]["item"]["content"] == [{"type": "input_text", "text": "my order is 42"}]
    assert items[1]["item"]["content"] == [{"type": "output_text", "text": "it shipped"}]
    many = [{"role": "user", "text": f"turn {n}"} for n in range(200)]
    kept = conversation_items(many, "ga")
    assert len(kept) == MAX_ITEMS and kept[-1]["item"]["content"][0]["text"] == "turn 199"


def test_the_follow_on_session_hears_the_conversation_so_far(h):
    call = h.call("r-conv", openai_s2s_session_limit="6", openai_s2s_expiry_warning="5")
    h.create("r-conv")
    h.connected("r-conv")
    h.send("r-conv", SEED_SESSION_UPDATE)
    assert h.wait_server_event("r-conv", "session.updated")
    call.say(tone(440, 8000, 0.5) + silence(8000, 0.6))     # a turn the model answers
    assert h.wait_server_event("r-conv", "response.done", timeout=10)
    said = [e["text"] for e in registry.get("r-conv").transcript.entries() if e["role"] == "assistant"]
    assert said
    assert wait_until(lambda: len(h.server.connections) == 2, 10)
    second = h.server.connections[1]
    # the replay's events go out one after another, not all in one pass: wait for the last
    assert wait_until(lambda: any(e["type"] == "conversation.item.create" and e["item"]["role"] == "assistant"
                                  for e in second.received))
    items = [e["item"] for e in second.received if e["type"] == "conversation.item.create"]
    assert [i["content"][0]["text"] for i in items if i["role"] == "assistant"] == said
    kinds = [e["type"] for e in second.received]
    assert kinds.index("session.update") < kinds.index("conversation.item.create")
