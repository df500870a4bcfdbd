"""What a command or a channel variable puts into the upgrade request or a file read:
no header injection, no key echoed anywhere, file:// names refused clearly and at once."""
from __future__ import annotations

import os
import threading
import time

import orjson
import pytest

from openai_s2s.call import registry
from openai_s2s.localserver import LocalRealtimeServer
from engine_harness import GA_PATH, KEY, Harness, wait_until
from hostile import HostileServer
from hostile_kit import h, status  # noqa: F401


def _recording_server():
    def behave(conn):
        conn.http(401, "Unauthorized")
    return HostileServer(behave)


def _injected(srv) -> list:
    return [c.headers for c in srv.conns if any(k.startswith("x-inj") for k in c.headers)]


# -- 6. CR, LF, NUL in what reaches the upgrade request -------------------------------------
INJECTIONS = [
    ("key CRLF", "{u}|session.create|{url}|" + GA_PATH + "|bearer|" + KEY + "\r\nX-Injected: 1"),
    ("key LF", "{u}|session.create|{url}|" + GA_PATH + "|bearer|" + KEY + "\nX-Injected: 1"),
    ("key CR", "{u}|session.create|{url}|" + GA_PATH + "|bearer|" + KEY + "\rX-Injected: 1"),
    ("key NUL", "{u}|session.create|{url}|" + GA_PATH + "|bearer|" + KEY + "\0X-Injected: 1"),
    ("key CRLF api-key", "{u}|session.create|{url}|" + GA_PATH + "|api-key|" + KEY + "\r\nX-Injected: 1"),
    ("key CRLF query", "{u}|session.create|{url}|" + GA_PATH + "|query|" + KEY + "\r\nX-Injected: 1"),
    ("path CRLF", "{u}|session.create|{url}|v1/realtime?model=x HTTP/1.1\r\nX-Injected: 1\r\n|bearer|" + KEY),
    ("path LF", "{u}|session.create|{url}|v1/realtime\nX-Injected: 1|bearer|" + KEY),
    ("path NUL", "{u}|session.create|{url}|v1/realtime\0X|bearer|" + KEY),
    ("host CRLF", "{u}|session.create|{url}\r\nX-Injected: 1|" + GA_PATH + "|bearer|" + KEY),
    ("host LF in URL path", "{u}|session.create|{url}/a\nX-Injected: 1|" + GA_PATH + "|bearer|" + KEY),
    ("host NUL", "{u}|session.create|{url}\0|" + GA_PATH + "|bearer|" + KEY),
]


@pytest.mark.parametrize("name,template", INJECTIONS, ids=[n for n, _ in INJECTIONS])
def test_cr_lf_or_nul_in_an_argument_is_refused_and_never_reaches_the_server(h, name, template):
    with _recording_server() as srv:
        h.call("u-inj")
        line = "^^|" + template.format(u="u-inj", url=srv.url)
        reply = h.api(line)
        time.sleep(0.3)
        assert reply.startswith("-ERR"), reply
        assert registry.get("u-inj") is None
        assert h.switch.events == []
        assert _injected(srv) == [], _injected(srv)
        assert srv.conns == []


@pytest.mark.parametrize("headers", [
    '{"X-A":"1\\r\\nX-Injected: 1"}', '{"X-A":"1\\nX-Injected: 1"}', '{"X-A":"1\\rX-Injected: 1"}',
    '{"X-A":"1\\u0000X-Injected: 1"}', '{"X-A\\r\\nX-Injected":"1"}', '{"X-A\\u0000":"1"}',
    '{"X-Injected: 1\\r\\nX-B":"1"}', '{"":"x"}', '{"X-A":"\\u2028X-Injected: 1"}', '{"X-A":"\\u0085X-Injected: 1"}',
])
def test_a_headers_channel_variable_with_control_bytes_is_refused(h, headers):
    with _recording_server() as srv:
        h.call("u-hdr", openai_s2s_headers=headers)
        reply = h.create("u-hdr", host=srv.url)
        time.sleep(0.3)
        assert _injected(srv) == [], (reply, _injected(srv))
        if "\\u2028" in headers or "\\u0085" in headers:
            # not a line break on the wire, but must not split the header either
            return
        assert reply.startswith("-ERR"), reply
        assert registry.get("u-hdr") is None and h.switch.events == [] and srv.conns == []


