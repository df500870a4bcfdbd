"""``uuid_openai_s2s <uuid> status``: one session's state, counters and latencies, as a dict."""
from __future__ import annotations

import time
from typing import Any, Deque, Dict, Optional

from ..media.meters import quantile


def percentiles(samples: "Deque[float]") -> Dict[str, Optional[float]]:
    """p50 and p99 in ms of samples in seconds, and how many there were."""
    values = list(samples)
    if not values:
        return {"p50": None, "p99": None, "n": 0}
    return {"p50": round(quantile(values, 0.5) * 1000, 2), "p99": round(quantile(values, 0.99) * 1000, 2),
            "n": len(values)}


def session_status(session: Any) -> Dict[str, Any]:
    proto, playout, uplink = session.proto, session.playout, session.uplink
    expiry = session.housekeeping.expiry
    return {
        "uuid": session.uuid, "state": session.state, "protocol": proto.generation,
        "url": session.endpoint.display_url,
        "age_s": round(time.time() - session.created, 1),
        # the service's limit, and what is left of it (null until connected)
        "session_limit_s": expiry.limit, "session_left_s": expiry.seconds_left(time.monotonic()),
        "channel_rate": session.call.rate,
        "input_format": proto.input_format.name, "output_format": proto.output_format.name,
        "uplink_open": uplink.open, "paused": session.paused,
        "muted": {"user": session.mute_user, "model": playout.muted},
        "response_in_progress": proto.response_id is not None,
        # barge-in: the option, and whether the server's confirmed turn detection interrupts
        "barge_in": proto.barge_in_mode, "server_interrupts": proto.server_interrupts,
        "counters": {
            "frames_in": uplink.frames_in, "frames_dropped": uplink.dropped_total,
            "frames_dropped_late": uplink.dropped_late,
            "appends": uplink.appends, "bytes_up": uplink.bytes_up,
            "events_out": uplink.events_out, "events_in": session.receiver.events_in,
            "deltas": session.deltas, "bytes_down": session.bytes_down,
            "frames_out": playout.frames_out, "frames_queued": playout.queued_frames,
            "underruns": playout.underruns,
            "underruns_receiver_behind": playout.underruns_receiver_behind,
            "overruns": playout.overruns,
            "barge_ins": proto.barge_ins, "translations": proto.translations,
            "frames_after_barge_in": playout.frames_after_flush,
            # the uplink's backlog, and whether it waits for the server to read
            "uplink_queued": len(uplink.queue), "uplink_waiting_for_room": uplink.pending is not None,
            "uplink_fragments": uplink.fragments,
            "reconnects": session.reconnects,
        },
        "latency_ms": {"uplink": percentiles(uplink.latency),
                       "downlink": percentiles(playout.latencies),
                       "downlink_idle": percentiles(playout.idle_latencies)},
        "media": dict(session.call.stats() if hasattr(session.call, "stats") else {},
                      path=session.options.get("media"), why=session.options.get("media_why")),
    }
