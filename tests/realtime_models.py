"""Validate Realtime events against the openai package's own models (GA and beta).

The openai models accept unknown fields, so a beta-only field inside a GA
event would pass a plain validation: after validating, every model in the
result is walked and any field the model does not declare is an error.
"""
from __future__ import annotations

import typing
from typing import Any, Dict, List

from pydantic import BaseModel, TypeAdapter

from openai.types.beta.realtime.realtime_client_event import RealtimeClientEvent as BetaClient
from openai.types.beta.realtime.realtime_server_event import RealtimeServerEvent as BetaServer
from openai.types.realtime.realtime_client_event import RealtimeClientEvent as GaClient
from openai.types.realtime.realtime_server_event import RealtimeServerEvent as GaServer



def _by_type(union: Any) -> Dict[str, TypeAdapter]:
    """The union's members by their ``type`` literal, so an error names one model, not fifty."""
    members = typing.get_args(typing.get_args(union)[0])
    return {typing.get_args(m.model_fields["type"].annotation)[0]: TypeAdapter(m) for m in members}


_ADAPTERS = {
    ("client", "ga"): _by_type(GaClient), ("client", "beta"): _by_type(BetaClient),
    ("server", "ga"): _by_type(GaServer), ("server", "beta"): _by_type(BetaServer),
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


def validate_client_event(event: Dict[str, Any], generation: str) -> None:
    _validate("client", event, generation)


def validate_server_event(event: Dict[str, Any], generation: str) -> None:
    _validate("server", event, generation)
