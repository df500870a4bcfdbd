"""The real switch over the network-namespace path: a session.update larger than the socket's
send room reaches the server (it echoes the session back in session.updated)."""

import orjson
import pytest

from openai_s2s.tools import testswitch as realswitch
from openai_s2s.tools.netpath import NetPath, NetPathUnavailable
from test_realswitch import KEY, REASON, api, esl, new_call, server_event, wait_event  # noqa: F401

pytestmark = [pytest.mark.realswitch, pytest.mark.netpath,
              pytest.mark.skipif(REASON is not None, reason=str(REASON))]


@pytest.fixture(scope="module")
def path():
    try:
        made = NetPath(api_key=KEY, lifetime=600).__enter__()
    except NetPathUnavailable as exc:
        pytest.skip(str(exc))
    yield made
    made.close()


@pytest.fixture(scope="module")
def fs(path, tmp_path_factory):
    switch = realswitch.RealSwitch(tmp_path_factory.mktemp("fs"), realswitch.PARK_EXTENSIONS)
    switch.write_conf()
    switch.set_module_params(key_over_ws="true")   # the namespace's address is not loopback
    switch.start(write_conf=False)
    switch.wait_for_api()
    yield switch
    switch.stop()


def test_a_66_kb_session_update_reaches_the_server_over_the_path(fs, esl, path):
    a, b, _ = new_call(fs, esl, "bigpath")
    assert api(esl, f"uuid_openai_s2s {b} session.create {path.url} v1/realtime bearer {KEY}").startswith("+OK")
    assert wait_event(esl, "openai_s2s::connect", lambda e: e.get("Unique-ID") == b, timeout=20)
    instructions = ("You are the front desk of ACME. " * 2100)[:66_000]
    update = orjson.dumps({"type": "session.update", "session": {"type": "realtime", "instructions": instructions}})
    assert api(esl, f"uuid_openai_s2s {b} client.event {update.decode()}").startswith("+OK")
    updated = server_event(esl, b, "session.updated", timeout=30)
    assert updated is not None, "the session.update never reached the server"
    assert orjson.loads(updated["_body"])["session"]["instructions"] == instructions
    status = orjson.loads(api(esl, f"uuid_openai_s2s {b} status")[4:])
    assert status["state"] == "connected" and status["counters"]["uplink_fragments"] > 0
    api(esl, f"uuid_kill {a}")
