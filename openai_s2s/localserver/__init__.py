"""A local server that speaks the OpenAI Realtime protocol (GA and beta), and OpenAI's GPT-Live
API beside it, on loopback.

For tests, for trying the module without a key, and as a load-test target::

    python -m openai_s2s.localserver --port 8765 --api-key sk-local --reply echo

It checks auth, detects speech by energy, answers each turn with audio streamed
faster than real time (an echo of the caller's turn, or a tone) with a
transcript, calls the first tool when tools are set, honours response.cancel
and conversation.item.truncate, and can be told to misbehave (see :mod:`.faults`).

By default it is as strict as the service where a client can tell: the caller's speech
cancels the response in progress (``interrupt_response``), a truncate past the audio sent
is refused in the service's words, ``idle_timeout_ms`` brings
``input_audio_buffer.timeout_triggered``, and ``session.updated`` fills in turn
detection's defaults. ``--lenient`` (``lenient=True``) lets speech overlap a response and
keeps the older truncate refusals, for tests that want those.

GPT-Live (``/v1/live/sessions``, Azure Foundry's ``/openai/v1/live/sessions``; see :mod:`.live`)
starts with the client's ``session.start``, transcribes the caller while they speak, and
answers through a server mixer paced in real time that the caller's speech stops; an
utterance that says "delegate" (``--reply delegate``) is delegated to the client or to a
Responses backend. Its connections report the generation ``live``.

The websocket side (handshake, framing, close codes, pings) is the ``websockets``
package's asyncio server, all connections on one event-loop thread; it is the
``localserver`` extra, and nothing the switch loads imports it.

==================  ================================================================
``server``          the server, its thread, the upgrade's checks and HTTP refusals
``wire``            what either protocol's connection does with its websocket: sends, closing
``connection``      one Realtime websocket: reads, paced responses, the session limit
``conversation``    the Realtime protocol for one connection: client events in, server events out
``session``         the session object per generation, and ``session.update``
``vad``             speech detection by energy
``responses``       streamed replies: echo or tone audio, transcripts, function calls
``faults``          the ways it can be told to misbehave
``audio``           wire audio <-> samples (formats and G.711 from ``openai_s2s.media``)
``cli``             the command line
``live``            the GPT-Live protocol for one connection: client events in, server events out
``live_connection`` one GPT-Live websocket: reads, timers, the mixer's paced output, injected events
``live_delegation`` Live delegation: to the client or to Responses, acknowledgements, response.*
``live_session``    the Live session resource: session.start's defaults, session.update
``live_shapes``     the Live client events and session config as strict schemas
``live_schema``     the strict schema checker, in the API's error terms
``live_output``     the Live server mixer: speech cut into deltas, paced in real time
``live_responses``  the Responses backend of a Live session that delegates to Responses
==================  ================================================================
"""
from .cli import main
from .connection import Connection
from .server import LocalRealtimeServer

__all__ = ["Connection", "LocalRealtimeServer", "main"]