# -- 6. the key is never repeated ------------------------------------------------------------
OTHER_SHAPE_KEY = "Zq7Lm2Xv9Rt4Wp1Ks8Hd3Jf6"   # a key that looks like no OpenAI or Azure key


def _mistyped(url: str, key: str):
    return [
        f"u-key session.create {url} {GA_PATH} {key} bearer",
        f"u-key session.create {url} {key} {GA_PATH} bearer",
        f"u-key session.create {key} {url} {GA_PATH} bearer",
        f"{key} session.create {url} {GA_PATH} bearer {key}",
        f"u-key {key}",
        f"u-key session.create {url} {GA_PATH} bearer {key} extra",
        f"u-key mute {key}",
        f"u-key client.event {key}",
        f'u-key client.event {{"type":"{key}"}}',
        f"{key} status",
        f"{key}",
        f"u-none client.event {key}",
    ]


@pytest.mark.parametrize("which", ["openai-shaped", "other-shaped, registered", "other-shaped, not registered"])
def test_a_key_in_the_wrong_place_is_never_repeated(which):
    key = KEY if which == "openai-shaped" else OTHER_SHAPE_KEY
    with LocalRealtimeServer(api_key=key) as srv:
        h = Harness(srv)
        try:
            h.call("u-key")
            h.call("u-reg")
            if which == "other-shaped, registered":   # a live session sends this key: it is a secret
                assert h.create("u-reg", key=key).startswith("+OK")
                assert h.connected("u-reg")
            leaks = []
            for line in _mistyped(srv.url, key):
                reply = h.api(line)
                if key in reply:
                    leaks.append((line.replace(key, "<KEY>"), reply.replace(key, "<KEY>")))
                for s in registry.all_sessions():
                    if s.uuid == "u-key":
                        s.close("test")
            logged = [line.replace(key, "<KEY>") for line in h.logs if key in line]
            events = [b for _, hd, b in h.switch.events if key.encode() in b or key in repr(hd)]
            assert not leaks and not logged and not events, (leaks[:4], logged[:2], events[:2])
        finally:
            for s in registry.all_sessions():
                s.close("teardown")
            from openai_s2s import log
            log.set_sink(None)


@pytest.mark.parametrize("change", ["upper", "lower", "swapcase"])
def test_a_key_typed_in_another_case_is_not_repeated_either(h, change):
    """Keys are case-sensitive, but a reply that repeats one in capitals gives it all away."""
    h.call("u-key")
    typed = getattr(KEY, change)()
    reply = h.api(f"u-key session.create {h.server.url} {GA_PATH} {typed} bearer")
    assert typed not in reply, reply
    reply = h.api(f"u-key {typed}")
    assert typed not in reply, reply


def test_a_query_key_with_url_special_characters_is_not_shown_percent_encoded(h):
    key = "sk-Ab+/=Secret&x=y#z-0123456789"
    with HostileServer(lambda conn: conn.http(500, "Boom", body=conn.request_line.encode())) as srv:
        h.call("u-q")
        reply = h.create("u-q", host=srv.url, auth="query", key=key)
        assert reply.startswith("+OK"), reply
        from urllib.parse import quote
        quoted = quote(key, safe="")
        assert quoted in srv.conns[0].request_line if wait_until(lambda: srv.conns, 3) else True
        assert wait_until(lambda: registry.get("u-q") is None, 5)
        hay = h.logs + h.replies + [b.decode() for _, _, b in h.switch.events]
        assert not [x for x in hay if quoted in x or key in x], [x for x in hay if quoted in x or key in x][:3]


# -- 8. file:// instructions --------------------------------------------------------------
def _dir_harness(srv, directory):
    return Harness(srv, config_xml='<configuration name="openai_s2s.conf"><settings>'
                                   f'<param name="instructions-dir" value="{directory}"/></settings></configuration>')


@pytest.fixture
def fh(tmp_path):
    d = tmp_path / "instr"
    d.mkdir()
    (d / "ok.txt").write_text("Be brief.")
    with LocalRealtimeServer(api_key=KEY) as srv:
        harness = _dir_harness(srv, d)
        harness.dir = d
        harness.call("u-file")
        assert harness.create("u-file").startswith("+OK")
        assert harness.connected("u-file")
        yield harness
        harness.finish()


