"""The command surface under fuzzing: every reply is one printable line; an -ERR changes
nothing; every session.create that says +OK is followed by exactly one connect or connect_failed."""
from __future__ import annotations

import itertools
import time

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openai_s2s.call import registry
from openai_s2s.control import commands
from openai_s2s.localserver import LocalRealtimeServer
from engine_harness import GA_PATH, KEY, Harness, wait_until
from hostile_kit import finish_lenient

FUZZ = settings(max_examples=300, deadline=3000, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))

HOSTILE_CHARS = "\r\n\0\t\x0b\x0c\x1b\x7f\x85\xa0\u2028\u2029\ufeff\u200b\ud800\udfff \"\\{}[]:,|^%&?#@/"


def reply_problems(reply) -> list:
    """What makes a reply not exactly one printable line."""
    if not isinstance(reply, str):
        return [f"not a str: {type(reply).__name__}"]
    problems = []
    for name, ch in (("CR", "\r"), ("LF", "\n"), ("NUL", "\0")):
        if ch in reply:
            problems.append(f"{name} in reply")
    if len(reply.splitlines()) != 1:
        problems.append(f"splitlines() gives {len(reply.splitlines())} lines")
    bad = sorted({c for c in reply if not c.isprintable()})
    if bad:
        problems.append(f"not printable: {[hex(ord(c)) for c in bad][:8]}")
    if not reply.startswith(("+OK", "-ERR ", "-USAGE: ")):
        problems.append("starts with neither +OK, -ERR nor -USAGE")
    if KEY in reply:
        problems.append("the key is in the reply")
    return problems


def words(server_url: str):
    known = st.sampled_from(["u-live", "u-idle", "u-none", "status", "bearer", "query", "api-key", "BEARER",
                             server_url, GA_PATH, KEY, "user", "model", "all", "", "^^", "file://x",
                             '{"type":"response.cancel"}', '{"type":"a\u2028b"}', '{"type":"a\\u0085b"}',
                             '{"type":"x\\nHTTP"}', '{"type":"' + "z" * 300 + '"}', "[]", "{}", "null",
                             *commands.COMMANDS])
    hostile = st.text(alphabet=st.sampled_from(HOSTILE_CHARS + "abc-.09"), max_size=24)
    return st.one_of(known, known, hostile, st.text(max_size=24))


@st.composite
def command_lines(draw, server_url: str):
    parts = draw(st.lists(words(server_url), min_size=0, max_size=7))
    sep = draw(st.sampled_from([None, None, " ", "|", "\n", "\r", "\0", "\t", ",", "\u2028", "\x85", "é"]))
    line = " ".join(parts) if sep is None else "^^" + sep + sep.join(parts)
    if draw(st.booleans()):
        line = draw(st.sampled_from(["", " ", "\r\n", "\n", "\0"])) + line + draw(
            st.sampled_from(["", " ", "\r\n", "\n", "\0"]))
    form = draw(st.sampled_from(["text", "text", "utf8", "bytes"]))
    if form == "utf8":
        return line.encode("utf-8", "surrogatepass")
    if form == "bytes":
        raw = line.encode("utf-8", "surrogatepass")
        cut = draw(st.integers(0, len(raw)))
        return raw[:cut] + draw(st.binary(max_size=8)) + raw[cut:]
    return line


def _live(h: Harness) -> None:
    if registry.get("u-live") is None:
        assert h.create("u-live").startswith("+OK")
        assert wait_until(lambda: registry.get("u-live") is not None and registry.get("u-live").state == "connected", 5)
        # the connect event and the server's session.created come just after: let them land
        assert h.connected("u-live") and h.wait_server_event("u-live", "session.created")


def _drop_others() -> None:
    for session in registry.all_sessions():
        if session.uuid != "u-live":
            session.close("fuzz cleanup")


def test_every_reply_is_exactly_one_printable_line_whatever_the_arguments():
    with LocalRealtimeServer(api_key=KEY) as srv:
        h = Harness(srv)
        h.call("u-live")
        h.call("u-idle", openai_s2s_connect_timeout="1")
        failures = []
        try:
            _live(h)

            @FUZZ
            @given(line=command_lines(srv.url))
            def run(line):
                try:
                    reply = commands.execute(line, h.switch)
                    h.replies.append(reply if isinstance(reply, str) else repr(reply))
                    problems = reply_problems(reply)
                    if problems:
                        failures.append((line, reply, problems))
                    assert not problems, (line, reply, problems)
                finally:
                    _drop_others()
                    _live(h)

            run()
        finally:
            finish_lenient(h)


def _stable(sess) -> dict:
    s = sess.status()
    c = s["counters"]
    return {"state": s["state"], "protocol": s["protocol"], "url": s["url"], "in": s["input_format"],
            "out": s["output_format"], "uplink_open": s["uplink_open"], "paused": s["paused"],
            "muted": s["muted"], "response": s["response_in_progress"],
            "events_out": c["events_out"], "uplink_queued": c["uplink_queued"],
            "translations": c["translations"], "barge_ins": c["barge_ins"],
            "held": len(sess.proto.held), "session_updated": sess.proto.session_updated,
            "events_queued": sess.uplink.events_queued}


