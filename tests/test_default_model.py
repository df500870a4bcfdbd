"""The model asked for when none is named: one the openai package knows and does not deprecate,
used by the agent and announced by the local server."""
import inspect
import re
import typing

from openai_s2s.realtime import service
from engine_harness import wait_until


def _deprecated_models():
    """The model names the openai package's ``model`` docstring lists as deprecated."""
    from openai.types.realtime import realtime_session_create_request as module
    source = inspect.getsource(module)
    block = source[source.index("Deprecated values:"):source.index("Announced shutdown")]
    return set(re.findall(r'"([^"]+)"', block))


def test_the_default_model_is_current():
    from openai.types.realtime.realtime_session_create_request import RealtimeSessionCreateRequest
    annotation = RealtimeSessionCreateRequest.model_fields["model"].annotation
    known = {value for arg in typing.get_args(annotation) for value in typing.get_args(arg)}
    deprecated = _deprecated_models()
    assert "gpt-realtime" in deprecated
    assert service.DEFAULT_MODEL in known and service.DEFAULT_MODEL not in deprecated


def test_the_agent_and_the_local_server_use_the_default_model(local_harness):
    from openai_s2s.control.agent import plan
    assert f"model={service.DEFAULT_MODEL} " in plan({}.get, 8000, None).create_args
    h = local_harness
    h.call("u-model")
    h.create("u-model")
    assert h.connected("u-model")
    assert wait_until(lambda: h.server_events("u-model", "session.created"))
    assert h.server_events("u-model", "session.created")[0]["session"]["model"] == service.DEFAULT_MODEL