def _send_file(fh, name: str, holder: str = "session", timeout: float = 2.0) -> str:
    event = ({"type": "session.update", "session": {"type": "realtime", "instructions": f"file://{name}"}}
             if holder == "session" else
             {"type": "response.create", "response": {"instructions": f"file://{name}"}})
    out = []
    t = threading.Thread(target=lambda: out.append(fh.send("u-file", event)), daemon=True)
    t.start()
    t.join(timeout)
    assert out, f"client.event with file://{name!r} did not return within {timeout} s"
    return out[0]


def _nothing_sent(fh, before):
    time.sleep(0.2)
    return len(fh.received()) == before


def test_a_regular_file_is_read(fh):
    assert _send_file(fh, "ok.txt").startswith("+OK")
    assert wait_until(lambda: any(e.get("session", {}).get("instructions") == "Be brief." for e in fh.received()))


@pytest.mark.parametrize("make", ["fifo", "directory", "dev-zero symlink", "device node", "symlink outside",
                                  "nul in name", "dotdot", "absolute", "empty", "too large", "not utf-8",
                                  "missing", "symlink loop", "socket"])
@pytest.mark.parametrize("holder", ["session", "response"])
def test_a_file_name_that_is_no_regular_file_inside_the_dir_is_a_clear_err(fh, make, holder, tmp_path):
    d = fh.dir
    name = "x"
    if make == "fifo":
        os.mkfifo(d / "x")
    elif make == "directory":
        (d / "x").mkdir()
    elif make == "dev-zero symlink":
        os.symlink("/dev/zero", d / "x")
    elif make == "device node":
        try:
            os.mknod(d / "x", 0o600 | 0o020000, os.makedev(1, 5))
        except (PermissionError, OSError):
            pytest.skip("cannot make a device node here")
    elif make == "symlink outside":
        (tmp_path / "secret.txt").write_text("secret")
        os.symlink(tmp_path / "secret.txt", d / "x")
    elif make == "nul in name":
        name = "ok.txt\0.evil"
    elif make == "dotdot":
        (tmp_path / "hidden.txt").write_text("secret")
        name = "../hidden.txt"
    elif make == "absolute":
        name = str(d / "ok.txt")
    elif make == "empty":
        name = ""
    elif make == "too large":
        (d / "x").write_bytes(b"a" * ((1 << 20) + 1))
    elif make == "not utf-8":
        (d / "x").write_bytes(b"\xff\xfe\x00bad")
    elif make == "missing":
        name = "nope.txt"
    elif make == "symlink loop":
        os.symlink(d / "y", d / "x")
        os.symlink(d / "x", d / "y")
    elif make == "socket":
        import socket as _s
        s = _s.socket(_s.AF_UNIX)
        try:
            s.bind(str(d / "x"))
        except OSError:
            pytest.skip("cannot bind a unix socket here")
    before = len(fh.received())
    st_before = status(fh, "u-file")["counters"]["events_out"]
    t0 = time.monotonic()
    reply = _send_file(fh, name, holder)
    assert time.monotonic() - t0 < 2
    assert reply.startswith("-ERR") and "internal error" not in reply, reply
    assert "\n" not in reply and "secret" not in reply
    assert _nothing_sent(fh, before), fh.received()[before:]
    assert status(fh, "u-file")["counters"]["events_out"] == st_before


def test_a_symlink_swapped_in_after_the_check_is_not_followed(fh, tmp_path, monkeypatch):
    (tmp_path / "secret.txt").write_text("secret")
    os.symlink(tmp_path / "secret.txt", fh.dir / "x")
    real = os.path.realpath
    # the check sees what it would before the swap: the name resolves inside the dir
    monkeypatch.setattr(os.path, "realpath", lambda p: p if str(p).endswith("/x") else real(p))
    before = len(fh.received())
    reply = _send_file(fh, "x")
    assert reply.startswith("-ERR"), reply
    assert _nothing_sent(fh, before)
    assert not any("secret" in orjson.dumps(e).decode() for e in fh.received())
