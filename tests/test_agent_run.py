"""The dialplan agent's run, on a fake channel that can park as the switch's does: unicast on
its own parked channel by default, the media bug where it must, and an end either way."""
import threading

import orjson

from engine_harness import KEY, wait_until
from fakeswitch import FakeCall
from openai_s2s.call import registry
from openai_s2s.control.agent import run_agent


class ParkingCall(FakeCall):
    """A FakeCall with the switch layer's park, unpark and unicast mode (itself, here)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._parked = threading.Event()
        self._unparked = threading.Event()
        self.parks = 0

    def park(self):
        self.parks += 1
        self._parked.set()
        self._unparked.wait(30)
        self._parked.clear()

    def unpark(self):
        self._unparked.set()

    def parked(self):
        return self._parked.is_set()

    def unicast_media(self):
        return self

    def auto_media(self):
        if self.parked() and not self.variable("send_silence_when_idle"):
            return "unicast", "the channel is parked without send_silence_when_idle"
        return "bug", "the channel is not parked"

    def hangup(self, cause=None):
        super().hangup(cause)
        self._unparked.set()    # park returns at hangup

    def transfer(self, extension, dialplan, context):
        self._unparked.set()    # park returns: the channel goes to the new extension
        return super().transfer(extension, dialplan, context)


class CoreSession:
    """What mod_python3 hands the application: the few methods the agent uses."""

    def __init__(self, call):
        self.call = call
        self.set = {}

    def getVariable(self, name):
        return self.call.uuid if name == "uuid" else self.call.variables.get(name)

    def answered(self):
        return True

    def answer(self):
        pass

    def setVariable(self, name, value):
        self.set[name] = value
        self.call.variables[name] = value

    def ready(self):
        return not self.call._hangup.is_set()

    def sleep(self, ms):
        self.call._hangup.wait(ms / 1000)


def start_agent(h, uuid, **variables):
    call = h.switch.add_call(ParkingCall(uuid, variables={
        "openai_s2s_host": h.server.url, "openai_s2s_api_key": KEY, "openai_s2s_greeting": "none",
        **variables}))
    core = CoreSession(call)
    runner = threading.Thread(target=run_agent, args=(core, h.switch, ""), daemon=True)
    runner.start()
    return call, core, runner


def test_the_agent_parks_its_channel_and_runs_on_unicast_until_hangup(h):
    call, core, runner = start_agent(h, "ag-park")
    assert h.connected("ag-park")
    assert wait_until(lambda: any(e["type"] == "session.update" for e in h.received()))
    status = orjson.loads(h.api("ag-park status")[4:])
    assert status["media"]["path"] == "unicast" and "parked" in status["media"]["why"]
    assert "send_silence_when_idle" not in core.set and call.parks == 1
    call.hangup()
    runner.join(10)
    assert not runner.is_alive()
    assert registry.get("ag-park") is None


def test_when_the_session_ends_first_the_agent_unparks_and_returns(h):
    call, core, runner = start_agent(h, "ag-end")
    assert h.connected("ag-end")
    assert h.api("ag-end session.delete").startswith("+OK")
    runner.join(10)
    assert not runner.is_alive() and not call.parked()   # the dialplan goes on after the app


def test_send_silence_when_idle_keeps_the_agent_on_the_media_bug(h):
    call, core, runner = start_agent(h, "ag-bug", send_silence_when_idle="-1")
    assert h.connected("ag-bug")
    status = orjson.loads(h.api("ag-bug status")[4:])
    assert status["media"]["path"] == "bug" and call.parks == 0
    call.hangup()
    runner.join(10)
    assert not runner.is_alive()


def test_media_bug_by_option_sets_send_silence(h):
    call, core, runner = start_agent(h, "ag-opt", openai_s2s_media="bug")
    assert h.connected("ag-opt")
    assert core.set.get("send_silence_when_idle") == "-1" and call.parks == 0
    call.hangup()
    runner.join(10)
    assert not runner.is_alive()
