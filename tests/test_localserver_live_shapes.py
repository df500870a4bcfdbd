"""The local GPT-Live server's strict shapes are the openai package's: every object its schemas
write out has the fields of the package model it names, and requires what the package's
request types (``*_param`` TypedDicts, where they exist) require: those say ``delegation_id``
is "Required, nullable", which the response-side models leave optional. Its client events
are the package's, and the package's own Live client talks to it."""
import importlib
import typing
from typing import Iterator, Optional, Tuple

import openai
import pytest
from pydantic import BaseModel

from openai.types.live.client_event import ClientEvent
from openai_s2s.localserver import live_shapes
from openai_s2s.localserver.live_schema import AnyOf, ListOf, Nullable, Obj, Spec, Tagged
from engine_harness import KEY
from test_localserver_live_kit import MODEL, live_server


def objects(spec: Spec, seen=None) -> Iterator[Obj]:
    seen = set() if seen is None else seen
    if id(spec) in seen:
        return
    seen.add(id(spec))
    if isinstance(spec, Obj):
        yield spec
        for field in spec.fields.values():
            yield from objects(field, seen)
    elif isinstance(spec, Tagged):
        for choice in spec.choices.values():
            yield from objects(choice, seen)
    elif isinstance(spec, AnyOf):
        for alternative in spec.alternatives:
            yield from objects(alternative, seen)
    elif isinstance(spec, (ListOf, Nullable)):
        yield from objects(spec.item if isinstance(spec, ListOf) else spec.inner, seen)


ROOTS = list(live_shapes.CLIENT_EVENTS.values()) + [live_shapes.FUNCTION_CALL_OUTPUT]
REFERENCED = {obj.ref: obj for root in ROOTS for obj in objects(root) if obj.ref}


def model_of(ref: str) -> type:
    module, name = ref.split(":")
    return getattr(importlib.import_module("openai.types." + module), name)


def param_of(ref: str) -> Optional[type]:
    """The request-side TypedDict of the model ``ref`` names, when the package has one."""
    module, name = ref.split(":")
    try:
        params = importlib.import_module(f"openai.types.{module}_param")
    except ImportError:
        return None
    return getattr(params, name + "Param", None) or getattr(params, name, None)


def api_fields(ref: str) -> Tuple[set, set]:
    model = model_of(ref)
    names = {f.alias or n for n, f in model.model_fields.items()}
    param = param_of(ref)
    if param is not None:
        hints = typing.get_type_hints(param, include_extras=True)
        required = {k for k, hint in hints.items() if typing.get_origin(hint) is typing.Required}
    else:
        required = {f.alias or n for n, f in model.model_fields.items() if f.is_required()}
    return names, required


def test_the_schemas_name_the_models_they_copy():
    assert len(REFERENCED) >= 60
    unreferenced = [o for root in ROOTS for o in objects(root) if not o.ref]
    assert unreferenced == []


@pytest.mark.parametrize("ref", sorted(REFERENCED))
def test_each_object_has_the_fields_of_its_package_model(ref):
    assert issubclass(model_of(ref), BaseModel)
    names, required = api_fields(ref)
    obj = REFERENCED[ref]
    assert set(obj.fields) == names
    assert set(obj.required) == required


def test_the_client_events_are_the_packages():
    package = [typing.get_args(m.model_fields["type"].annotation)[0]
               for m in typing.get_args(typing.get_args(ClientEvent)[0])]
    assert list(live_shapes.CLIENT_EVENTS) == package


@pytest.mark.filterwarnings("ignore::DeprecationWarning")   # the package's use of websockets
def test_the_packages_own_live_client_talks_to_the_server():
    with live_server(speed=8.0) as srv:
        url = f"127.0.0.1:{srv.port}/v1"
        client = openai.OpenAI(api_key=KEY, base_url="http://" + url, websocket_base_url="ws://" + url)
        with client.live.connect() as conn:
            conn.send({"type": "session.start", "session": {"model": MODEL}})
            started = next(iter(conn))
            assert started.type == "session.started"
            assert started.session.audio.output.voice == "marin"
            conn.session.input_audio.mute()
            assert next(iter(conn)).type == "session.input_audio.muted"
        assert srv.connections[0].path == "/v1/live/sessions"
        assert [e["type"] for e in srv.connections[0].received] == ["session.start", "session.input_audio.mute"]


def test_an_assistant_history_part_may_leave_its_type_out():
    session = {"model": MODEL, "input": [{"role": "assistant", "content": [{"text": "Hello."}]}]}
    assert live_shapes.SESSION_CONFIG.check(session, "session") is None
    session["input"][0]["content"][0]["type"] = "input_text"
    assert live_shapes.SESSION_CONFIG.check(session, "session").param == "session.input[0].content[0].type"
