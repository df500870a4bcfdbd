"""Delegation on the local GPT-Live server: an utterance whose transcript says "delegate"
(reply mode ``delegate``) is delegated, to the client (which answers with a commentary the
server speaks) or to the Responses backend (a function call in response.event envelopes,
answered with response.item.create and response.create, its text spoken). A spoken
acknowledgement follows each delegation unless a thinking or commentary append comes first."""
import time

import pytest

from openai_s2s.localserver.live_delegation import ACK_TEXT
from test_localserver_live_kit import (OUTPUT_DELTA, LiveClient, errors, live_server, of, output_audio,
                                       transcript)

LOOKUP = {"type": "function", "name": "lookup_order", "description": "Find an order",
          "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}},
                         "required": ["order_id"]}}
RESPONSES = {"type": "responses", "responses": {"model": "gpt-5.2", "instructions": "Look orders up.",
                                                "tools": [{"type": "web_search"}, LOOKUP]}}
FUNCTION_CALL_STREAM = ["response.created", "response.in_progress", "response.output_item.added",
                        "response.function_call_arguments.delta", "response.function_call_arguments.done",
                        "response.output_item.done", "response.completed"]
TEXT_STREAM = ["response.created", "response.in_progress", "response.output_item.added",
               "response.content_part.added", "response.output_text.delta", "response.output_text.done",
               "response.content_part.done", "response.output_item.done", "response.completed"]


@pytest.fixture
def server():
    with live_server(speed=8.0, reply="delegate") as srv:
        yield srv


@pytest.fixture
def client(server):
    c = LiveClient(server)
    yield c
    c.close()


def delegated(client: LiveClient) -> tuple:
    """Say something that is delegated; (the delegation.created event, what came before it)."""
    client.say(0.7)
    before = client.between("session.delegation.created")
    return before[-1], before[:-1]


def test_a_client_delegation_carries_no_task_and_its_commentary_is_spoken(client, server):
    client.start()
    created, before = delegated(client)
    assert transcript(before, "session.input_transcript.delta") == "delegate delegate"
    delegation = created["delegation"]
    assert set(delegation) == {"id", "target", "type"}       # metadata only: no task text
    assert (delegation["target"], delegation["type"]) == ("client", "delegation")
    assert created["offset_ms"] == 700                      # where the caller stopped speaking
    assert of(before, OUTPUT_DELTA) == []                   # delegated, not answered
    # acknowledgement_delay_ms 0 by default: the acknowledgement is asked for at once
    ack = client.between("session.output_transcript.delta")
    assert transcript(ack) == ACK_TEXT.split()[0] and output_audio(ack)
    client.send({"type": "session.commentary.append", "event_id": "res", "delegation_id": delegation["id"],
                 "content": "Your order ships Monday."})
    events = client.between("session.commentary.appended")
    events += client.quiet(1.0)
    assert transcript(events) == " moment." + "Your order ships Monday."
    assert of(events, "session.commentary.appended")[0]["client_event_id"] == "res"
    # the same delegation may hear more; thinking for it is silent
    client.send({"type": "session.thinking.append", "delegation_id": delegation["id"], "content": "done"})
    assert [e["type"] for e in client.quiet(0.4)] == ["session.thinking.appended"]


@pytest.mark.parametrize("cancel", [True, False])
def test_an_acknowledgement_waits_its_delay_and_a_thinking_append_cancels_it(cancel):
    with live_server(speed=1.0, reply="delegate") as srv:
        c = LiveClient(srv)
        c.start(delegation={"type": "client", "acknowledgement_delay_ms": 600})
        created, _ = delegated(c)
        at = time.monotonic()
        if cancel:
            c.send({"type": "session.thinking.append", "delegation_id": created["delegation"]["id"],
                    "content": "Looking it up."})
            assert [e["type"] for e in c.quiet(1.2)] == ["session.thinking.appended"]
        else:
            first = c.until(OUTPUT_DELTA)
            assert time.monotonic() - at >= 0.5 and first
            assert transcript(c.between("session.output_transcript.delta")) == ACK_TEXT.split()[0]
        c.close()


def test_commentary_for_a_delegation_that_is_not_there_is_refused(client):
    client.start()
    created, _ = delegated(client)
    client.send({"type": "session.commentary.append", "event_id": "c", "content": "x",
                 "delegation_id": created["delegation"]["id"] + "9"})
    error = client.until("error")["error"]
    assert (error["code"], error["param"], error["client_event_id"]) == ("invalid_value", "delegation_id", "c")


