"""Webhook tools: a function tool with a ``url`` is answered by an HTTP POST the module makes.

A tools file (a JSON list under instructions-dir) may give a tool ``"url": "https://..."``
and ``"timeout": <seconds>``; those keys are the module's, never sent to the model. When the
model calls such a tool, the tool's thread (toolcalls.ToolRunner) POSTs

    {"name", "arguments", "call_id", "uuid", "caller", "callee"}

with ``X-Signature: sha256=<hex HMAC-SHA256 of the body>`` when ``webhook-secret`` is set, and
the answer becomes the function_call_output. No redirect is followed (it would carry the
payload elsewhere), no proxy is used (as for the websocket), TLS is verified, no API key or
Authorization header is sent, the whole exchange is bounded by the timeout, and nothing here
raises into the call: every failure is an output that says what happened.
"""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
import socket
import ssl
import time
import urllib.error
import urllib.request
from typing import Any, Dict, List, Optional, Sequence, Tuple
from urllib.parse import urlsplit

import orjson

from ..log import INFO, WARNING, log
from .instructions import InstructionsError, read_instructions

MODULE_KEYS = ("url", "timeout")     # a tool's keys that are the module's, not the model's
MAX_TIMEOUT = 60.0
MAX_ANSWER_BYTES = 256 << 10
USER_AGENT = "openai_s2s-webhook"


class WebhookError(ValueError):
    """A tools file that cannot be used; the message is for the -ERR line or the log."""


@dataclasses.dataclass(frozen=True)
class WebhookTool:
    name: str
    url: str
    timeout: Optional[float] = None   # None: the webhook-timeout option


def split_tools(tools: Any, source: str = "tools") -> Tuple[List[Dict[str, Any]], List[WebhookTool]]:
    """The tools as the model gets them (``type`` defaulting to function, the module's keys
    removed) and the webhook tools among them. Raises WebhookError."""
    if not isinstance(tools, list) or not all(isinstance(t, dict) and t.get("name") for t in tools):
        raise WebhookError(f"{source} must hold a list of tools, each with a name")
    api: List[Dict[str, Any]] = []
    hooks: List[WebhookTool] = []
    for tool in tools:
        name = tool["name"]
        if "url" in tool:
            hooks.append(WebhookTool(str(name), _url(tool["url"], name, source),
                                     _timeout(tool.get("timeout"), name, source)))
        elif "timeout" in tool:
            raise WebhookError(f"{source}: tool {name!r} has a timeout but no url")
        spec = {k: v for k, v in tool.items() if k not in MODULE_KEYS}
        spec["type"] = tool.get("type", "function")
        api.append(spec)
    return api, hooks


def load_tools(name: str, directory: Optional[str]) -> Tuple[List[Dict[str, Any]], List[WebhookTool]]:
    """A tools file from instructions-dir, split as :func:`split_tools` does."""
    try:
        text = read_instructions(name, directory)
    except InstructionsError as exc:
        raise WebhookError(str(exc)) from None
    try:
        tools = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise WebhookError(f"tools file {name!r} is not JSON: {exc}") from None
    return split_tools(tools, f"tools file {name!r}")


def _url(value: Any, name: str, source: str) -> str:
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname \
            or any(c in value for c in "\r\n\0 "):
        raise WebhookError(f"{source}: tool {name!r} needs an http:// or https:// url")
    return value


def _timeout(value: Any, name: str, source: str) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.1 <= value <= MAX_TIMEOUT:
        raise WebhookError(f"{source}: tool {name!r}: timeout must be seconds between 0.1 and {MAX_TIMEOUT:g}")
    return float(value)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> None:
        return None      # urllib then raises HTTPError with the 3xx status


