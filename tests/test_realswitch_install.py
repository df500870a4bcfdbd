"""The operator's path, in a real FreeSWITCH: a vanilla-shaped conf (mod_python3 commented
out, no openai_s2s files, no PYTHONPATH), `python3 -m openai_s2s install`, start, `doctor`.

pip is not run (no network in tests): the shim's library directory is the checkout, so what
is proven is the installer's conf edits, the boot shim putting the package on the embedded
interpreter's path, the registration it triggers, and the doctor reading a live switch.
"""
import subprocess
import sys

import pytest

from openai_s2s.tools import testswitch as realswitch

REASON = realswitch.missing_reason()
pytestmark = [pytest.mark.realswitch, pytest.mark.skipif(REASON is not None, reason=str(REASON))]

KEY = "sk-install-test-KEY-0123456789"


def run_module(*args):
    return subprocess.run([sys.executable, "-m", "openai_s2s", *args], capture_output=True, text=True,
                          cwd=realswitch.REPO, timeout=120)


def test_install_then_doctor_in_a_real_switch(tmp_path):
    switch = realswitch.RealSwitch(tmp_path, dialplan="", env={"OPENAI_API_KEY": KEY}, as_installed=True)
    switch.write_conf()
    fs_cli = str(switch.prefix / "bin" / "fs_cli")
    cli = ["--fs-cli", fs_cli] + [f"--cli-arg={a}" for a in
                                  ("-H", "127.0.0.1", "-P", str(switch.esl_port), "-p", realswitch.PASSWORD)]
    paths = ["--conf-dir", str(switch.conf), "--scripts-dir", str(tmp_path / "scripts"),
             "--mod-dir", str(realswitch.mod_dir(switch.prefix)), "--target", str(realswitch.REPO)]

    before = run_module("doctor", "--no-switch", *paths, *cli)
    assert before.returncode == 1 and "does not load mod_python3" in before.stdout, before.stdout

    done = run_module("install", "--no-pip", "--no-switch", "--dialplan", *paths, *cli)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "load mod_python3 in" in done.stdout and "startup-script openai_s2s_boot" in done.stdout

    switch.start(write_conf=False)
    try:
        switch.wait_for_api()
        assert "1 total" in switch.cli("show api uuid_openai_s2s"), switch.log_tail()
        # one interpreter: once the shim has run, the package's own name works too
        assert switch.cli("python openai_s2s status").startswith('+OK {"sessions":[]')
        # with no paths given, install and doctor read them from the live switch
        dry = run_module("install", "--dry-run", "--no-pip", *cli)
        assert dry.returncode == 0, dry.stdout + dry.stderr
        assert f"conf_dir {switch.conf} (from the running switch: global_getvar conf_dir)" in dry.stdout
        assert "would write the boot shim" in dry.stdout
        after = run_module("doctor", "--target", str(realswitch.REPO), *cli)
        assert after.returncode == 0, after.stdout
        assert "[ ok ] uuid_openai_s2s is registered" in after.stdout
        assert "[ ok ] the running switch has an API key in its environment" in after.stdout
        assert KEY not in after.stdout and "PATH finds" not in after.stdout
    finally:
        assert switch.stop(), switch.log_tail()
    assert KEY not in switch.log_text()
