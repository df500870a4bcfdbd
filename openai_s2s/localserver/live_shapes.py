"""The GPT-Live client events and session config, as :mod:`.live_schema` schemas copied from
the openai package's ``openai.types.live`` models (3.57), which the server does not import.

Each :class:`~.live_schema.Obj` with a ``ref`` names the model it copies; a test checks that
their fields are the same. Beyond the package, and as the service is described to behave:
the model must be gpt-live-1 or gpt-live-1.1 (checked by :mod:`.live_session`), G.711 is
8000 Hz only, and a voice string must be a built-in voice name (the package takes any
string; the service's answer to an unknown one is not checked). Parts this server does not
use are :class:`~.live_schema.Opaque`: decision questions, MCP filters, shell environments,
function parameter schemas, data channel selectors, Responses input items.
"""
from __future__ import annotations

from typing import Any, Dict

from .live_schema import AnyOf, Bool, Const, Int, ListOf, Nullable, Obj, Opaque, Spec, Str, Tagged

MODELS = ("gpt-live-1", "gpt-live-1.1")
BUILT_IN_VOICES = ("alloy", "ash", "ballad", "beacon", "bossa", "cedar", "cinder", "coral", "delta",
                   "echo", "gleam", "marin", "meridian", "quartz", "ripple", "sage", "shida",
                   "shimmer", "stone", "tempo", "verse", "vesper", "willow")
INPUT_ITEMS_MAX = 128
_L = "live."


def _typed(kind: str, ref: str = "", **fields: Any) -> Obj:
    """An object whose ``type`` is ``kind``; a field whose spec is wrapped in a 1-tuple is
    required, the others may be left out."""
    required = {"type"} | {k for k, v in fields.items() if isinstance(v, tuple)}
    specs = {k: (v[0] if isinstance(v, tuple) else v) for k, v in fields.items()}
    return Obj(dict(type=Const(kind), **specs), required, ref)


AUDIO_FORMAT = Tagged("type", {
    "audio/pcm": _typed("audio/pcm", _L + "audio_format:AudioPCM", rate=(Const(16000, 24000),)),
    "audio/pcmu": _typed("audio/pcmu", _L + "audio_format:AudioPCMU", rate=(Const(8000),)),
    "audio/pcma": _typed("audio/pcma", _L + "audio_format:AudioPCMA", rate=(Const(8000),)),
})
VOICE = AnyOf(Const(*BUILT_IN_VOICES), Obj({"id": Str()}, {"id"}, _L + "custom_voice:CustomVoice"))
AUDIO = Obj({"format": AUDIO_FORMAT,
             "output": Obj({"voice": VOICE}, (), _L + "session_config:AudioOutput")},
            (), _L + "session_config:Audio")

_RDC = _L + "responses_delegation_config:"
_FUNCTION_TOOL = _typed("function", _L + "function_tool:FunctionTool", name=(Str(),), description=Str(),
                        parameters=Opaque(dict), strict=Bool())
_BARE_TOOLS = {"web_search": "ToolWebSearch", "file_search": "ToolFileSearch",
               "code_interpreter": "ToolCodeInterpreter", "image_generation": "ToolImageGeneration",
               "custom": "ToolCustom", "namespace": "ToolNamespace", "tool_search": "ToolSearch",
               "programmatic_tool_calling": "ToolProgrammaticToolCalling", "computer": "ToolComputer",
               "apply_patch": "ToolApplyPatch"}
TOOL = Tagged("type", {
    "function": _FUNCTION_TOOL,
    **{kind: _typed(kind, _RDC + name) for kind, name in _BARE_TOOLS.items()},
    "shell": _typed("shell", _RDC + "ToolShell", environment=Opaque(dict)),
    "mcp": _typed("mcp", _RDC + "ToolMcp", allowed_callers=ListOf(Const("direct", "programmatic")),
                  allowed_tools=Opaque(list, dict), authorization=Str(), connector_id=Str(),
                  defer_loading=Bool(), headers=Opaque(dict), require_approval=Opaque(dict, str),
                  server_description=Str(), server_label=Str(), server_url=Str(), tunnel_id=Str()),
})
_BARE_CHOICES = {"file_search": "ToolChoiceFileSearch", "web_search": "ToolChoiceWebSearch",
                 "web_search_preview": "ToolChoiceWebSearchPreview",
                 "image_generation": "ToolChoiceImageGeneration", "computer": "ToolChoiceComputer",
                 "code_interpreter": "ToolChoiceCodeInterpreter",
                 "programmatic_tool_calling": "ToolChoiceProgrammaticToolCalling",
                 "shell": "ToolChoiceShell", "apply_patch": "ToolChoiceApplyPatch"}
