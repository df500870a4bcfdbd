"""Validate Realtime events against the openai package's own models (GA and beta), and
GPT-Live events (generation "live") against ``openai.types.live``.

The openai models accept unknown fields, so a beta-only field inside a GA
event would pass a plain validation: after validating, every model in the
result is walked and any field the model does not declare is an error.

A Live ``response.event`` carries a Responses streaming event as a plain dict; that nested
event is validated too, against ``openai.types.responses.ResponseStreamEvent``.
"""
from __future__ import annotations

import typing
from typing import Any, Dict, List

from pydantic import BaseModel, TypeAdapter

from openai.types.beta.realtime.realtime_client_event import RealtimeClientEvent as BetaClient
from openai.types.beta.realtime.realtime_server_event import RealtimeServerEvent as BetaServer
from openai.types.realtime.realtime_client_event import RealtimeClientEvent as GaClient
from openai.types.realtime.realtime_server_event import RealtimeServerEvent as GaServer
from openai.types.live.client_event import ClientEvent as LiveClient
from openai.types.live.server_event import ServerEvent as LiveServer
from openai.types.responses.response_stream_event import ResponseStreamEvent


def _by_type(union: Any) -> Dict[str, TypeAdapter]:
    """The union's members by their ``type`` literal, so an error names one model, not fifty."""
    members = typing.get_args(typing.get_args(union)[0])
    return {typing.get_args(m.model_fields["type"].annotation)[0]: TypeAdapter(m) for m in members}


_ADAPTERS = {
    ("client", "ga"): _by_type(GaClient), ("client", "beta"): _by_type(BetaClient),
    ("server", "ga"): _by_type(GaServer), ("server", "beta"): _by_type(BetaServer),
    # transport.dtmf.send is a server event in the package (the server asking the transport
    # to play a digit); it is not among the client events
    ("client", "live"): _by_type(LiveClient), ("server", "live"): _by_type(LiveServer),
    ("server", "responses"): _by_type(ResponseStreamEvent),
}


def _extras(value: Any, path: str, found: List[str]) -> None:
    if isinstance(value, BaseModel):
        for key in (value.model_extra or {}):
            found.append(f"{path}.{key}")
        for name in type(value).model_fields:
            _extras(getattr(value, name), f"{path}.{name}", found)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _extras(item, f"{path}[{i}]", found)
    elif isinstance(value, dict):
        for key, item in value.items():
            _extras(item, f"{path}.{key}", found)


def _validate(side: str, event: Dict[str, Any], generation: str) -> None:
    adapter = _ADAPTERS[(side, generation)].get(event.get("type"))
    if adapter is None:
        raise AssertionError(f"{event.get('type')!r} is not a {generation} {side} event")
    try:
        model = adapter.validate_python(event)
    except Exception as exc:
        raise AssertionError(f"{generation} {side} event {event.get('type')!r} is invalid: {exc}") from None
    found: List[str] = []
    _extras(model, "", found)
    if found:
        raise AssertionError(f"{generation} {side} event {event.get('type')!r} has fields the "
                             f"{generation} protocol does not define: {', '.join(found)}")
    if generation == "live" and side == "server" and event.get("type") == "response.event":
        _validate("server", event["event"], "responses")


def validate_client_event(event: Dict[str, Any], generation: str) -> None:
    _validate("client", event, generation)


def validate_server_event(event: Dict[str, Any], generation: str) -> None:
    _validate("server", event, generation)