def _settle(h: Harness, srv) -> None:
    """Wait until nothing more arrives either way (after a command that said +OK)."""
    last, quiet_since = None, time.monotonic()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        now = (len(h.switch.events), sum(len(c.received) for c in srv.connections),
               registry.get("u-live").uplink.events_out if registry.get("u-live") else -1)
        if now != last:
            last, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since > 0.25:
            return
        time.sleep(0.02)


def _nested(depth: int) -> str:
    return '{"type":"x","a":' + "[" * depth + "]" * depth + "}"


BAD_EVENT_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from([
        "{", "[1,2]", '"str"', "42", "null", "true", '{"no":"type"}', '{"type":""}', '{"type":5}',
        '{"type":null}', '{"type":["session.update"]}',
        '{"type":"session.update"}', '{"type":"session.update","session":"x"}',
        '{"type":"session.update","session":[]}', '{"type":"session.update","session":null}',
        '{"type":"response.create","n":%d}' % (2 ** 70), '{"type":"response.create","n":NaN}',
        '{"type":"response.create","n":Infinity}', '{"type":"response.create","n":-Infinity}',
        '{"type":"response.create","n":1e999}', _nested(300), _nested(20000),
        '{"type":"session.update","session":{"instructions":"file://a\\u0000b"}}',
        '{"type":"session.update","session":{"instructions":"file://../../etc/passwd"}}',
        '{"type":"session.update","session":{"instructions":"file:///etc/passwd"}}',
        '{"type":"response.create","response":{"instructions":"file://x"}}',
        '{"type":"session.update","session":{}} trailing', '{"type":"a"}{"type":"b"}',
        '{"type":"a","type":5}', '\ufeff{"type":"a"}', '{"type":"a\udcff"}',
        '{"type":"x","big":"' + "A" * (1 << 20) + '"}',
    ]),
    st.builds(lambda t, junk: t[: len(t) // 2] + junk,
              st.sampled_from(['{"type":"session.update","session":{"type":"realtime"}}',
                               '{"type":"response.create"}']), st.text(max_size=5)),
)


