"""Connection and session options: built-in defaults, the config file, channel variables.

Precedence, lowest first: defaults, ``openai_s2s.conf.xml`` ``<settings>``, then
per-call channel variables named ``openai_s2s_<option>``. Options marked
``file_only`` can be set only by the operator's config file, never by a channel
variable, because a dialplan or ESL client must not widen what the module reads.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
import xml.etree.ElementTree as ET
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

VAR_PREFIX = "openai_s2s_"
KEY_ENV_VARS = ("OPENAI_S2S_API_KEY", "OPENAI_API_KEY")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _bool(text: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        low = text.strip().lower()
        if low not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}, got {text!r}")
        return low
    return parse


def _bounded(kind: Callable[[str], Any], low: float, high: float) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text.strip())
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}, got {value}")
        return value
    return parse


def _headers(text: str) -> Dict[str, str]:
    import orjson
    try:
        value = orjson.loads(text) if text.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"expected a JSON object of header names to values: {exc}") from None
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValueError("expected a JSON object of header names to string values")
    for name, val in value.items():
        if not name or any(c in name + val for c in "\r\n") or ":" in name:
            raise ValueError(f"bad header {name!r}")
    return value


def _host_patterns(text: str) -> Tuple[str, ...]:
    patterns = tuple(p.strip().lower() for p in text.split(",") if p.strip())
    for pattern in patterns:
        name = pattern[2:] if pattern.startswith("*.") else pattern
        if not name or not all(c.isalnum() or c in ".-:" for c in name):
            raise ValueError(f"bad host pattern {pattern!r}")
    return patterns


def _auto_or_seconds(low: float, high: float) -> Callable[[str], Optional[float]]:
    """``auto`` (None: the module decides) or a number of seconds in the range."""
    def parse(text: str) -> Optional[float]:
        word = text.strip().lower()
        if word == "auto":
            return None
        try:
            value = float(word)
        except ValueError:
            value = math.nan
        if not low <= value <= high:
            raise ValueError(f"expected auto or seconds between {low:g} and {high:g}, got {text!r}")
        return value
    return parse


def _text(text: str) -> Optional[str]:
    return text.strip() or None


def _auto_bool(text: str) -> Optional[bool]:
    """``auto`` (None: the module decides) or true/false."""
    return None if text.strip().lower() == "auto" else _bool(text)


def _template(text: str) -> str:
    if "{digits}" not in text or len(text) > 500:
        raise ValueError("the template must hold {digits} (and at most 500 characters)")
    return text


def _tool_names(text: str) -> Tuple[str, ...]:
    from ..call.callcontrol import TOOLS
    names = tuple(dict.fromkeys(n.strip().lower() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in TOOLS and n not in ("none", "off")]
    if unknown:
        raise ValueError(f"unknown call control tool {unknown[0][:32]!r} (one of: {', '.join(TOOLS)})")
    return tuple(n for n in names if n in TOOLS)


_DESTINATION_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_DESTINATION_WORD = re.compile(r"[^\s'\"]{1,128}")


def _destinations(text: str) -> Dict[str, Tuple[str, Optional[str], Optional[str]]]:
    """``{"name": "extension[ dialplan[ context]]" | {"extension":..,"dialplan":..,"context":..}}``
    -> name -> (extension, dialplan or None, context or None)."""
    import orjson
    try:
        value = orjson.loads(text) if text.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"expected a JSON object of names to destinations: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError("expected a JSON object of names to destinations")
    out: Dict[str, Tuple[str, Optional[str], Optional[str]]] = {}
    for name, dest in value.items():
        if not _DESTINATION_NAME.fullmatch(name):
            raise ValueError(f"bad destination name {name[:64]!r} (letters, digits, _ . -)")
        if isinstance(dest, str):
            words = dest.split()
            parts = dict(zip(("extension", "dialplan", "context"), words)) if len(words) <= 3 else None
        elif isinstance(dest, dict) and set(dest) <= {"extension", "dialplan", "context"}:
            parts = dest
        else:
            parts = None
        if not parts or not all(isinstance(v, str) and _DESTINATION_WORD.fullmatch(v) for v in parts.values()) \
                or "extension" not in parts:
            raise ValueError(f"destination {name!r}: expected \"extension[ dialplan[ context]]\" or "
                             "an object with extension, dialplan, context")
        out[name] = (parts["extension"], parts.get("dialplan"), parts.get("context"))
    return out


@dataclasses.dataclass(frozen=True)
class Option:
    name: str
    default: Any
    parse: Callable[[str], Any]
    doc: str
    file_only: bool = False


OPTIONS = (
    Option("api_key", None, _text, "API key used when session.create names none "
           "(else OPENAI_S2S_API_KEY or OPENAI_API_KEY from the switch's environment)"),
    Option("protocol", "auto", _choice("auto", "ga", "beta", "live"),
           "API generation: auto (from the path: /v1/live/sessions is GPT-Live; a Realtime one is "
           "confirmed by session.created), ga, beta or live"),
    Option("live_model", None, _text, "GPT-Live model for a session.start made from a session.update "
           "that names none (default: the newest the module knows)"),
    Option("live_delegation_model", None, _text, "GPT-Live: the Responses backend's model when a "
           "session.update's function tools move there"),
    Option("connect_timeout", 10.0, _bounded(float, 0.5, 120), "seconds to open the websocket"),
    Option("ping_interval", 15.0, _bounded(float, 0, 3600),
           "seconds between websocket pings; the session ends after two unanswered (0 = off)"),
    Option("send_timeout", 5.0, _bounded(float, 0.5, 120),
           "seconds a blocked socket send may take before the session ends"),
    Option("headers", {}, _headers, "extra HTTP headers for the upgrade, as a JSON object"),
    Option("tls_verify", True, _bool, "verify the server's certificate", file_only=True),
    Option("tls_verify_hostname", True, _bool, "check the certificate names the host", file_only=True),
    Option("tls_ca_file", None, _text, "CA bundle (PEM) for a private CA", file_only=True),
    Option("tls_cert_file", None, _text, "client certificate (PEM) for mutual TLS", file_only=True),
    Option("tls_key_file", None, _text, "client private key (PEM) for mutual TLS", file_only=True),
    Option("key_hosts", ("api.openai.com", "*.openai.azure.com", "loopback"), _host_patterns,
           "hosts a key from the config, a channel variable or the environment may be sent to "
           "(comma-separated; *.domain for its subdomains; loopback for 127.0.0.0/8, ::1 and "
           "localhost); a key given on the command line goes where the command says",
           file_only=True),
    Option("key_over_ws", False, _bool,
           "allow a key over plain ws:// to a host that is not loopback", file_only=True),
    # 40: at 100 parked calls on 2 cores, 20 -> 40 took the switch from 126 to 118 % and the local
    # server from 52 to 42 %; 60 and 100 saved little more (115 %) and cost 20 ms of latency each
    # (docs/performance.md, "Choosing chunk-ms")
    Option("chunk_ms", 40, _bounded(int, 10, 500), "ms of caller audio per input_audio_buffer.append"),
    Option("hold_response_create", True, _bool,
           "hold a response.create sent before the first session.updated until it arrives"),
    Option("playout_max_ms", 120000, _bounded(int, 1000, 600000),
           "most model audio queued for the caller; more fires buffer_overrun"),
    Option("uplink_max_ms", 5000, _bounded(int, 100, 60000),
           "most caller audio waiting for the websocket; more fires buffer_overrun"),
    Option("uplink_max_latency_ms", 1000, _bounded(int, 100, 60000),
           "caller audio older than this when the uplink gets to it is dropped (one "
           "buffer_overrun a second), so the model never hears the caller late"),
    Option("resampler", "fir", _choice("fir", "sinc_best", "sinc_medium", "sinc_fastest", "linear"),
           "resampler for 24 kHz pcm: fir (by-3 FIR, else sinc_medium) or a libsamplerate converter"),
    Option("playout_mode", "mix", _choice("mix", "replace"),
           "mix the model into what the channel plays (hold music, a bridged leg) or replace it"),
    Option("media", "auto", _choice("auto", "bug", "unicast"),
           "how the call's audio is reached: auto (unicast for a parked channel without "
           "send_silence_when_idle, else the media bug), a media bug (any channel), or the "
           "switch's unicast mode (parked channels; no Python on media threads)"),
    Option("barge_in", "auto", _choice("auto", "always", "never"),
           "when the caller speaks over the model: auto (flush playout and truncate when the "
           "session's turn detection interrupts, as the server confirmed it; nothing when "
           "interrupt_response is false), always (flush, cancel, truncate), never"),
    Option("reconnect", "expiry", _choice("off", "expiry", "always"),
           "open a new session on the same call, replaying the last session.update and the "
           "conversation: expiry (before the service's session limit), always (also when the "
           "server closes or the connection drops), off"),
    Option("idle_timeout_action", "forward", _choice("forward", "end"),
           "on input_audio_buffer.timeout_triggered: forward it, or end the session"),
    Option("session_limit", None, _auto_or_seconds(1, 86400),
           "seconds the server keeps a session open: auto (30 min for Azure OpenAI, else 60) "
           "or a number"),
    Option("expiry_warning", 60.0, _bounded(float, 0, 3600),
           "seconds before the session limit that session.expiring is fired (0 = never)"),
    Option("dtmf", None, _auto_bool,
           "send the digits the caller presses to the model as a user message: auto (the agent "
           "does, an ESL session does not), true or false"),
    Option("dtmf_pause_ms", 1500, _bounded(int, 100, 10000),
           "ms without a digit that end a batch of digits (# ends one at once)"),
    Option("dtmf_template", "The caller pressed {digits}", _template,
           "the message for a batch of digits; {digits} becomes them, space-separated"),
    Option("call_control", (), _tool_names,
           "the built-in call control tools the module answers: end_call, transfer_call, "
           "send_dtmf (comma-separated; the agent declares them to the model)"),
    Option("transfer_destinations", {}, _destinations,
           "where transfer_call may send the call: a JSON object of names to "
           "\"extension[ dialplan[ context]]\" or {extension, dialplan, context}", file_only=True),
    Option("instructions_dir", None, _text,
           "directory that file://NAME instructions are read from", file_only=True),
    Option("webhook_timeout", 5.0, _bounded(float, 0.1, 60),
           "seconds a webhook tool's whole HTTP exchange may take (a tool's own timeout wins)"),
    Option("webhook_secret", None, _text,
           "secret for the X-Signature: sha256=<HMAC-SHA256 of the body> header of webhook calls",
           file_only=True),
    Option("webhook_ca_file", None, _text, "CA bundle (PEM) for https webhooks", file_only=True),
    Option("transcript_dir", None, _text,
           "directory each session's transcript is written to when it ends, as "
           "<uuid>-<unix start>.jsonl", file_only=True),
    Option("max_event_bytes", 1 << 20, _bounded(int, 1024, 16 << 20),
           "largest client.event accepted", file_only=True),
    Option("max_frame_bytes", 16 << 20, _bounded(int, 64 << 10, 256 << 20),
           "largest server frame or message; a larger one ends the session", file_only=True),
)
_BY_NAME = {opt.name: opt for opt in OPTIONS}


def option(name: str) -> Option:
    return _BY_NAME[name]


class ConfigError(ValueError):
    """An option value that cannot be used; the message names the option."""


def parse_settings_xml(text: str) -> Dict[str, str]:
    """``<configuration><settings><param name= value=/>`` -> raw strings, names normalised."""
    root = ET.fromstring(text)
    settings = root if root.tag == "settings" else root.find(".//settings")
    raw: Dict[str, str] = {}
    if settings is None:
        return raw
    for param in settings.findall("param"):
        name = (param.get("name") or "").strip().replace("-", "_")
        if name:
            raw[name] = param.get("value", "")
    return raw


class Settings:
    """Module-wide defaults: built-ins overridden by the config file."""

    def __init__(self, raw: Optional[Mapping[str, str]] = None):
        self.values: Dict[str, Any] = {opt.name: opt.default for opt in OPTIONS}
        self.warnings = []
        for name, text in (raw or {}).items():
            opt = _BY_NAME.get(name)
            if opt is None:
                self.warnings.append(f"unknown setting {name!r} ignored")
                continue
            try:
                self.values[name] = opt.parse(text)
            except ValueError as exc:
                self.warnings.append(f"setting {name}: {exc}; default kept")

    @classmethod
    def from_xml(cls, text: Optional[str]) -> "Settings":
        if not text:
            return cls()
        try:
            return cls(parse_settings_xml(text))
        except ET.ParseError as exc:
            settings = cls()
            settings.warnings.append(f"config file unreadable ({exc}); defaults used")
            return settings

    def for_call(self, get_var: Callable[[str], Optional[str]]) -> Dict[str, Any]:
        """Options for one call: these settings overridden by the channel's variables."""
        values = dict(self.values)
        for opt in OPTIONS:
            if opt.file_only:
                continue
            text = get_var(VAR_PREFIX + opt.name)
            if text is None or text == "":
                continue
            try:
                values[opt.name] = opt.parse(text)
            except ValueError as exc:
                raise ConfigError(f"{VAR_PREFIX}{opt.name}: {exc}") from None
        return values


def key_from_environment(environ: Mapping[str, str] = os.environ) -> Optional[str]:
    for name in KEY_ENV_VARS:
        if environ.get(name):
            return environ[name]
    return None
