"""openai_s2s.gcpause: the collector's pauses are counted per generation, and what was loaded
before the first session is frozen out of full collections."""
import gc
import json
import os
import subprocess
import sys
import threading

import pytest

from openai_s2s import process


def test_collections_are_counted_and_imports_frozen():
    # an earlier test's last session scheduled trims, each a full collection: while one runs,
    # this test's gc.collect() returns at once and counts nothing
    for thread in threading.enumerate():
        if thread.name == "openai_s2s-trim":
            thread.join(15)
    process.first_session()
    process.first_session()   # idempotent: one callback
    assert gc.callbacks.count(process._on_collect) == 1
    assert gc.get_freeze_count() > 1000    # the interpreter's modules, at least
    before = process.gc_stats()
    garbage = [[] for _ in range(1000)]
    for a, b in zip(garbage, garbage[1:]):   # cycles for the collector to find
        a.append(b)
        b.append(a)
    del garbage
    gc.collect()
    after = process.gc_stats()
    assert after["collections"][2] == before["collections"][2] + 1
    assert after["total_ms"][2] >= before["total_ms"][2] and after["max_ms"][2] >= 0


def test_malformed_overrides_are_logged_and_never_break_the_import():
    """mod_python3 imports the entry module with the switch's environment: a bad value there
    must leave the module importable, with the default in force and the reason logged."""
    import os
    import subprocess
    import sys

    from openai_s2s.tools.install import SHIM
    code = ("import sys\n" + SHIM.format(target="") +
            "\nimport openai_s2s.switch.entry\nfrom openai_s2s import process\n"
            "print(process.set_switch_interval(), sys.getswitchinterval())\n"
            "process.first_session()\n"
            "print(process.last_session_ended(lambda: False) is not None)\n")
    env = dict(os.environ, OPENAI_S2S_SWITCH_INTERVAL="abc", OPENAI_S2S_GC_FREEZE="perhaps",
               OPENAI_S2S_HEAP_TRIM="")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [repr(process.DEFAULT_SWITCH_INTERVAL)] * 2 + ["True"]
    assert "OPENAI_S2S_SWITCH_INTERVAL='abc' ignored" in out.stderr


def _sleeper(realtime: bool):
    """A child process, in SCHED_FIFO 1 (as FreeSWITCH gives itself as root) or as started."""
    proc = subprocess.Popen(["sleep", "30"])
    if realtime:
        try:
            os.sched_setscheduler(proc.pid, os.SCHED_FIFO, os.sched_param(1))
        except PermissionError:
            proc.kill()
            proc.wait()
            pytest.skip("setting SCHED_FIFO needs root or CAP_SYS_NICE")
    return proc


def test_scheduling_reads_the_policy_and_priority_of_a_process():
    plain, fifo = _sleeper(False), _sleeper(True)
    try:
        assert process.scheduling(plain.pid) == {"policy": "other", "priority": 0}
        assert process.scheduling(fifo.pid) == {"policy": "fifo", "priority": 1}
        assert not process.realtime(process.scheduling(plain.pid)) and process.realtime(process.scheduling(fifo.pid))
    finally:
        for proc in (plain, fifo):
            proc.kill()
            proc.wait()
    assert process.scheduling(plain.pid) is None   # gone: nothing to read, no exception
    assert not process.realtime(None)


def test_the_module_warns_once_at_start_when_the_switch_has_no_realtime_scheduling():
    """Run as the switch would run it, once in SCHED_OTHER and once in SCHED_FIFO."""
    code = ("import json\nfrom openai_s2s import log, process\nlines = []\n"
            "log.set_sink(lambda level, message: lines.append(level + ' ' + message))\n"
            "process.warn_without_realtime()\nprint(json.dumps(lines))\n")

    def run(preexec=None):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                             preexec_fn=preexec, cwd=os.path.dirname(os.path.dirname(__file__)))
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    plain = run(lambda: os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0)))
    assert len(plain) == 1 and plain[0].startswith("WARNING openai_s2s: FreeSWITCH runs without realtime "
                                                   "scheduling (SCHED_OTHER)"), plain
    try:
        fifo = run(lambda: os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1)))
    except (PermissionError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot start a process in SCHED_FIFO here: {exc}")
    assert fifo == []