class Webhook:
    """One webhook tool, as ``toolcalls.Tool``: (arguments, context) -> output text."""

    def __init__(self, tool: WebhookTool, options: Dict[str, Any]):
        self.tool = tool
        self.timeout = tool.timeout or options.get("webhook_timeout") or 5.0
        self._secret: Optional[str] = options.get("webhook_secret")
        self._ca_file: Optional[str] = options.get("webhook_ca_file")
        self._opener: Optional[urllib.request.OpenerDirector] = None

    def _open(self) -> urllib.request.OpenerDirector:
        """The opener, made at the first call (a bad CA file is then that call's error)."""
        if self._opener is None:
            handlers: List[Any] = [urllib.request.ProxyHandler({}), _NoRedirect()]
            if self.tool.url.startswith("https:"):
                context = ssl.create_default_context(cafile=self._ca_file)
                handlers.append(urllib.request.HTTPSHandler(context=context))
            self._opener = urllib.request.build_opener(*handlers)
        return self._opener

    def body(self, args: Any, ctx: Any) -> bytes:
        return orjson.dumps({"name": self.tool.name, "arguments": args, "call_id": ctx.call_id,
                             "uuid": ctx.uuid, "caller": ctx.variable("caller_id_number"),
                             "callee": ctx.variable("destination_number")})

    def __call__(self, args: Any, ctx: Any) -> str:
        started = time.monotonic()
        body = self.body(args, ctx)
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        if self._secret:
            digest = hmac.new(self._secret.encode(), body, hashlib.sha256).hexdigest()
            headers["X-Signature"] = f"sha256={digest}"
        try:
            status, answer = self._post(body, headers, started + self.timeout)
        except Exception as exc:     # whatever it is, the model hears it and the call goes on
            output, what = _failure(exc, self.timeout), f"failed: {exc!r}"
            log(WARNING, f"[{ctx.uuid}] webhook {self.tool.name} {what[:300]}")
            return output
        ms = round((time.monotonic() - started) * 1000)
        log(INFO, f"[{ctx.uuid}] webhook {self.tool.name}: http {status} in {ms} ms")
        if 300 <= status < 400:
            return _error(f"webhook answered http {status} (a redirect: not followed)")
        if not 200 <= status < 300:
            return _error(f"webhook answered http {status}")
        try:
            orjson.loads(answer)
        except orjson.JSONDecodeError:
            return _error("webhook answered something that is not JSON")
        return answer.decode("utf-8")

    def _post(self, body: bytes, headers: Dict[str, str], deadline: float) -> Tuple[int, bytes]:
        """(status, answer); raises TimeoutError past the deadline, whatever the server trickles."""
        request = urllib.request.Request(self.tool.url, data=body, headers=headers, method="POST")
        try:
            response = self._open().open(request, timeout=_left(deadline))
        except urllib.error.HTTPError as exc:   # non-2xx, redirects included: the body is not read
            exc.close()
            return exc.code, b""
        with response:
            chunks: List[bytes] = []
            size = 0
            while True:
                sock = getattr(getattr(response, "fp", None), "raw", None)
                sock = getattr(sock, "_sock", None)
                if sock is not None:
                    sock.settimeout(_left(deadline))
                chunk = response.read1(16384) if hasattr(response, "read1") else response.read(16384)
                if not chunk:
                    break
                size += len(chunk)
                if size > MAX_ANSWER_BYTES:
                    raise _TooLarge()
                chunks.append(chunk)
                _left(deadline)
            return response.status, b"".join(chunks)


class _TooLarge(Exception):
    pass


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("deadline passed")
    return left


def _failure(exc: BaseException, timeout: float) -> str:
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return _error(f"webhook timed out after {timeout:g} s")
    if isinstance(exc, _TooLarge):
        return _error(f"webhook answered more than {MAX_ANSWER_BYTES} bytes")
    if isinstance(reason, ssl.SSLError):
        return _error("webhook's TLS certificate or handshake was refused")
    return _error(f"webhook unreachable ({type(reason).__name__})")


def _error(text: str) -> str:
    return orjson.dumps({"error": text}).decode()


def register(session: Any, tools: Sequence[WebhookTool], options: Dict[str, Any]) -> None:
    """Make the session answer these tools itself (before its session.update goes out)."""
    if not tools:
        return
    secret = options.get("webhook_secret")
    if secret:
        session.keep_secret(secret)
    for tool in tools:
        session.tools.register(tool.name, Webhook(tool, options))
    log(INFO, f"[{session.uuid}] webhook tools: {', '.join(t.name for t in tools)}")