def test_an_err_changes_nothing_on_a_live_session():
    """No instructions-dir: every file:// is refused too."""
    with LocalRealtimeServer(api_key=KEY) as srv:
        h = Harness(srv)
        h.call("u-live")
        try:
            _live(h)
            conn = srv.connections[0]
            oks = []

            @settings(max_examples=150, deadline=5000, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(text=BAD_EVENT_TEXT, form=st.sampled_from(["space", "caret"]))
            def run(text, form):
                sess = registry.get("u-live")
                before = (_stable(sess), len(h.switch.events), len(conn.received),
                          [s.uuid for s in registry.all_sessions()])
                line = (f"u-live client.event {text}" if form == "space"
                        else f"^^\x01u-live\x01client.event\x01{text}")
                reply = h.api(line)
                if reply.startswith("+OK"):
                    oks.append(text[:80])
                    _settle(h, srv)
                    return
                assert reply.startswith("-ERR") or reply.startswith("-USAGE"), reply
                assert "internal error" not in reply, (text[:200], reply)
                after = (_stable(sess), len(h.switch.events), len(conn.received),
                         [s.uuid for s in registry.all_sessions()])
                assert after == before, (text[:200], reply)

            run()
            time.sleep(0.3)
            assert not [e for e in conn.received if e.get("type") in ("x", "")], conn.received[-3:]
        finally:
            finish_lenient(h)


BAD_EVENTS = [
    "not json", "{", "[1,2]", '"str"', "42", "null", '{"no":"type"}', '{"type":""}', '{"type":5}',
    '{"type":"session.update","session":"x"}', '{"type":"session.update","session":[1]}',
    '{"type":"session.update"}',
    '{"type":"response.create","n":%d}' % (2 ** 70), '{"type":"response.create","n":NaN}',
    _nested(300), _nested(100000),
    '{"type":"session.update","session":{"type":"realtime","x":' + "[" * 300 + "]" * 300 + '}}',
    '{"type":"session.update","session":{"instructions":"file://a\\u0000b"}}',
    '{"type":"session.update","session":{"instructions":"file://../../../etc/passwd"}}',
    '{"type":"response.create","response":' + "[" * 300 + "]" * 300 + '}',
]


@pytest.mark.parametrize("text", BAD_EVENTS, ids=[f"{i}:{t[:24]}" for i, t in enumerate(BAD_EVENTS)])
def test_a_bad_client_event_is_refused_and_nothing_reaches_the_server(text):
    with LocalRealtimeServer(api_key=KEY) as srv:
        h = Harness(srv)
        h.call("u-live")
        try:
            _live(h)
            conn = srv.connections[0]
            sess = registry.get("u-live")
            before = (_stable(sess), len(h.switch.events), len(conn.received))
            reply = h.api(f"u-live client.event {text}")
            assert reply.startswith("-ERR") and "internal error" not in reply, reply
            time.sleep(0.2)
            assert (_stable(sess), len(h.switch.events), len(conn.received)) == before, reply
        finally:
            finish_lenient(h)


@st.composite
def hosts(draw, port: int):
    kind = draw(st.sampled_from(["text", "url", "url", "bare"]))
    if kind == "text":
        return draw(st.text(alphabet=st.sampled_from(HOSTILE_CHARS + "abcxn-.0129:[]"), min_size=1, max_size=30))
    name = draw(st.sampled_from(["127.0.0.1", "localhost", "[::1]", "0", "127.1", "1.2", "[::ffff:127.0.0.1]",
                                 "a" * 64 + ".example", "é.invalid", "xn--.invalid", "\u2028x",
                                 "x\u00ad.invalid", "-a.invalid", "a..b", "[zz]", "", "..", "\uff0e",
                                 "\U0001f600.invalid", "host.invalid"]))
    portpart = draw(st.sampled_from(["", f":{port}", f":{port}", ":0", ":65535", ":65536", ":-1", ":abc", ":",
                                     ":99999999999999999999"]))
    if kind == "bare":
        return name + portpart
    scheme = draw(st.sampled_from(["ws://", "wss://", "http://", "WS://", "ws:/", "ws:///"]))
    path = draw(st.sampled_from(["", "/", "/x", "?q", "#f", "/%00"]))
    return scheme + name + portpart + path


def test_every_create_that_says_ok_gets_exactly_one_connect_or_connect_failed():
    with LocalRealtimeServer(api_key=KEY) as srv:
        h = Harness(srv)
        counter = itertools.count()
        try:
            @settings(max_examples=80, deadline=8000, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(host=hosts(srv.port))
            def run(host):
                uuid = f"u-host-{next(counter)}"
                h.call(uuid, openai_s2s_connect_timeout="1")
                mark = len(h.switch.events)
                reply = h.api(f"^^\x01{uuid}\x01session.create\x01{host}\x01{GA_PATH}\x01bearer\x01{KEY}")
                told = lambda: [(n, orjson.loads(b)) for n, hd, b in h.switch.events[mark:]
                                if hd.get("Unique-ID") == uuid]
                if not reply.startswith("+OK"):
                    assert registry.get(uuid) is None and told() == [], (host, reply, told())
                    return
                wait_until(lambda: any(n in ("openai_s2s::connect", "openai_s2s::connect_failed")
                                       for n, _ in told()), 4)
                time.sleep(0.05)
                first = [(n, b) for n, b in told() if n in ("openai_s2s::connect", "openai_s2s::connect_failed")]
                assert len(first) == 1, (host, reply, told())
                name, body = first[0]
                if name == "openai_s2s::connect_failed":
                    assert not body["reason"].startswith("internal error"), (host, body)
                assert h.api(f"{uuid} session.delete").startswith(("+OK", "-ERR no openai_s2s session"))
                after = len(h.switch.events)
                time.sleep(0.05)
                assert [n for n, hd, b in h.switch.events[after:] if hd.get("Unique-ID") == uuid] == []
                assert not [line for line in h.logs if line.startswith("ERR")], (host, h.logs[-3:])

            run()
        finally:
            finish_lenient(h)


@pytest.mark.parametrize("line", [
    'u-live client.event {"type":"a\u2028b"}',
    'u-live client.event {"type":"a\\u0085b"}',
    'u-live client.event {"type":"a\\u2029b"}',
    'u-live client.event {"type":"a\\u001b[31mred"}',
    'u-live client.event {"type":"a\\nb\\rc\\u0000d"}',
    "^^|u-idle|session.create|HOST|v1/realtime\u2028x|bearer|" + KEY,
    "^^|u-idle|session.create|HOST|v1/realtime\x85x|bearer|" + KEY,
    "^^|u-idle|session.create|HOST|v1/realtime\u200bx|bearer|" + KEY,
], ids=["type-u2028", "type-x85", "type-u2029", "type-esc", "type-crlfnul", "path-u2028", "path-x85", "path-u200b"])
def test_a_reply_that_repeats_what_was_sent_is_still_one_printable_line(line):
    with LocalRealtimeServer(api_key=KEY) as srv:
        h = Harness(srv)
        h.call("u-live")
        h.call("u-idle", openai_s2s_connect_timeout="1")
        try:
            _live(h)
            reply = h.api(line.replace("HOST", srv.url))
            assert not reply_problems(reply), (reply, reply_problems(reply))
            if registry.get("u-idle") is not None:
                st_reply = h.api("u-idle status")
                assert not reply_problems(st_reply), (st_reply[:160], reply_problems(st_reply))
        finally:
            finish_lenient(h)