TOOL_CHOICE = AnyOf(Const("auto", "none", "required"), Tagged("type", {
    "function": _typed("function", _RDC + "ToolChoiceLiveFunctionToolChoiceParam", name=(Str(),)),
    "mcp": _typed("mcp", _RDC + "ToolChoiceLiveMCPToolChoiceParam", name=(Str(),), server_label=(Str(),)),
    "custom": _typed("custom", _RDC + "ToolChoiceCustom", name=(Str(),)),
    "allowed_tools": _typed("allowed_tools", _RDC + "ToolChoiceLiveAllowedToolsChoiceParam",
                            tools=(ListOf(Opaque(dict)),), mode=Const("none", "auto", "required")),
    **{kind: _typed(kind, _RDC + name) for kind, name in _BARE_CHOICES.items()},
}))
_RESPONSES_FIELDS: Dict[str, Spec] = {
    "model": Str(), "instructions": Str(), "max_output_tokens": Int(minimum=1),
    "parallel_tool_calls": Bool(),
    "reasoning": Obj({"effort": Const("none", "minimal", "low", "medium", "high", "xhigh"),
                      "summary": Const("concise", "detailed", "auto")}, (), _RDC + "Reasoning"),
    "service_tier": Const("auto", "default", "fast_tier_temp_pilot", "flex", "priority", "ultrafast"),
    "text": Obj({"verbosity": Const("low", "medium", "high")}, (), _RDC + "Text"),
    "tool_choice": TOOL_CHOICE, "tools": ListOf(TOOL),
}
RESPONSES = Obj(_RESPONSES_FIELDS, {"model"}, _RDC + "ResponsesDelegationConfig")
RESPONSES_UPDATE = Obj(_RESPONSES_FIELDS, (),
                       _L + "responses_delegation_update_config:ResponsesDelegationUpdateConfig")
_ACK = Int(minimum=0)
_DECISIONS = Obj({"model": Str(), "questions": ListOf(Opaque(dict))}, {"model", "questions"},
                 _L + "decisions_delegation_config:DecisionsDelegationConfig")
DELEGATION = Tagged("type", {
    "client": _typed("client", _L + "client_delegation:ClientDelegation", acknowledgement_delay_ms=_ACK),
    "responses": _typed("responses", _L + "session_config:DelegationResponses", responses=(RESPONSES,),
                        acknowledgement_delay_ms=_ACK),
    "decisions": _typed("decisions", _L + "session_config:DelegationDecisions", decisions=(_DECISIONS,),
                        acknowledgement_delay_ms=_ACK),
})
DELEGATION_UPDATE = Tagged("type", {
    "client": _typed("client", _L + "client_delegation:ClientDelegation", acknowledgement_delay_ms=_ACK),
    "responses": _typed("responses", _L + "session_update_config:DelegationResponses",
                        responses=RESPONSES_UPDATE, acknowledgement_delay_ms=_ACK),
    "decisions": _typed("decisions", _L + "session_update_config:DelegationDecisions",
                        decisions=Opaque(dict), acknowledgement_delay_ms=_ACK),
})


def _message(role: str, ref: str, content: Spec) -> Obj:
    return Obj({"role": Const(role), "content": ListOf(content), "id": Str(),
                "status": Const("incomplete", "completed"), "type": Const("message")},
               {"role", "content"}, ref)


_INPUT_TEXT = Obj({"text": Str(), "type": Const("input_text")}, {"text"}, _L + "initial_item:DeveloperContent")
INITIAL_ITEM = Tagged("role", {
    "developer": _message("developer", _L + "initial_item:Developer", _INPUT_TEXT),
    "user": _message("user", _L + "initial_item:User", _INPUT_TEXT),
    "assistant": _message("assistant", _L + "initial_item:Assistant", Tagged("type", {
        # its type may be left out (the Tagged default): only the text is required
        "text": Obj({"type": Const("text"), "text": Str()}, {"text"}, _L + "initial_item:AssistantContentText"),
        "output_text": _typed("output_text", _L + "initial_item:AssistantContentOutputText", text=(Str(),)),
    }, default="text")),
})
TRIGGER = Obj({"type": Const("decisions"),
               "event_type": Const("session.input_transcript.delta", "session.output_transcript.delta"),
               "decisions": Obj({"questions": ListOf(Opaque(dict))}, {"questions"},
                                _L + "decision_trigger:Decisions")},
              {"type", "event_type", "decisions"}, _L + "decision_trigger:DecisionTrigger")