def test_a_responses_delegation_round_trip(client):
    session = client.start(delegation=RESPONSES)
    assert session["delegation"] == dict(RESPONSES, acknowledgement_delay_ms=0)
    created, _ = delegated(client)
    delegation = created["delegation"]
    assert (delegation["target"], delegation["type"]) == ("responses", "delegation")
    assert delegation["response_id"].startswith("resp_")
    envelopes = [client.until("response.event") for _ in FUNCTION_CALL_STREAM]
    assert [e["event"]["type"] for e in envelopes] == FUNCTION_CALL_STREAM
    assert {e["delegation_id"] for e in envelopes} == {delegation["id"]}
    assert [e["event"]["sequence_number"] for e in envelopes] == list(range(len(FUNCTION_CALL_STREAM)))
    assert envelopes[0]["event"]["response"]["id"] == delegation["response_id"]
    assert envelopes[-1]["event"]["response"]["status"] == "completed"
    call = envelopes[5]["event"]["item"]
    assert {k: call[k] for k in ("type", "name", "arguments", "status")} == {
        "type": "function_call", "name": "lookup_order", "arguments": '{"order_id":"test"}', "status": "completed"}
    assert call["id"] != call["call_id"]

    client.send({"type": "response.item.create", "event_id": "out", "item": {
        "type": "function_call_output", "call_id": call["call_id"], "output": "Order 42 ships Monday."}})
    client.send({"type": "response.create", "event_id": "go"})
    answer = [client.until("response.event") for _ in TEXT_STREAM]
    assert [e["event"]["type"] for e in answer] == TEXT_STREAM
    assert {e["delegation_id"] for e in answer} == {delegation["id"]}
    assert answer[4]["event"]["delta"] == "Order 42 ships Monday."
    assert answer[0]["event"]["response"]["id"] != delegation["response_id"]
    spoken = client.quiet(1.5)
    assert transcript(spoken).endswith("Order 42 ships Monday.")
    assert output_audio(spoken)
    assert errors([e for _, e in client.seen]) == []


def test_responses_delegation_refusals(client):
    client.start(delegation=RESPONSES)
    created, _ = delegated(client)
    client.quiet(0.3)
    client.send({"type": "response.create", "event_id": "early"})
    error = client.until("error")["error"]
    assert (error["code"], error["client_event_id"]) == ("invalid_value", "early")
    assert "No tool output found" in error["message"]
    client.send({"type": "response.item.create", "event_id": "wrong", "item": {
        "type": "function_call_output", "call_id": "call_nope", "output": "x"}})
    error = client.until("error")["error"]
    assert (error["param"], error["client_event_id"]) == ("item.call_id", "wrong")
    client.send({"type": "response.item.create", "event_id": "extra", "item": {
        "type": "function_call_output", "call_id": "call_nope", "output": "x", "extra": 1}}, valid=False)
    assert client.until("error")["error"]["param"] == "item.extra"
    # non-null delegation ids "are not accepted with Responses delegation"
    client.send({"type": "session.commentary.append", "event_id": "c", "content": "x",
                 "delegation_id": created["delegation"]["id"]})
    error = client.until("error")["error"]
    assert (error["param"], error["client_event_id"]) == ("delegation_id", "c")


def test_a_responses_delegation_without_a_function_tool_answers_at_once(client):
    client.start(delegation={"type": "responses", "responses": {"model": "gpt-5.2"}})
    delegated(client)
    envelopes = [client.until("response.event") for _ in TEXT_STREAM]
    assert [e["event"]["type"] for e in envelopes] == TEXT_STREAM
    assert transcript(client.quiet(1.0)).endswith("Done.")


def test_a_response_create_of_no_delegation_is_answered_in_text_only(client):
    client.start(delegation={"type": "responses", "responses": {"model": "gpt-5.2"}})
    client.send({"type": "response.create"})
    events = [client.until("response.event") for _ in TEXT_STREAM]
    assert all("delegation_id" not in e for e in events)
    assert of(client.quiet(0.5), OUTPUT_DELTA) == []


def test_the_responses_backend_can_be_updated_but_not_its_owner(client):
    client.start(delegation=dict(RESPONSES, responses=dict(RESPONSES["responses"], tools=[
        {"type": "mcp", "server_label": "crm", "server_url": "https://crm.example", "authorization": "secret"}])))
    client.send({"type": "session.update", "event_id": "u", "session": {"delegation": {
        "type": "responses", "acknowledgement_delay_ms": 100, "responses": {"instructions": "Be terse."}}}})
    updated = client.until("session.updated")["session"]["delegation"]
    assert updated["acknowledgement_delay_ms"] == 100
    assert updated["responses"]["instructions"] == "Be terse."
    assert updated["responses"]["model"] == "gpt-5.2"          # omitted settings keep their values
    # an MCP tool's authorization "is omitted from returned Live session data"
    assert updated["responses"]["tools"] == [{"type": "mcp", "server_label": "crm",
                                              "server_url": "https://crm.example"}]
    client.send({"type": "session.update", "session": {"delegation": {"type": "client"}}})
    assert client.until("error")["error"]["param"] == "session.delegation.type"
