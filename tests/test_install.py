"""The operator installer and doctor, on a made-up switch directory tree.

The tree imitates a vanilla FreeSWITCH configuration (mod_python3 commented out in
modules.conf.xml, python.conf.xml with its startup-script commented out). The mod
directory's mod_python3.so is a stand-in file holding only the libpython name the
doctor reads from a real one; pip is not run (the real-switch tests install for real).
"""
import sys
from pathlib import Path

import pytest

from openai_s2s.tools import doctor, install, paths

VANILLA_MODULES = """<configuration name="modules.conf" description="Modules">
  <modules>
    <load module="mod_console"/>
    <!-- <load module="mod_python3"/> -->
  </modules>
</configuration>
"""
VANILLA_PYTHON = """<configuration name="python.conf" description="Python Configuration">
  <settings>
    <!--<param name="xml-handler-script" value="dp"/>-->
    <!--<param name="startup-script" value="openai_s2s"/>-->
  </settings>
</configuration>
"""


@pytest.fixture
def tree(tmp_path):
    conf = tmp_path / "etc" / "freeswitch"
    (conf / "autoload_configs").mkdir(parents=True)
    (conf / "autoload_configs" / "modules.conf.xml").write_text(VANILLA_MODULES)
    (conf / "autoload_configs" / "python.conf.xml").write_text(VANILLA_PYTHON)
    mod = tmp_path / "mod"
    mod.mkdir()
    version = "%d.%d" % sys.version_info[:2]
    (mod / "mod_python3.so").write_bytes(b"\x7fELF...libpython" + version.encode() + b".so.1.0\x00...")
    return paths.Paths(conf_dir=conf, script_dir=tmp_path / "scripts", mod_dir=mod,
                         fs_cli=tmp_path / "no-fs_cli", python=Path(sys.executable), target=tmp_path / "lib")


def apply(steps):
    for step in steps:
        step.apply()
    return [step.describe for step in steps]


def test_install_places_files_and_edits_vanilla_conf(tree):
    done = apply(install.plan_install(tree, pip=False, dialplan=True))
    autoload = tree.conf_dir / "autoload_configs"
    modules = (autoload / "modules.conf.xml").read_text()
    assert paths.loads_mod_python3(modules) and '<load module="mod_console"/>' in modules
    assert (autoload / "modules.conf.xml.orig-openai_s2s").read_text() == VANILLA_MODULES
    assert paths.startup_script((autoload / "python.conf.xml").read_text()) == "openai_s2s_boot"
    assert (autoload / "openai_s2s.conf.xml").read_text().startswith('<configuration name="openai_s2s.conf"')
    assert (tree.conf_dir / "openai_s2s").is_dir()
    assert (tree.conf_dir / "dialplan" / "default" / "openai_s2s_agent.xml").exists()
    shim = (tree.script_dir / "openai_s2s_boot.py").read_text()
    assert repr(str(tree.target)) in shim
    compile(shim, "openai_s2s_boot.py", "exec")
    assert not any(d.startswith("pip") for d in done)


def test_install_twice_changes_nothing_more(tree):
    apply(install.plan_install(tree, pip=False))
    autoload = tree.conf_dir / "autoload_configs"
    (autoload / "openai_s2s.conf.xml").write_text("<!-- the operator's own edits -->")
    again = apply(install.plan_install(tree, pip=False))
    assert again == [f"write the boot shim {tree.script_dir / 'openai_s2s_boot.py'}"]
    assert (autoload / "openai_s2s.conf.xml").read_text() == "<!-- the operator's own edits -->"


def test_pip_targets_its_own_directory_unless_told_otherwise(tree):
    steps = install.plan_install(tree, pip=True)
    assert steps[0].describe.startswith(f"pip: {sys.executable} -m pip install --upgrade --quiet --target {tree.target} ")
    tree.target = None
    steps = install.plan_install(tree, pip=True)
    assert "--break-system-packages" in steps[0].describe
    assert "LIB = ''" in install.SHIM.format(target="")


def test_an_unrelated_startup_script_is_kept(tree):
    python_conf = tree.conf_dir / "autoload_configs" / "python.conf.xml"
    python_conf.write_text(VANILLA_PYTHON.replace('<!--<param name="startup-script" value="openai_s2s"/>-->',
                                                  '<param name="startup-script" value="my_own"/>'))
    apply(install.plan_install(tree, pip=False))
    text = python_conf.read_text()
    assert 'value="my_own"' in text and paths.startup_script(text) == "openai_s2s_boot"


def statuses(checks):
    return {what: status for status, what, _ in checks}


def test_doctor_names_what_is_missing_before_install(tree):
    checks = doctor.doctor(tree)
    failed = [what for status, what, _ in checks if status == "FAIL"]
    assert any("does not load mod_python3" in f for f in failed)
    assert any("no startup-script" in f for f in failed)
    assert any("cannot import" in f and "freeswitch" in f for f in failed)   # not inside a switch
    assert statuses(checks)[f"mod_python3 is built: {tree.mod_dir / 'mod_python3.so'}"] == "ok"
    assert ("skip", "no running switch answers fs_cli", "start FreeSWITCH to check the live module") in checks


def test_doctor_after_install(tree):
    apply(install.plan_install(tree, pip=False))
    checks = doctor.doctor(tree)
    failed = [what for status, what, _ in checks if status == "FAIL"]
    # everything but the imports (no pip run, and no switch to provide `freeswitch`)
    assert len(failed) == 1 and "cannot import" in failed[0], checks
    assert any(status == "ok" and "boot shim" in what for status, what, _ in checks)


def test_doctor_catches_a_python_mismatch(tree):
    (tree.mod_dir / "mod_python3.so").write_bytes(b"libpython3.2.so.1.0")
    checks = doctor.doctor(tree)
    assert any(status == "FAIL" and "embeds Python 3.2" in what for status, what, _ in checks)


def test_the_boot_shim_runs_and_puts_its_library_first(tmp_path, monkeypatch):
    """The shim is what mod_python3 runs at startup: it must be valid Python that puts the
    target directory on sys.path and hands the entry points to the package."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    namespace = {}
    exec(compile(install.SHIM.format(target=str(tmp_path)), "openai_s2s_boot.py", "exec"), namespace)
    assert sys.path[0] == str(tmp_path)
    assert all(callable(namespace[name]) for name in ("runtime", "fsapi", "handler"))
