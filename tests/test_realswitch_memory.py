"""The heap after calls, in a real switch of its own: once the last session has ended and the
switch has let the calls' threads go, the module has handed the free heap back itself.

The switch runs each call's session threads in a pool whose workers end after 5 s without work
(switch_core_session.c); what they free on the way out comes after a trim timed to the channels'
teardown. The measure: with nothing trimmed by the test, what one more gc.collect and
malloc_trim, run inside the switch, still hands back. Measured at 50 calls with the trims at
0 and 2 s only: 2.5 MB; with the last one after the pool has let its workers go: 0.1 MB.
"""
import time
from pathlib import Path

import pytest

from openai_s2s.tools import testswitch as realswitch

REASON = realswitch.missing_reason()
pytestmark = [pytest.mark.realswitch, pytest.mark.skipif(REASON is not None, reason=str(REASON))]

KEY = "sk-realswitch-test-KEY-0123456789"
CALLS = 50
HOLD = 12             # seconds with audio both ways
LEFT_BEHIND_MB = 1.0  # what a trim after the module's may still hand back

TRIM = """
import ctypes, gc


def fsapi(session, stream, env, args):
    gc.collect()
    stream.write("+OK trimmed %d" % ctypes.CDLL(None).malloc_trim(0))
"""


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@pytest.fixture(scope="module")
def server():
    from openai_s2s.localserver import LocalRealtimeServer
    with LocalRealtimeServer(api_key=KEY, reply="echo", record=False) as srv:
        yield srv


@pytest.fixture(scope="module")
def fs(tmp_path_factory):
    switch = realswitch.RealSwitch(tmp_path_factory.mktemp("fs"), realswitch.PARK_EXTENSIONS)
    switch.write_conf()
    (switch.workdir / "scripts" / "openai_s2s_test_trim.py").write_text(TRIM)
    switch.start(write_conf=False)
    deadline = time.monotonic() + 30
    while "1 total" not in switch.cli("show api uuid_openai_s2s") and time.monotonic() < deadline:
        time.sleep(0.2)
    yield switch
    switch.stop()


def wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.25)
    return predicate()


def calls(esl: realswitch.Esl, server_url: str, n: int, hold: float, tag: str) -> None:
    """n parked loopback calls, each with a session talking to the echo server, hung up together."""
    legs = []
    for i in range(n):
        a = f"mem-{tag}-{i}"
        reply = esl.api(f"originate {{origination_uuid={a},loopback_bowout=false}}loopback/park/default "
                        f"&endless_playback(tone_stream://%(1500,1500,440))")
        assert reply.startswith("+OK"), reply
        b = esl.api(f"uuid_getvar {a} other_loopback_leg_uuid")
        reply = esl.api(f"uuid_openai_s2s {b} session.create {server_url} v1/realtime bearer {KEY}")
        assert reply.startswith("+OK"), reply
        legs.append((a, b))
    assert wait_until(lambda: all('"state":"connected"' in esl.api(f"uuid_openai_s2s {b} status")
                                  for _, b in legs), 30)
    time.sleep(hold)
    for a, _ in legs:
        esl.api(f"uuid_kill {a}")
    assert wait_until(lambda: "0 total" in esl.api("show channels count"), 30)
    assert wait_until(lambda: esl.api("uuid_openai_s2s status").startswith('+OK {"sessions":[]'), 10)


def test_the_module_hands_the_heap_back_after_the_switch_lets_the_calls_threads_go(fs, server):
    esl = realswitch.Esl(fs.esl_port, realswitch.PASSWORD)
    calls(esl, server.url, 1, 2, "warm")   # the module's imports, its first session's one-offs
    calls(esl, server.url, CALLS, HOLD, "load")
    # the pool's workers have all ended; then the module's last trim, with a margin
    assert wait_until(lambda: "running:0 " in esl.api("fsctl debug_pool"), 30)
    time.sleep(12)
    untrimmed = rss_mb(fs.pid)
    assert esl.api("python openai_s2s_test_trim").startswith("+OK trimmed")
    trimmed = rss_mb(fs.pid)
    esl.close()
    assert untrimmed - trimmed < LEFT_BEHIND_MB, (
        f"a trim after the module's still handed back {untrimmed - trimmed:.1f} MB "
        f"({untrimmed:.1f} -> {trimmed:.1f} MB)")
