"""Function calls the module answers itself: off the receiver thread, the output as an item,
one response.create once no response is in progress, and a tool's failure heard by the model."""
import threading

import orjson

from engine_harness import wait_until
from openai_s2s.call import registry

TOOLS_UPDATE = {"type": "session.update", "session": {"type": "realtime", "tools": [
    {"type": "function", "name": "lookup_order", "description": "Look up an order",
     "parameters": {"type": "object", "properties": {"order": {"type": "string"}}, "required": ["order"]}}],
    "tool_choice": "auto"}}


def _start(h, uuid, tool):
    h.call(uuid)
    h.create(uuid)
    h.connected(uuid)
    registry.get(uuid).tools.register("lookup_order", tool)
    h.send(uuid, TOOLS_UPDATE)
    h.wait_server_event(uuid, "session.updated")
    h.send(uuid, {"type": "response.create"})


def _outputs(h):
    return [e for e in h.received() if e["type"] == "conversation.item.create"
            and e["item"]["type"] == "function_call_output"]


def test_a_module_tool_is_answered_and_the_model_goes_on(h):
    threads = []

    def lookup(args, ctx):
        threads.append(threading.current_thread().name)
        return orjson.dumps({"order": args["order"], "status": "shipped", "uuid": ctx.uuid}).decode()

    _start(h, "t-ok", lookup)
    assert wait_until(lambda: _outputs(h))
    output = _outputs(h)[0]
    assert orjson.loads(output["item"]["output"]) == {"order": "test", "status": "shipped", "uuid": "t-ok"}
    assert threads and threads[0].startswith("s2s-tool-")
    # one response.create after the output, sent only once the tool call's response was done
    assert wait_until(lambda: len([e for e in h.received() if e["type"] == "response.create"]) == 2)
    kinds = [e["type"] for e in h.received()]
    assert kinds.index("conversation.item.create") < len(kinds) - 1 - kinds[::-1].index("response.create")
    assert wait_until(lambda: len(h.server_events("t-ok", "response.done")) >= 2)
    assert h.server_events("t-ok", "error") == []


def test_a_failing_tool_is_an_output_that_says_so(h):
    def broken(args, ctx):
        raise RuntimeError("database down")

    _start(h, "t-fail", broken)
    assert wait_until(lambda: _outputs(h))
    assert orjson.loads(_outputs(h)[0]["item"]["output"]) == {"error": "the tool failed (RuntimeError)"}
    assert any("tool lookup_order failed" in line for line in h.logs)
    assert h.server_events("t-fail", "error") == []


def test_a_tool_the_module_does_not_know_is_left_to_the_application(h):
    h.call("t-esl")
    h.create("t-esl")
    h.connected("t-esl")
    h.send("t-esl", TOOLS_UPDATE)
    h.wait_server_event("t-esl", "session.updated")
    h.send("t-esl", {"type": "response.create"})
    assert h.wait_server_event("t-esl", "response.output_item.done")
    assert h.wait_server_event("t-esl", "response.done")
    assert _outputs(h) == []
