"""``python -m openai_s2s.localserver``: the local Realtime (and GPT-Live) server on the command line."""
from __future__ import annotations

import argparse
import signal
import ssl
import threading
from typing import List, Optional

from .server import LocalRealtimeServer

DESCRIPTION = ("A local server that speaks the OpenAI Realtime protocol (GA and beta) on loopback, and "
               "GPT-Live at /v1/live/sessions.")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m openai_s2s.localserver", description=DESCRIPTION)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--api-key", default=None, help="accept only this key (default: any)")
    parser.add_argument("--generation", choices=("auto", "ga", "beta"), default="auto")
    parser.add_argument("--reply", choices=("echo", "tone", "delegate"), default="echo",
                        help="echo the caller or answer with a tone; delegate: GPT-Live delegates "
                             "each utterance (Realtime answers it with a tone)")
    parser.add_argument("--speed", type=float, default=4.0,
                        help="times faster than real time (0: at once): Realtime responses, and "
                             "GPT-Live's startup, mixer and acknowledgement delays")
    parser.add_argument("--fault", default=None)
    parser.add_argument("--vad-threshold", type=float, default=500.0)
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--no-record", action="store_true",
                        help="keep no history of events (for load tests: it grows by MB a minute)")
    parser.add_argument("--lenient", action="store_true",
                        help="do not cancel a response when the caller starts to speak; the older "
                             "truncate refusals (default: as the service does)")
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
                                 record=not args.no_record, lenient=args.lenient).start()
    print(f"listening on {server.url}", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    server.stop()
    return 0
