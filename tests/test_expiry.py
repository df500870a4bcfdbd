"""The service's session time limit: which limit an endpoint has, the one session.expiring
warning before it, and the options that change both."""
import orjson
import pytest

from openai_s2s.call.expiry import Expiry
from openai_s2s.control import config
from openai_s2s.realtime import service
from engine_harness import Harness

AZURE_GA = "openai/v1/realtime?model=gpt-realtime-2.1"


@pytest.mark.parametrize("url,limit", [
    ("wss://api.openai.com/v1/realtime?model=gpt-realtime-2.1", 3600),
    ("ws://127.0.0.1:8765/v1/realtime?model=gpt-realtime-2.1", 3600),
    ("wss://acme.openai.azure.com/openai/v1/realtime?model=voice", 1800),
    ("wss://ACME.openai.azure.com./v1/realtime", 1800),
    ("wss://acme.cognitiveservices.azure.com/openai/realtime?api-version=2025-04-01-preview", 1800),
    ("wss://gateway.example.com/openai/v1/realtime?model=voice", 1800),
    ("wss://gateway.example.com/realtime?api-version=2024-10-01-preview&deployment=d", 1800),
    ("/openai/realtime?api-version=2024-10-01-preview&deployment=d", 1800),
    ("v1/realtime?model=gpt-realtime-2.1", 3600),
    ("openai/v1/realtime?model=voice&next=https://example.com/", 1800),
    ("wss://openai.azure.com.example.com/v1/realtime", 3600),
])
def test_the_limit_follows_the_endpoint(url, limit):
    assert service.session_limit(url) == limit


def test_the_warning_fires_once_that_many_seconds_before_the_limit():
    expiry = Expiry(3600, 60)
    assert expiry.check(1e9) is None and expiry.seconds_left(0) is None   # not connected yet
    expiry.start(100.0)
    assert expiry.check(100.0 + 3539.9) is None
    assert expiry.check(100.0 + 3540.01) == 60
    assert expiry.check(100.0 + 3541) is None and expiry.check(100.0 + 3700) is None
    assert expiry.seconds_left(100.0 + 3590) == 10 and expiry.seconds_left(100.0 + 4000) == 0


def test_a_late_check_says_what_is_left():
    expiry = Expiry(1800, 60)
    expiry.start(0.0)
    assert expiry.check(1790.0) == 10


def test_no_warning_at_zero():
    expiry = Expiry(3600, 0)
    expiry.start(0.0)
    assert all(expiry.check(t) is None for t in (0.0, 3599.0, 3600.0, 1e9))
    assert expiry.seconds_left(3000.0) == 600


def test_a_warning_longer_than_the_limit_fires_at_once():
    expiry = Expiry(30, 60)
    expiry.start(5.0)
    assert expiry.check(5.0) == 30


def test_the_options_choose_the_limit_and_the_warning():
    defaults = config.Settings().values
    assert defaults["session_limit"] is None and defaults["expiry_warning"] == 60
    azure = "wss://acme.openai.azure.com/openai/v1/realtime?model=voice"
    assert (Expiry.for_session(azure, defaults).limit, Expiry.for_session(azure, defaults).warning) == (1800, 60)
    assert Expiry.for_session("wss://api.openai.com/v1/realtime", defaults).limit == 3600
    options = config.Settings().for_call({"openai_s2s_session_limit": "1200",
                                          "openai_s2s_expiry_warning": "0"}.get)
    expiry = Expiry.for_session(azure, options)
    assert (expiry.limit, expiry.warning) == (1200, 0)
    auto = config.Settings.from_xml('<configuration><settings><param name="session-limit" value="900"/>'
                                    '</settings></configuration>').for_call({"openai_s2s_session_limit": "Auto"}.get)
    assert auto["session_limit"] is None


@pytest.mark.parametrize("name,value", [
    ("openai_s2s_session_limit", "0"), ("openai_s2s_session_limit", "forever"),
    ("openai_s2s_session_limit", "nan"), ("openai_s2s_session_limit", "100000"),
    ("openai_s2s_expiry_warning", "-1"), ("openai_s2s_expiry_warning", "soon"),
])
def test_bad_limit_options_are_a_clear_error(h, name, value):
    h.call("u-bad-limit", **{name: value})
    reply = h.create("u-bad-limit")
    assert reply.startswith("-ERR") and name in reply


def test_the_expired_message_words_the_limit_as_the_service_does():
    assert service.expired_message(3600) == "Your session hit the maximum duration of 60 minutes."
    assert service.expired_message(1800) == "Your session hit the maximum duration of 30 minutes."


def test_session_expiring_fires_once_before_the_server_ends_the_session(server):
    """A 3 s limit with a 2 s warning: session.expiring about 1 s after connecting, then the
    server's session_expired at 2.5 s ends the session with that reason."""
    server.set_fault("expire_after:2.5")
    h = Harness(server)
    try:
        h.call("u-expiring", openai_s2s_session_limit="3", openai_s2s_expiry_warning="2",
               openai_s2s_reconnect="off")   # the server ends it: no follow-on session
        h.create("u-expiring")
        assert h.connected("u-expiring")
        status = orjson.loads(h.api("u-expiring status")[4:])
        assert status["session_limit_s"] == 3 and 1 <= status["session_left_s"] <= 3
        assert h.wait_server_event("u-expiring", "session.expiring", timeout=5)
        headers, body = h.switch.wait_event("openai_s2s::disconnect", timeout=10)
        assert orjson.loads(body) == {"reason": "session_expired", "code": 1000}
        expiring = h.server_events("u-expiring", "session.expiring")
        assert len(expiring) == 1 and expiring[0]["type"] == "session.expiring"
        assert 1 <= expiring[0]["seconds_left"] <= 2
        names = [(n, orjson.loads(b).get("type")) for n, _, b in h.switch.events]
        assert names.index(("openai_s2s::server_event", "session.expiring")) < \
            names.index(("openai_s2s::disconnect", None))
        error = h.server_events("u-expiring", "error")[0]["error"]
        assert error["message"] == "Your session hit the maximum duration of 60 minutes."
    finally:
        h.finish()


def test_an_azure_path_has_the_30_minute_limit_and_no_warning_when_off(server):
    server.set_fault("expire_after:0.5")
    h = Harness(server)
    try:
        h.call("u-azure", openai_s2s_expiry_warning="0")
        h.create("u-azure", path=AZURE_GA, auth="api-key")
        assert h.connected("u-azure")
        status = orjson.loads(h.api("u-azure status")[4:])
        assert status["session_limit_s"] == 1800 and 1790 <= status["session_left_s"] <= 1800
        assert h.switch.wait_event("openai_s2s::disconnect", timeout=10)
        assert h.server_events("u-azure", "session.expiring") == []
        error = h.server_events("u-azure", "error")[0]["error"]
        assert error["message"] == "Your session hit the maximum duration of 30 minutes."
    finally:
        h.finish()


def test_the_servers_own_end_replaces_the_assumed_limit():
    from openai_s2s.call.expiry import Expiry
    expiry = Expiry(3600, 60)
    expiry.start(1000.0)
    expiry.server_says(1000.0 + 1800)
    assert expiry.seconds_left(1000.0) == 1800
    assert expiry.check(1000.0 + 1800 - 61) is None and expiry.check(1000.0 + 1800 - 59) == 59
    configured = Expiry(600, 0, configured=True)
    configured.start(0.0)
    configured.server_says(1800.0)
    assert configured.seconds_left(0.0) == 600, "the operator's shorter limit stands"
