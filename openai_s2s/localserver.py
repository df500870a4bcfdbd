"""A local server that speaks the OpenAI Realtime protocol (GA and beta) on loopback.

For tests, for trying the module without a key, and as a load-test target::

    python -m openai_s2s.localserver --port 8765 --api-key sk-local --reply echo

It checks auth, detects speech by energy, answers each turn with audio streamed
faster than real time (an echo of the caller's turn, or a tone) with a
transcript, calls the first tool when tools are set, honours response.cancel
and conversation.item.truncate, and can be told to misbehave (``fault``).
The websocket framing (RFC 6455, server side) is written here with the
standard library so the server needs nothing the module does not already have.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import itertools
import signal
import socket
import ssl
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

import numpy as np
import orjson

from .media import g711

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
PATH_PREFIXES = ("/v1/realtime", "/openai/realtime", "/openai/v1/realtime")
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
BETA_SESSION_KEYS = {"modalities", "voice", "input_audio_format", "output_audio_format",
                     "turn_detection", "input_audio_transcription", "input_audio_noise_reduction",
                     "temperature", "max_response_output_tokens"}
WINDOW_MS = 20
DELTA_MS = 100
_ids = itertools.count(1)


def new_id(prefix: str) -> str:
    return f"{prefix}_{next(_ids):06d}"


# -- audio helpers ---------------------------------------------------------------------
_RATE = {"pcm": 24000, "pcmu": 8000, "pcma": 8000}


def decode_audio(fmt: str, data: bytes) -> np.ndarray:
    if fmt == "pcmu":
        data = g711.ulaw_decode(data)
    elif fmt == "pcma":
        data = g711.alaw_decode(data)
    return np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2")


def encode_audio(fmt: str, samples: np.ndarray) -> bytes:
    pcm = samples.astype("<i2").tobytes()
    if fmt == "pcmu":
        return g711.ulaw_encode(pcm)
    if fmt == "pcma":
        return g711.alaw_encode(pcm)
    return pcm


def resample(samples: np.ndarray, src: int, dst: int) -> np.ndarray:
    if src == dst or not len(samples):
        return samples
    n = int(len(samples) * dst / src)
    return np.interp(np.arange(n) * src / dst, np.arange(len(samples)), samples).astype(np.int16)


def tone(rate: int, seconds: float = 1.0, freq: float = 440.0, amp: int = 8000) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def _format_name(value: Any) -> Optional[str]:
    if isinstance(value, dict):
        return {"audio/pcm": "pcm", "audio/pcmu": "pcmu", "audio/pcma": "pcma"}.get(value.get("type"))
    return {"pcm16": "pcm", "g711_ulaw": "pcmu", "g711_alaw": "pcma"}.get(value)


def _example_args(tool: Dict[str, Any]) -> str:
    params = tool.get("parameters") or {}
    props = params.get("properties") or {}
    args: Dict[str, Any] = {}
    for name in params.get("required") or []:
        spec = props.get(name) or {}
        if spec.get("enum"):
            args[name] = spec["enum"][0]
        elif spec.get("type") in ("number", "integer"):
            args[name] = 1
        elif spec.get("type") == "boolean":
            args[name] = True
        else:
            args[name] = "test"
    return orjson.dumps(args).decode()


# -- one websocket connection ------------------------------------------------------------
class Connection:
    def __init__(self, server: "LocalRealtimeServer", sock: socket.socket, fault: Optional[str]):
        self.server = server
        self.sock = sock
        self.fault = fault
        self.path = ""
        self.headers: Dict[str, str] = {}
        self.generation = "ga"
        self.received: List[Dict[str, Any]] = []
        self.sent: List[Dict[str, Any]] = []
        self.truncations: List[Dict[str, Any]] = []
        self.closed = False
        self.close_code: Optional[int] = None
        self._rbuf = bytearray()               # read ahead of the frame being parsed
        self._send_lock = threading.Lock()
        self._state_lock = threading.RLock()
        self._stop = threading.Event()
        # session state
        self.session: Dict[str, Any] = {}
        self.in_fmt = self.out_fmt = "pcm"
        self.vad: Optional[Dict[str, Any]] = {"type": "server_vad", "silence_duration_ms": 500,
                                              "create_response": True}
        self.tools: List[Dict[str, Any]] = []
        self.text_only = False
        self.items: List[Dict[str, Any]] = []
        self.audio_ms = 0                      # ms of input audio appended so far
        self.buffer: List[np.ndarray] = []     # uncommitted input audio
        self.pending = np.zeros(0, np.int16)   # samples short of a whole VAD window
        self.speech_item: Optional[str] = None
        self.speech: List[np.ndarray] = []
        self.silent_ms = 0
        self.last_turn = np.zeros(0, np.int16)  # the caller's last turn, at 24 kHz
        self.assistant_audio_ms: Dict[str, int] = {}
        self.response: Optional[Dict[str, Any]] = None
        self.cancel = threading.Event()
        self.events_sent = 0

    # framing ---------------------------------------------------------------------------
    def _recv_exact(self, n: int) -> bytes:
        # Read ahead: a recv per header field costs a GIL hand-off each, and with a hundred
        # connections those hand-offs, not the work, were most of this server's CPU.
        while len(self._rbuf) < n:
            chunk = self.sock.recv(max(65536, n - len(self._rbuf)))
            if not chunk:
                raise ConnectionError("peer closed")
            self._rbuf += chunk
        data = bytes(self._rbuf[:n])
        del self._rbuf[:n]
        return data

    def recv_frame(self) -> Tuple[int, bool, bytes]:
        b0, b1 = self._recv_exact(2)
        fin, opcode, masked, length = b0 & 0x80, b0 & 0x0F, b1 & 0x80, b1 & 0x7F
        if length == 126:
            length = int.from_bytes(self._recv_exact(2), "big")
        elif length == 127:
            length = int.from_bytes(self._recv_exact(8), "big")
        mask = self._recv_exact(4) if masked else b""
        payload = self._recv_exact(length)
        if masked and length:
            key = np.frombuffer((mask * (length // 4 + 1))[:length], np.uint8)
            payload = (np.frombuffer(payload, np.uint8) ^ key).tobytes()
        return opcode, bool(fin), payload

    def send_frame(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        if n < 126:
            header = bytes([0x80 | opcode, n])
        elif n < 65536:
            header = bytes([0x80 | opcode, 126]) + n.to_bytes(2, "big")
        else:
            header = bytes([0x80 | opcode, 127]) + n.to_bytes(8, "big")
        with self._send_lock:
            if not self.closed:
                self.sock.sendall(header + payload)

    def send_event(self, kind: str, **fields: Any) -> None:
        if self._stop.is_set():
            return
        event = {"type": kind, "event_id": new_id("event"), **fields}
        if self.server.record:
            self.sent.append(event)
        self.send_frame(OP_TEXT, orjson.dumps(event))
        self.events_sent += 1
        if self.fault and self.fault.startswith("close_after:") \
                and self.events_sent >= int(self.fault.split(":", 1)[1]):
            self.close(1011, b"injected fault")

    def close(self, code: int = 1000, reason: bytes = b"") -> None:
        with self._send_lock:
            if self.closed:
                return
            try:
                self.sock.sendall(bytes([0x88, 2 + len(reason)]) + code.to_bytes(2, "big") + reason)
            except OSError:
                pass
            self.closed = True
            self.close_code = self.close_code or code
        self._stop.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # handshake -------------------------------------------------------------------------
    def _http_reply(self, status: int, reason: str, body: bytes = b"", extra: str = "") -> None:
        self.sock.sendall(f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(body)}\r\n"
                          f"Content-Type: application/json\r\n{extra}\r\n".encode() + body)

    def handshake(self) -> bool:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(4096)
            if not chunk or len(data) > 65536:
                return False
            data += chunk
        head, _, self._rbuf[:] = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = (lines[0].split(" ") + ["", ""])[:3]
        self.path = target
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        if self.fault and self.fault.startswith("slow_handshake:"):
            time.sleep(float(self.fault.split(":", 1)[1]))
        if self.fault and self.fault.startswith("refuse:"):
            self._http_reply(int(self.fault.split(":", 1)[1]), "Refused", b'{"error":"refused"}')
            return False
        parts = urlsplit(target)
        if method != "GET" or not parts.path.startswith(PATH_PREFIXES):
            self._http_reply(404, "Not Found", b'{"error":"not found"}')
            return False
        query = parse_qs(parts.query)
        key = self.server.api_key
        offered = {self.headers.get("api-key"), (query.get("api-key") or [None])[0]}
        auth = self.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            offered.add(auth[7:].strip())
        if key is not None and key not in offered:
            self._http_reply(401, "Unauthorized", b'{"error":{"message":"Incorrect API key provided",'
                                                  b'"type":"invalid_request_error","code":"invalid_api_key"}}')
            return False
        if self.server.generation in ("ga", "beta"):
            self.generation = self.server.generation
        else:
            beta = self.headers.get("openai-beta", "").lower() == "realtime=v1"
            self.generation = "beta" if beta or ("api-version" in query and "/v1/" not in parts.path) else "ga"
        accept = base64.b64encode(hashlib.sha1(
            (self.headers.get("sec-websocket-key", "") + GUID).encode()).digest()).decode()
        self.sock.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n").encode())
        return True

    # main loop -------------------------------------------------------------------------
    def serve(self) -> None:
        try:
            if not self.handshake():
                return
            self.session = self._default_session()
            self.send_event("session.created", session=self.session)
            if self.fault == "stall":
                self._stop.wait()
                return
            if self.fault == "garbage":
                self.send_frame(OP_TEXT, b"this is not json {")
            elif self.fault == "binary":
                self.send_frame(OP_BINARY, b"\x00\x01\x02")
            elif self.fault and self.fault.startswith("expire_after:"):
                threading.Timer(float(self.fault.split(":", 1)[1]), self._expire).start()
            self._read_loop()
        except (OSError, ConnectionError):
            pass
        finally:
            self.closed = True
            self._stop.set()
            self.cancel.set()
            try:
                self.sock.close()
            except OSError:
                pass

    def _expire(self) -> None:
        if not self.closed:
            self.send_event("error", error={"type": "invalid_request_error", "code": "session_expired",
                                            "message": "Your session hit the maximum duration of 60 minutes."})
            self.close(1000)

    def _read_loop(self) -> None:
        message = bytearray()
        while not self._stop.is_set():
            opcode, fin, payload = self.recv_frame()
            if opcode == OP_CLOSE:
                self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                self.close(self.close_code)
                return
            if opcode == OP_PING:
                self.send_frame(OP_PONG, payload)
                continue
            if opcode == OP_PONG:
                continue
            message += payload
            if not fin:
                continue
            data, message = bytes(message), bytearray()
            with self._state_lock:
                self.handle(data)

    # client events -----------------------------------------------------------------------
    def error(self, code: str, message: str, event_id: Optional[str] = None,
              kind: str = "invalid_request_error") -> None:
        error: Dict[str, Any] = {"type": kind, "code": code, "message": message}
        if event_id:
            error["event_id"] = event_id
        self.send_event("error", error=error)

    def handle(self, data: bytes) -> None:
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            self.error("invalid_json", "The message is not valid JSON.")
            return
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            self.error("invalid_event", "Events must be objects with a type.")
            return
        if self.server.record:
            self.received.append(event)
        handler = getattr(self, "on_" + event["type"].replace(".", "_"), None)
        if handler is None:
            self.error("invalid_event", f"Unknown event type {event['type']!r}.", event.get("event_id"))
            return
        handler(event)

    def _default_session(self) -> Dict[str, Any]:
        # Only the fields the openai package's models declare, so the strict validators pass.
        base = {"model": "gpt-realtime", "instructions": "You are a local test server.",
                "tools": [], "tool_choice": "auto"}
        vad = {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
               "silence_duration_ms": 500, "create_response": True, "interrupt_response": True}
        if self.generation == "beta":
            return dict(base, id=new_id("sess"), modalities=["audio", "text"], voice="alloy",
                        input_audio_format="pcm16",
                        output_audio_format="pcm16", turn_detection=vad, temperature=0.8)
        return dict(base, type="realtime", output_modalities=["audio"], audio={
            "input": {"format": {"type": "audio/pcm", "rate": 24000}, "turn_detection": vad},
            "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "alloy"}})

    def on_session_update(self, event: Dict[str, Any]) -> None:
        update = event.get("session")
        if not isinstance(update, dict):
            self.error("invalid_value", "session must be an object", event.get("event_id"))
            return
        if self.generation == "ga" and (update.get("type") != "realtime" or BETA_SESSION_KEYS & update.keys()):
            self.error("beta_api_shape_disabled", "The Realtime Beta API is no longer supported. "
                       "Please use the GA API shape.", event.get("event_id"))
            return
        for key, value in update.items():
            if key == "audio" and isinstance(value, dict):
                audio = self.session.setdefault("audio", {})
                for side in ("input", "output"):
                    if isinstance(value.get(side), dict):
                        audio.setdefault(side, {}).update(value[side])
            else:
                self.session[key] = value
        if self.generation == "ga":
            audio = self.session["audio"]
            self.in_fmt = _format_name(audio["input"].get("format")) or "pcm"
            self.out_fmt = _format_name(audio["output"].get("format")) or "pcm"
            self.vad = audio["input"].get("turn_detection")
            self.text_only = self.session.get("output_modalities") == ["text"]
        else:
            self.in_fmt = _format_name(self.session.get("input_audio_format")) or "pcm"
            self.out_fmt = _format_name(self.session.get("output_audio_format")) or "pcm"
            self.vad = self.session.get("turn_detection")
            self.text_only = "audio" not in (self.session.get("modalities") or ["audio"])
        self.tools = [t for t in self.session.get("tools") or [] if isinstance(t, dict)]
        self.send_event("session.updated", session=self.session)

    def on_input_audio_buffer_append(self, event: Dict[str, Any]) -> None:
        try:
            samples = decode_audio(self.in_fmt, base64.b64decode(event.get("audio", ""), validate=True))
        except ValueError:
            self.error("invalid_value", "audio is not base64", event.get("event_id"))
            return
        rate = _RATE[self.in_fmt]
        self.buffer.append(samples)
        samples = np.concatenate([self.pending, samples])
        window = rate * WINDOW_MS // 1000
        whole = len(samples) // window * window
        self.pending = samples[whole:]
        for start in range(0, whole, window):
            self._vad_window(samples[start:start + window], rate)

    def _vad_window(self, window: np.ndarray, rate: int) -> None:
        self.audio_ms += WINDOW_MS
        if not self.vad:
            return
        loud = float(np.sqrt(np.mean(window.astype(np.float64) ** 2))) > self.server.vad_threshold
        if self.speech_item is None:
            if loud:
                self.speech_item = new_id("item")
                self.speech, self.silent_ms = [window], 0
                self.send_event("input_audio_buffer.speech_started", item_id=self.speech_item,
                                audio_start_ms=max(0, self.audio_ms - WINDOW_MS))
            return
        self.speech.append(window)
        self.silent_ms = 0 if loud else self.silent_ms + WINDOW_MS
        if self.silent_ms >= int(self.vad.get("silence_duration_ms") or 500):
            item_id, self.speech_item = self.speech_item, None
            self.last_turn = resample(np.concatenate(self.speech), rate, 24000)
            self.send_event("input_audio_buffer.speech_stopped", item_id=item_id, audio_end_ms=self.audio_ms)
            self._commit(item_id)
            if self.vad.get("create_response", True):
                self._start_response({})

    def _commit(self, item_id: str) -> None:
        previous = self.items[-1]["id"] if self.items else None
        self.buffer = []
        item = {"id": item_id, "type": "message", "role": "user", "status": "completed",
                "object": "realtime.item",
                "content": [{"type": "input_audio", "transcript": None}]}
        self.items.append(item)
        self.send_event("input_audio_buffer.committed", item_id=item_id, previous_item_id=previous)
        self._item_added(item, previous)

    def _item_added(self, item: Dict[str, Any], previous: Optional[str]) -> None:
        if self.generation == "beta":
            self.send_event("conversation.item.created", item=item, previous_item_id=previous)
        else:
            self.send_event("conversation.item.added", item=item, previous_item_id=previous)
            self.send_event("conversation.item.done", item=item, previous_item_id=previous)

    def on_input_audio_buffer_commit(self, event: Dict[str, Any]) -> None:
        if not self.buffer:
            self.error("input_audio_buffer_commit_empty", "buffer too small", event.get("event_id"))
            return
        self.last_turn = resample(np.concatenate(self.buffer), _RATE[self.in_fmt], 24000)
        self._commit(new_id("item"))

    def on_input_audio_buffer_clear(self, event: Dict[str, Any]) -> None:
        self.buffer, self.speech_item = [], None
        self.send_event("input_audio_buffer.cleared")

    def on_conversation_item_create(self, event: Dict[str, Any]) -> None:
        item = event.get("item")
        if not isinstance(item, dict):
            self.error("invalid_value", "item must be an object", event.get("event_id"))
            return
        if item.get("type") == "function_call_output" and not isinstance(item.get("output"), str):
            self.error("invalid_type", "item.output must be a string", event.get("event_id"))
            return
        item = dict(item, id=item.get("id") or new_id("item"), object="realtime.item", status="completed")
        previous = self.items[-1]["id"] if self.items else None
        self.items.append(item)
        self._item_added(item, previous)

    def on_conversation_item_truncate(self, event: Dict[str, Any]) -> None:
        item_id, end_ms = event.get("item_id"), event.get("audio_end_ms")
        sent_ms = self.assistant_audio_ms.get(item_id)
        if sent_ms is None or not isinstance(end_ms, int) or end_ms < 0 or end_ms > sent_ms:
            self.error("invalid_value", f"audio_end_ms {end_ms} is beyond the audio of {item_id}",
                       event.get("event_id"))
            return
        self.truncations.append(event)
        self.send_event("conversation.item.truncated", item_id=item_id,
                        content_index=event.get("content_index", 0), audio_end_ms=end_ms)

    def on_response_create(self, event: Dict[str, Any]) -> None:
        self._start_response(event.get("response") or {})

    def on_response_cancel(self, event: Dict[str, Any]) -> None:
        if self.response is None:
            self.error("response_cancel_not_active", "Cancellation failed: no active response found",
                       event.get("event_id"))
            return
        self.cancel.set()

    def on_output_audio_buffer_clear(self, event: Dict[str, Any]) -> None:
        self.cancel.set()

    # responses -------------------------------------------------------------------------
    def _start_response(self, params: Dict[str, Any]) -> None:
        if self.response is not None:
            self.error("conversation_already_has_active_response",
                       "Conversation already has an active response in progress.")
            return
        self.cancel.clear()
        self.response = {"id": new_id("resp"), "object": "realtime.response", "status": "in_progress",
                         "output": []}
        self.send_event("response.created", response=dict(self.response))
        tools = params.get("tools") or self.tools
        wants_tool = tools and not any(i.get("type") == "function_call_output" for i in self.items)
        target = self._stream_function_call if wants_tool else self._stream_reply
        threading.Thread(target=self._respond, args=(target, tools, params), daemon=True).start()

    def _respond(self, target: Callable[..., None], tools: List[Dict[str, Any]], params: Dict[str, Any]) -> None:
        try:
            status = target(tools, params)
        except (OSError, ConnectionError):
            return
        with self._state_lock:
            response, self.response = self.response, None
            if response is not None and not self._stop.is_set():
                response.update(status=status)
                if status == "completed":
                    response["usage"] = {"total_tokens": 10, "input_tokens": 5, "output_tokens": 5}
                self.send_event("response.done", response=response)

    def _stream_function_call(self, tools: List[Dict[str, Any]], params: Dict[str, Any]) -> str:
        tool = tools[0]
        response_id = self.response["id"]
        item = {"id": new_id("item"), "type": "function_call", "object": "realtime.item",
                "status": "in_progress", "name": tool.get("name", "tool"), "call_id": new_id("call"),
                "arguments": ""}
        arguments = _example_args(tool)
        with self._state_lock:
            self.send_event("response.output_item.added", response_id=response_id, output_index=0, item=item)
            self.send_event("response.function_call_arguments.delta", response_id=response_id,
                            item_id=item["id"], output_index=0, call_id=item["call_id"], delta=arguments)
            self.send_event("response.function_call_arguments.done", response_id=response_id,
                            item_id=item["id"], output_index=0, call_id=item["call_id"],
                            name=item["name"], arguments=arguments)
            done = dict(item, status="completed", arguments=arguments)
            self.items.append(done)
            self.response["output"] = [done]
            self.send_event("response.output_item.done", response_id=response_id, output_index=0, item=done)
        return "completed"

    def _names(self) -> Dict[str, str]:
        if self.generation == "beta":
            return {"audio": "response.audio", "transcript": "response.audio_transcript",
                    "text": "response.text", "part_audio": "audio", "part_text": "text"}
        # GA renamed the events but kept "audio"/"text" as content part types.
        return {"audio": "response.output_audio", "transcript": "response.output_audio_transcript",
                "text": "response.output_text", "part_audio": "audio", "part_text": "text"}

    def _stream_reply(self, tools: List[Dict[str, Any]], params: Dict[str, Any]) -> str:
        names = self._names()
        echo = self.server.reply == "echo" and len(self.last_turn) > 0
        samples = self.last_turn if echo else tone(24000)
        words = f"echo of {len(samples) * 1000 // 24000} ms" if echo else "tone"
        text_only = self.text_only or params.get("output_modalities") == ["text"] \
            or "audio" not in (params.get("modalities") or ["audio"])
        kind = "part_text" if text_only else "part_audio"
        response_id = self.response["id"]
        item = {"id": new_id("item"), "type": "message", "role": "assistant", "object": "realtime.item",
                "status": "in_progress", "content": []}
        ids = {"response_id": response_id, "item_id": item["id"], "output_index": 0}
        with self._state_lock:
            self.send_event("response.output_item.added", response_id=response_id, output_index=0, item=item)
            part = {"type": names[kind], "transcript": ""} if not text_only else {"type": names[kind], "text": ""}
            self.send_event("response.content_part.added", content_index=0, part=part, **ids)
            self.assistant_audio_ms[item["id"]] = 0
        if text_only:
            with self._state_lock:
                self.send_event(names["text"] + ".delta", content_index=0, delta=words, **ids)
                self.send_event(names["text"] + ".done", content_index=0, text=words, **ids)
            cancelled = False
        else:
            cancelled = self._stream_audio(samples, words, ids, names)
        status = "cancelled" if cancelled else "completed"
        with self._state_lock:
            if not cancelled:
                if not text_only:
                    self.send_event(names["audio"] + ".done", content_index=0, **ids)
                    self.send_event(names["transcript"] + ".done", content_index=0, transcript=words, **ids)
                final = dict(part, transcript=words) if not text_only else dict(part, text=words)
                self.send_event("response.content_part.done", content_index=0, part=final, **ids)
            content_type = "output_audio" if self.generation == "ga" else "audio"
            if text_only:
                content_type = "output_text" if self.generation == "ga" else "text"
            done = dict(item, status="incomplete" if cancelled else "completed",
                        content=[{"type": content_type, "transcript": words}] if not text_only
                        else [{"type": content_type, "text": words}])
            self.items.append(done)
            self.response["output"] = [done]
            self.send_event("response.output_item.done", response_id=response_id, output_index=0, item=done)
        return status

    def _stream_audio(self, samples: np.ndarray, words: str, ids: Dict[str, Any], names: Dict[str, str]) -> bool:
        rate = _RATE[self.out_fmt]
        out = resample(samples, 24000, rate)
        step = rate * DELTA_MS // 1000
        pace = DELTA_MS / 1000 / self.server.speed if self.server.speed > 0 else 0.0
        start = time.monotonic()
        for n, offset in enumerate(range(0, len(out), step)):
            if self.cancel.is_set() or self._stop.is_set():
                return True
            chunk = out[offset:offset + step]
            with self._state_lock:
                self.send_event(names["audio"] + ".delta", content_index=0,
                                delta=base64.b64encode(encode_audio(self.out_fmt, chunk)).decode(), **ids)
                if n == 0:
                    self.send_event(names["transcript"] + ".delta", content_index=0, delta=words, **ids)
                self.assistant_audio_ms[ids["item_id"]] += len(chunk) * 1000 // rate
            if pace:
                delay = start + (n + 1) * pace - time.monotonic()
                if delay > 0 and self.cancel.wait(delay):
                    return True
        return self.cancel.is_set()


# -- the server --------------------------------------------------------------------------
class LocalRealtimeServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, api_key: Optional[str] = "sk-local-test",
                 generation: str = "auto", reply: str = "echo", ssl_context: Optional[ssl.SSLContext] = None,
                 speed: float = 4.0, fault: Optional[str] = None, vad_threshold: float = 500.0,
                 record: bool = True):
        """record: keep every event each way (tests read them); a load test turns it off, as the
        lists of audio events grew by megabytes a minute and the GC walked them all."""
        self.host, self.api_key, self.generation = host, api_key, generation
        self.record = record
        self.reply, self.ssl_context, self.speed = reply, ssl_context, speed
        self.fault, self.vad_threshold = fault, vad_threshold
        self._listener = socket.create_server((host, port), reuse_port=False)
        self.port = self._listener.getsockname()[1]
        self._connections: List[Connection] = []
        self._threads: List[threading.Thread] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._accept_thread = threading.Thread(target=self._accept, daemon=True, name="localserver")

    @property
    def url(self) -> str:
        return f"{'wss' if self.ssl_context else 'ws'}://{self.host}:{self.port}"

    @property
    def connections(self) -> List[Connection]:
        with self._lock:
            return list(self._connections)

    def set_fault(self, fault: Optional[str]) -> None:
        self.fault = fault

    def start(self) -> "LocalRealtimeServer":
        self._accept_thread.start()
        return self

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(sock,), daemon=True, name="localserver-conn")
            with self._lock:
                self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.ssl_context is not None:
            try:
                sock = self.ssl_context.wrap_socket(sock, server_side=True)
            except (ssl.SSLError, OSError):
                sock.close()
                return
        conn = Connection(self, sock, self.fault)
        with self._lock:
            self._connections.append(conn)
        conn.serve()

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.01)
        return bool(predicate())

    def stop(self) -> None:
        self._stop.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone does not
        except OSError:
            pass
        self._listener.close()
        for conn in self.connections:
            conn.close(1001)
        if self._accept_thread.is_alive():
            self._accept_thread.join(5)
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(5)

    def __enter__(self) -> "LocalRealtimeServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m openai_s2s.localserver", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--api-key", default=None, help="accept only this key (default: any)")
    parser.add_argument("--generation", choices=("auto", "ga", "beta"), default="auto")
    parser.add_argument("--reply", choices=("echo", "tone"), default="echo")
    parser.add_argument("--speed", type=float, default=4.0, help="times faster than real time (0: at once)")
    parser.add_argument("--fault", default=None)
    parser.add_argument("--vad-threshold", type=float, default=500.0)
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--no-record", action="store_true",
                        help="keep no history of events (for load tests: it grows by MB a minute)")
    parser.add_argument("--allow-remote", action="store_true", help="listen on a non-loopback address")
    args = parser.parse_args(argv)
    if not args.allow_remote and args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("refusing a non-loopback --host without --allow-remote")
    context = None
    if args.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
    server = LocalRealtimeServer(args.host, args.port, args.api_key, args.generation, args.reply,
                                 context, args.speed, args.fault, args.vad_threshold,
                                 record=not args.no_record).start()
    print(f"listening on {server.url}", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
