"""A call's periodic checks, run by the thread that pumps its uplink (the shared pump, or the unicast
loop) every ``TICK``: the playback events, the
buffer_overrun events, the warning before the session's time limit, a channel that stopped
writing, and a server that went silent."""
from __future__ import annotations

import threading
from typing import Any, Dict, Optional

import orjson

from ..log import WARNING, log
from . import events
from .expiry import EVENT as EXPIRING, Expiry

TICK = 0.02          # seconds between checks (the pump itself runs every 10 ms)
OVERRUN_EVERY = 1.0  # buffer_overrun at most this often per direction, with what it dropped since
NO_WRITES_WARNING = 2.0
RECONNECT_MARGIN = 30.0   # seconds before the session limit a reconnect may start


class Housekeeping:
    def __init__(self, session: Any):
        self.session = session
        self._lock = threading.Lock()   # the playback announcement: this thread and a barge-in
        self._announced = False
        self._frames_seen = 0
        self._next = 0.0
        self._overruns_reported = [0, 0]       # uplink frames, playout deltas
        self._overruns_at = [float("-inf")] * 2
        self._writes_seen: Optional[int] = None
        self._writes_at = 0.0
        self._warned_no_writes = False
        self._warned_mismatch = False
        self.expiry = Expiry.for_session(session.endpoint.display_url, session.options)
        self._reconnect_for: Optional[float] = None   # the session end a reconnect was started for

    def tick(self, now: float) -> None:
        session = self.session
        if now >= self._next:
            self._next = now + TICK
            self._check_writes(now)
            self._check_frames()
            self._playback()
            self._overruns(now)
            self._digits(now)
            seconds_left = self.expiry.check(now)
            if seconds_left is not None:
                session.fire(events.SERVER_EVENT, events.body(type=EXPIRING, seconds_left=seconds_left))
            self._maybe_reconnect(now)
        # Silence from the server for two ping intervals (and a send timeout) ends the call;
        # a ping that found no room in the socket counts too.
        interval = float(session.options["ping_interval"])
        if interval and now - session.receiver.last_rx > 2 * interval + session.options["send_timeout"]:
            session.stop_uplink()
            session.close_soon("ping timeout")

    def _maybe_reconnect(self, now: float) -> None:
        """With reconnect=expiry (or always), move to a new session before the service's limit:
        from ``margin`` seconds before it, at the first moment no response is in progress and
        none of the model's audio is playing (the model is not mid-sentence: GPT-Live has no
        responses, only its audio), and at the latest a few seconds before the limit."""
        session, ends_at = self.session, self.expiry.ends_at
        if ends_at is None or ends_at == self._reconnect_for or session.options["reconnect"] == "off":
            return
        margin = min(self.expiry.limit / 2, max(self.expiry.warning, RECONNECT_MARGIN))
        if now < ends_at - margin:
            return
        quiet = session.proto.response_id is None and not session.playout.active
        if quiet or now >= ends_at - margin / 4:
            self._reconnect_for = ends_at     # once per session
            session.reconnect_soon("session limit")

    def _digits(self, now: float) -> None:
        """The caller's digits, in batches, once the session is configured (its first
        session.update sent): earlier ones wait, as caller audio does."""
        session = self.session
        if session.dtmf is None or not session.proto.uplink_open:
            return
        for digits in session.dtmf.poll(now):
            session.send_digits(digits)

    def interrupted(self) -> None:
        """A barge-in flushed audio the caller was hearing: playback stops, interrupted."""
        with self._lock:
            if self._announced:
                self._announced = False
                self.playback_event("output_audio.playback_stopped", "interrupted")

    def playback_event(self, kind: str, reason: Optional[str] = None) -> None:
        fields: Dict[str, Any] = {"type": kind}
        if reason:
            fields["completion_reason"] = reason
        self.session.fire(events.SERVER_EVENT, orjson.dumps(fields))

    def _playback(self) -> None:
        playout = self.session.playout
        with self._lock:
            frames_out = playout.frames_out
            if not self._announced and frames_out > self._frames_seen:
                self._announced = True
                self.playback_event("output_audio.playback_started")
            elif self._announced and not playout.active:
                self._announced = False
                self.playback_event("output_audio.playback_stopped", "completed")
            self._frames_seen = frames_out

    def _overruns(self, now: float) -> None:
        session = self.session
        for side, count in enumerate((session.uplink.dropped_total, session.playout.overruns)):
            new = count - self._overruns_reported[side]
            if not new or now - self._overruns_at[side] < OVERRUN_EVERY:
                continue
            self._overruns_reported[side], self._overruns_at[side] = count, now
            if side == 0:
                frame_ms = session.call.frame_samples * 1000 // session.call.rate
                body = events.body(direction="uplink", dropped_ms=new * frame_ms)
            else:
                body = events.body(direction="playout", dropped_deltas=new)
            session.fire(events.BUFFER_OVERRUN, body)

    def _check_frames(self) -> None:
        """Say once if the channel's frames changed size (a codec change mid-call): the media
        path then neither plays nor takes them rather than write partial frames."""
        session = self.session
        if not self._warned_mismatch and getattr(session.call, "frames_mismatched", 0):
            self._warned_mismatch = True
            log(WARNING, f"[{session.uuid}] the channel's frames are no longer {session.call.frame_samples} "
                         f"samples at {session.call.rate} Hz (a codec change mid-call?): its audio is "
                         "skipped; session.delete and session.create again to follow the new codec")

    def _check_writes(self, now: float) -> None:
        """Say once if the channel stops writing while the model's audio waits for it: with the
        media bug the model is heard only in frames the channel writes (the caller's audio is
        taken whatever it writes), so a channel that writes nothing never plays the model. A
        playout bug paused while the model is silent is not asked for frames: no writes are
        expected then."""
        session = self.session
        call = session.call
        writes = getattr(call, "write_callbacks", None)
        if writes is None or not session.uplink.open:
            return
        if writes != self._writes_seen or getattr(call, "write_paused", False):
            self._writes_seen, self._writes_at = writes, now
        elif not self._warned_no_writes and now - self._writes_at > NO_WRITES_WARNING:
            self._warned_no_writes = True
            log(WARNING, f"[{session.uuid}] the channel has written no audio for {NO_WRITES_WARNING:g} s: "
                         "the caller does not hear the model (a parked call needs "
                         "send_silence_when_idle=-1)")
