"""Client events larger than the socket's send room go out in fragments, and the call goes on.

On a real path (1500-byte MTU) the kernel's send buffer is about 70 KB and the room the uplink
counts on about half of it, so a long session.update (instructions, many tools, a file://
prompt) does not fit at once. Here the module's socket gets a small fixed send buffer, as such
a path gives it; tests/test_netpath.py sends one over a real veth path.
"""
import socket

import pytest

from openai_s2s.call import registry
from engine_harness import SEED_SESSION_UPDATE, silence, tone, wait_until


def small_send_buffer(uuid: str, size: int = 8192) -> int:
    """Fix the module's socket's send buffer (no autotuning); returns the room it leaves."""
    sock = registry.get(uuid).ws.sock
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) // 2


@pytest.mark.parametrize("size", [40_000, 66_000, 600_000])
def test_a_session_update_larger_than_the_room_reaches_the_server_and_audio_follows(h, size):
    call = h.call("u-big")
    h.create("u-big")
    h.connected("u-big")
    room = small_send_buffer("u-big")
    instructions = ("You are the front desk of ACME. " * (size // 32 + 1))[:size]
    assert len(instructions) > room
    update = dict(SEED_SESSION_UPDATE, session=dict(SEED_SESSION_UPDATE["session"], instructions=instructions))
    assert h.send("u-big", update).startswith("+OK")
    assert wait_until(lambda: [e for e in h.received() if e["type"] == "session.update"], 15), \
        "the session.update never reached the server"
    got = [e for e in h.received() if e["type"] == "session.update"][0]
    assert got["session"]["instructions"] == instructions
    call.say(tone(440, call.rate, 0.5) + silence(call.rate, 0.5))
    assert wait_until(lambda: len(h.uplink_audio()) > 4000, 10), "caller audio did not follow"
    session = registry.get("u-big")
    assert session.state == "connected" and session.uplink.fragments > 0
    assert not h.switch.named("openai_s2s::buffer_overrun")


def test_client_events_queued_behind_a_large_one_keep_their_order(h):
    h.call("u-order")
    h.create("u-order")
    h.connected("u-order")
    small_send_buffer("u-order")
    big = dict(SEED_SESSION_UPDATE, session=dict(SEED_SESSION_UPDATE["session"], instructions="x" * 50_000))
    h.send("u-order", big)
    for n in range(3):
        h.send("u-order", {"type": "conversation.item.create",
                           "item": {"type": "message", "role": "user",
                                    "content": [{"type": "input_text", "text": f"note {n}"}]}})
    assert wait_until(lambda: len([e for e in h.received() if e["type"] == "conversation.item.create"]) == 3, 15)
    kinds = [e["type"] for e in h.received() if e["type"] in ("session.update", "conversation.item.create")]
    assert kinds == ["session.update"] + ["conversation.item.create"] * 3
    texts = [e["item"]["content"][0]["text"] for e in h.received() if e["type"] == "conversation.item.create"]
    assert texts == ["note 0", "note 1", "note 2"]