CLIENT = Obj({"data_channel": Obj({"allowed_client_events": AnyOf(Const("all"), ListOf(Str())),
                                   "allowed_server_events": AnyOf(Const("all"), ListOf(Opaque(dict)))},
                                  (), _L + "data_channel_config:DataChannelConfig")},
             {"data_channel"}, _L + "client_config:ClientConfig")
SESSION_CONFIG = Obj({
    "model": Str(), "audio": AUDIO, "client": CLIENT, "delegation": DELEGATION,
    "input": ListOf(INITIAL_ITEM, INPUT_ITEMS_MAX), "instructions": Str(), "safety_identifier": Str(),
    "store": Bool(), "triggers": ListOf(TRIGGER),
}, {"model"}, _L + "session_config:SessionConfig")
SESSION_UPDATE = Obj({"delegation": DELEGATION_UPDATE, "triggers": ListOf(TRIGGER)}, (),
                     _L + "session_update_config:SessionUpdateConfig")


def _event(kind: str, ref: str, **fields: Any) -> Obj:
    """A client event: its type, an optional event_id, and ``fields`` as for :func:`_typed`."""
    return _typed(kind, _L + ref, event_id=Str(), **fields)


def _context(kind: str, ref: str) -> Obj:
    # delegation_id: "Required, nullable"; content is limited to 500 tokens, checked by the
    # conversation (a token count, not a length)
    return _event(kind, ref, content=(Str(),), delegation_id=(Nullable(Str()),))


# Every client event type the package defines, in its ClientEvent union's order: the list an
# unknown type's error names.
CLIENT_EVENTS: Dict[str, Obj] = {
    "session.start": _event("session.start", "session_start_event:SessionStartEvent", session=(SESSION_CONFIG,)),
    "session.update": _event("session.update", "session_update_event:SessionUpdateEvent",
                             session=(SESSION_UPDATE,)),
    "session.input_audio.append": _event("session.input_audio.append",
                                         "input_audio_append_event:InputAudioAppendEvent", audio=(Str(),)),
    "session.input_audio.mute": _event("session.input_audio.mute", "input_audio_mute_event:InputAudioMuteEvent"),
    "session.input_audio.unmute": _event("session.input_audio.unmute",
                                         "input_audio_unmute_event:InputAudioUnmuteEvent"),
    "session.output_audio.fixture.play": _event("session.output_audio.fixture.play",
                                                "output_audio_fixture_play_event:OutputAudioFixturePlayEvent",
                                                audio=(Str(),)),
    "session.instructions.append": _context("session.instructions.append",
                                            "instructions_append_event:InstructionsAppendEvent"),
    "session.thinking.append": _context("session.thinking.append", "thinking_append_event:ThinkingAppendEvent"),
    "session.commentary.append": _context("session.commentary.append",
                                          "commentary_append_event:CommentaryAppendEvent"),
    # decision.create's event_id is required: "Reusing an event_id is rejected"
    "decision.create": Obj({"type": Const("decision.create"), "event_id": Str()}, {"type", "event_id"},
                           _L + "decision_create_event:DecisionCreateEvent"),
    "decision.item.create": _event("decision.item.create", "decision_item_create_event:DecisionItemCreateEvent",
                                   item=(Opaque(dict),)),
    "decision.item.delete": _event("decision.item.delete", "decision_item_delete_event:DecisionItemDeleteEvent",
                                   item_id=(Str(),)),
    "response.item.create": _event("response.item.create", "response_item_create_event:ResponseItemCreateEvent",
                                   item=(Opaque(dict),)),
    "response.create": _event("response.create", "response_create_event:ResponseCreateEvent"),
    "session.close": _event("session.close", "session_close_event:SessionCloseEvent"),
}
# response.item.create's item when it is a tool result, the one this server acts on; other
# Responses input items are taken as they come (openai.types.responses FunctionCallOutput)
FUNCTION_CALL_OUTPUT = Obj({"type": Const("function_call_output"), "call_id": Str(),
                            "output": AnyOf(Str(), ListOf(Opaque(dict))), "id": Str(), "caller": Opaque(dict),
                            "name": Str(), "namespace": Str(),
                            "status": Const("in_progress", "completed", "incomplete")},
                           {"type", "output"}, "responses.response_input_item:FunctionCallOutput")
