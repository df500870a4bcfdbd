"""The server: a websockets asyncio server on its own event-loop thread, and the upgrade
request's checks (fault, path, key, generation) with the HTTP refusals they lead to.

The path chooses the protocol: the Realtime API (GA or beta) under ``PATH_PREFIXES``, GPT-Live
at ``LIVE_PATHS``, whose model is named in session.start and never in the URL."""
from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Union
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from .connection import Connection
from .faults import Fault
from .live_connection import LiveConnection

PATH_PREFIXES = ("/v1/realtime", "/openai/realtime", "/openai/v1/realtime")
# OpenAI's, and Azure AI Foundry's (its v1 API, which takes no api-version)
LIVE_PATHS = ("/v1/live/sessions", "/openai/v1/live/sessions")
# GET (no upgrade, no key: loopback's, and it holds only counts): every connection's counters
# since the server started, as JSON, for a load test run in another process to read
STATS_PATH = "/localserver/stats"
BAD_KEY = (b'{"error":{"message":"Incorrect API key provided",'
           b'"type":"invalid_request_error","code":"invalid_api_key"}}')
# "do not pass it as a URL query parameter" (the package's SessionConfig.model); the answer's
# status and words are inferred, not checked against the service
LIVE_MODEL_IN_QUERY = orjson.dumps({"error": {
    "message": "The Live model is named in session.start (session.model), not in the URL: remove "
               "the model query parameter.",
    "type": "invalid_request_error", "code": "unknown_parameter", "param": "model"}})
CLOSE_TIMEOUT = 2.0          # how long the client has to answer our close frame
STOP_CLOSE_TIMEOUT = 0.5     # the same when the server stops: a test's teardown waits on it
STALLED_CLOSE_TIMEOUT = 0.2  # a stalled connection reads nothing, that answer among it


def json_response(status: int, reason: str, body: bytes) -> Response:
    """An HTTP answer instead of the upgrade, with a JSON body as OpenAI's are."""
    return Response(status, reason, Headers([("Content-Length", str(len(body))),
                                             ("Content-Type", "application/json"),
                                             ("Connection", "close")]), body)


class LocalRealtimeServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, api_key: Optional[str] = "sk-local-test",
                 generation: str = "auto", reply: str = "echo", ssl_context: Optional[ssl.SSLContext] = None,
                 speed: float = 4.0, fault: Optional[str] = None, vad_threshold: float = 500.0,
                 record: bool = True, lenient: bool = False):
        """record: keep every event each way (tests read them); a load test turns it off, as the
        lists of audio events grew by megabytes a minute and the GC walked them all.
        lenient: no cancelling of a response when the caller starts to speak, and the older
        truncate refusals (see :class:`~.session.ServerOptions`); by default the server does
        what the service does."""
        Fault.parse(fault)   # a malformed fault fails here, not in a connection
        self.host, self.api_key, self.generation = host, api_key, generation
        self.record, self.lenient = record, lenient
        self.reply, self.ssl_context, self.speed = reply, ssl_context, speed
        self.fault, self.vad_threshold = fault, vad_threshold
        self._listener = socket.create_server((host, port), reuse_port=False)
        self.port = self._listener.getsockname()[1]
        self._connections: List[Union[Connection, LiveConnection]] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stopping: Optional["asyncio.Future[None]"] = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="localserver")

    @property
    def url(self) -> str:
        return f"{'wss' if self.ssl_context else 'ws'}://{self.host}:{self.port}"

    @property
    def connections(self) -> List[Union[Connection, LiveConnection]]:
        with self._lock:
            return list(self._connections)

    def stats(self) -> Dict[str, Any]:
        """Every connection's counters (:meth:`~.conversation.Conversation.counters`), oldest
        first, and their totals."""
        rows = [conn.counters() for conn in self.connections]
        return {"connections": rows, "appends": sum(r["appends"] for r in rows),
                "audio_bytes": sum(r["audio_bytes"] for r in rows)}

    def set_fault(self, fault: Optional[str]) -> None:
        Fault.parse(fault)
        self.fault = fault

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.01)
        return bool(predicate())

    # serving -----------------------------------------------------------------------------
    def start(self) -> "LocalRealtimeServer":
        self._thread.start()
        self._ready.wait()
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stopping = self._loop.create_future()
        server: Server = await serve(
            self._handler, sock=self._listener, ssl=self.ssl_context, process_request=self._upgrade,
            # as the old hand-written server and OpenAI do: no compression, no pings of our own,
            # no limit on a message's size, no deadline on the upgrade (slow_handshake waits there)
            compression=None, ping_interval=None, max_size=None, open_timeout=None,
            close_timeout=CLOSE_TIMEOUT, server_header=None)
        self._ready.set()
        await self._stopping
        server.close(close_connections=False)
        closing = []
        for conn in self.connections:
            if conn.ws is not None:
                conn.ws.close_timeout = STALLED_CLOSE_TIMEOUT if conn.faults.stall else STOP_CLOSE_TIMEOUT
                conn.close(1001)
                closing.append(conn.ws.wait_closed())
        await asyncio.gather(*closing, return_exceptions=True)
        await server.wait_closed()

    async def _upgrade(self, ws: ServerConnection, request: Request) -> Optional[Response]:
        """Check the upgrade request; a refusal (or the stats page), or None to go on with the upgrade."""
        if urlsplit(request.path).path == STATS_PATH:
            return json_response(200, "OK", orjson.dumps(self.stats()))
        # Small frames go out at once. asyncio sets TCP_NODELAY only on sockets whose proto is
        # IPPROTO_TCP, and those accepted from socket.create_server's listener have proto 0.
        ws.transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        live = urlsplit(request.path).path in LIVE_PATHS
        conn = (LiveConnection if live else Connection)(self, self.fault, self._loop)
        conn.path = request.path
        conn.headers = {name.lower(): value for name, value in request.headers.raw_items()}
        with self._lock:
            self._connections.append(conn)
        ws.s2s_connection = conn   # type: ignore[attr-defined]  # for _handler
        faults = conn.faults
        if faults.slow_handshake:
            await asyncio.sleep(faults.slow_handshake)
        refused = self._refusal(conn, faults, getattr(request, "method", "GET"))
        if refused is not None:
            conn.closed = True
        return refused

    def _refusal(self, conn: Union[Connection, LiveConnection], faults: Fault,
                 method: str = "GET") -> Optional[Response]:
        if faults.refuse is not None:
            return json_response(faults.refuse, "Refused", b'{"error":"refused"}')
        parts = urlsplit(conn.path)
        live = isinstance(conn, LiveConnection)
        if method != "GET" or not (live or parts.path.startswith(PATH_PREFIXES)):
            return json_response(404, "Not Found", b'{"error":"not found"}')
        query = parse_qs(parts.query)
        offered = {conn.headers.get("api-key"), (query.get("api-key") or [None])[0]}
        auth = conn.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            offered.add(auth[7:].strip())
        if self.api_key is not None and self.api_key not in offered:
            return json_response(401, "Unauthorized", BAD_KEY)
        if live:
            # the key is checked first (inferred: a gateway authenticates before it reads on)
            named = "model" in parse_qs(parts.query, keep_blank_values=True)
            return json_response(400, "Bad Request", LIVE_MODEL_IN_QUERY) if named else None
        if self.generation in ("ga", "beta"):
            conn.generation = self.generation
        else:
            beta = conn.headers.get("openai-beta", "").lower() == "realtime=v1"
            conn.generation = "beta" if beta or ("api-version" in query and "/v1/" not in parts.path) else "ga"
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        await ws.s2s_connection.serve(ws)   # type: ignore[attr-defined]

    def stop(self) -> None:
        if not self._thread.is_alive():
            self._listener.close()
            return
        self._loop.call_soon_threadsafe(lambda: self._stopping.done() or self._stopping.set_result(None))
        self._thread.join(10)

    def __enter__(self) -> "LocalRealtimeServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
