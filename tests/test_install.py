"""The operator installer and doctor, on a made-up switch directory tree.

The tree imitates a vanilla FreeSWITCH configuration (mod_python3 commented out in
modules.conf.xml, python.conf.xml with its startup-script commented out). The mod
directory's mod_python3.so is a stand-in file holding only the libpython name the
doctor reads from a real one; pip is not run (the real-switch tests install for real).
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from openai_s2s.tools import cli, doctor, install, models, paths

REPO = Path(__file__).resolve().parents[1]

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
    assert any(status == "skip" and what == f"no running switch answers {tree.fs_cli}" for status, what, _ in checks)


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


@pytest.mark.parametrize("realtime", [False, True])
def test_doctor_reads_the_running_switchs_scheduling(tree, tmp_path, realtime):
    """Started as root FreeSWITCH takes SCHED_FIFO, and the module's threads inherit it; doctor
    warns when the switch it finds (its run_dir's pid file) runs without."""
    proc = subprocess.Popen(["sleep", "30"])
    try:
        if realtime:
            try:
                os.sched_setscheduler(proc.pid, os.SCHED_FIFO, os.sched_param(1))
            except PermissionError:
                pytest.skip("setting SCHED_FIFO needs root or CAP_SYS_NICE")
        run = tmp_path / "run"
        run.mkdir()
        (run / "freeswitch.pid").write_text(f"{proc.pid}\n")
        tree.run_dir = run
        found = [(status, what, hint) for status, what, hint in doctor.doctor(tree) if "scheduling" in what]
    finally:
        proc.kill()
        proc.wait()
    if realtime:
        assert found == [("ok", "the running switch has realtime scheduling (SCHED_FIFO 1)", "")]
    else:
        assert len(found) == 1 and found[0][:2] == ("warn", "the running switch has no realtime scheduling "
                                                            "(SCHED_OTHER)")
        assert "CAP_SYS_NICE" in found[0][2] and "-np" in found[0][2]


def test_the_boot_shim_runs_and_puts_its_library_first(tmp_path, monkeypatch):
    """The shim is what mod_python3 runs at startup: it must be valid Python that puts the
    target directory on sys.path and hands the entry points to the package."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    namespace = {}
    exec(compile(install.SHIM.format(target=str(tmp_path)), "openai_s2s_boot.py", "exec"), namespace)
    assert sys.path[0] == str(tmp_path)
    assert all(callable(namespace[name]) for name in ("runtime", "fsapi", "handler"))



# -- finding the switch: fake machines in a temporary root --------------------------------

FS_CLI = """#!/bin/sh
# a stand-in fs_cli: the command is the last argument
for command; do :; done
case "$command" in
{cases}
  *) echo "-ERR no reply" ;;
esac
"""
DOWN = """#!/bin/sh
echo "[ERROR] fs_cli.c:1699 main() Error Connecting []"
exit 255
"""


def write_fs_cli(where, replies=None):
    """An fs_cli in ``where``: it answers ``replies`` (command -> output), or, without
    replies, fails as fs_cli does when no switch listens."""
    where.mkdir(parents=True, exist_ok=True)
    cases = "\n".join(f'  "{command}") echo "{out}" ;;' for command, out in (replies or {}).items())
    script = where / "fs_cli"
    script.write_text(FS_CLI.format(cases=cases) if replies is not None else DOWN)
    script.chmod(0o755)
    return script


def switch_replies(layout, **extra):
    replies = {f"global_getvar {name}": layout[name] for name in ("conf_dir", "script_dir", "mod_dir", "log_dir")}
    replies["status"] = "UP 0 years, 0 days, 0 hours, 1 minute"
    replies.update(extra)
    return replies


def make_configuration(layout):
    """What a FreeSWITCH install leaves: a configuration (freeswitch.xml and vanilla
    autoload_configs), a scripts directory, and mod_python3.so."""
    conf = Path(layout["conf_dir"])
    (conf / "autoload_configs").mkdir(parents=True)
    (conf / "freeswitch.xml").write_text("<document type=\"freeswitch/xml\"/>\n")
    (conf / "autoload_configs" / "modules.conf.xml").write_text(VANILLA_MODULES)
    (conf / "autoload_configs" / "python.conf.xml").write_text(VANILLA_PYTHON)
    Path(layout["script_dir"]).mkdir(parents=True)
    Path(layout["mod_dir"]).mkdir(parents=True)
    version = "%d.%d" % sys.version_info[:2]
    (Path(layout["mod_dir"]) / "mod_python3.so").write_bytes(b"libpython" + version.encode() + b".so.1.0\x00")


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """The usual install places, moved under tmp_path; PATH holds only an empty directory."""
    root = tmp_path / "root"
    monkeypatch.setattr(paths, "FS_CLI_DIRS", tuple(str(root / d) for d in
                                                     ("usr/local/freeswitch/bin", "usr/bin", "opt/freeswitch/bin",
                                                      "usr/local/bin")))
    monkeypatch.setattr(paths, "LAYOUTS", {
        "package": {"conf_dir": f"{root}/etc/freeswitch", "script_dir": f"{root}/usr/share/freeswitch/scripts",
                    "mod_dir": f"{root}/usr/lib/freeswitch/mod", "log_dir": f"{root}/var/log/freeswitch"},
        "source": paths.source_layout(f"{root}/usr/local/freeswitch")})
    (tmp_path / "empty-bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    root.mkdir()
    return root


def run(capsys, *argv):
    status = cli.main(list(argv))
    out = capsys.readouterr()
    return status, out.out, out.err


def files_under(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def resolve(*argv):
    return paths.resolve_paths(cli._parser().parse_args(["doctor", *argv]))


def test_fs_cli_off_path_is_found_in_the_source_prefix_and_the_switch_gives_the_paths(machine):
    source = paths.LAYOUTS["source"]
    make_configuration(source)
    fs_cli = write_fs_cli(machine / "usr/local/freeswitch/bin",
                          switch_replies(source, **{"global_getvar run_dir": f"{machine}/run"}))
    found = resolve()
    assert found.fs_cli == fs_cli
    assert found.sources["fs_cli"] == f"found on disk in {machine}/usr/local/freeswitch/bin"
    for name in ("conf_dir", "script_dir", "mod_dir", "log_dir", "run_dir"):
        assert found.sources[name] == f"from the running switch: global_getvar {name}"
    assert (found.conf_dir, found.script_dir, found.run_dir) == (
        Path(source["conf_dir"]), Path(source["script_dir"]), machine / "run")


def test_fs_cli_on_path_comes_first(machine, tmp_path, monkeypatch):
    make_configuration(paths.LAYOUTS["source"])
    write_fs_cli(machine / "usr/local/freeswitch/bin")
    on_path = write_fs_cli(tmp_path / "bin")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert resolve().fs_cli == on_path and resolve().sources["fs_cli"] == "on PATH"


def test_a_running_switch_is_believed_over_the_disk(machine):
    """Both layouts have a configuration; the switch that answers says which is its own,
    wherever it keeps it."""
    make_configuration(paths.LAYOUTS["package"])
    make_configuration(paths.LAYOUTS["source"])
    own = paths.source_layout(f"{machine}/srv/fs")
    make_configuration(own)
    write_fs_cli(machine / "opt/freeswitch/bin", switch_replies(own))
    found = resolve()
    assert (found.conf_dir, found.script_dir, found.mod_dir, found.log_dir) == tuple(
        Path(own[name]) for name in ("conf_dir", "script_dir", "mod_dir", "log_dir"))


def test_source_layout_found_on_disk_and_installed_into(machine, capsys):
    """No switch answers and /etc/freeswitch holds only what a mistaken install left: the
    source build's configuration is the one used."""
    source = paths.LAYOUTS["source"]
    make_configuration(source)
    write_fs_cli(machine / "usr/local/freeswitch/bin")   # installed, but the switch is down
    leftover = Path(paths.LAYOUTS["package"]["conf_dir"]) / "autoload_configs"
    leftover.mkdir(parents=True)
    status, out, err = run(capsys, "install", "--no-pip")
    assert status == 0, err
    assert f"conf_dir {source['conf_dir']} (found on disk: source layout)" in out
    assert f"script_dir {source['script_dir']} (found on disk: source layout)" in out
    conf = Path(source["conf_dir"]) / "autoload_configs"
    assert paths.loads_mod_python3((conf / "modules.conf.xml").read_text())
    assert (Path(source["script_dir"]) / "openai_s2s_boot.py").exists()
    assert list(leftover.iterdir()) == []


def test_package_layout_found_on_disk(machine, capsys):
    package = paths.LAYOUTS["package"]
    make_configuration(package)
    found = resolve()
    assert found.fs_cli is None and found.sources["conf_dir"] == "found on disk: package layout"
    assert (found.conf_dir, found.script_dir, found.mod_dir) == tuple(
        Path(package[name]) for name in ("conf_dir", "script_dir", "mod_dir"))
    status, out, _ = run(capsys, "doctor", "--target", "none")
    assert f"[info] mod_dir {package['mod_dir']} (found on disk: package layout)" in out
    assert f"[ ok ] mod_python3 is built: {package['mod_dir']}/mod_python3.so" in out
    assert "[skip] no fs_cli found to ask a running switch\n       -> pass --fs-cli" in out


@pytest.mark.parametrize("argv, where", [
    ((), "{package} or {source}, and no fs_cli was found"),
    (("--layout", "source"), "{source} (from --layout source)"),
    (("--conf-dir", "{root}/nowhere"), "{root}/nowhere (from --conf-dir)"),
])
@pytest.mark.parametrize("command", ["install", "doctor"])
def test_no_configuration_is_one_line_and_nothing_is_written(machine, capsys, argv, where, command):
    before = files_under(machine)
    names = {"root": machine, "package": paths.LAYOUTS["package"]["conf_dir"],
             "source": paths.LAYOUTS["source"]["conf_dir"]}
    options = [a.format(**names) for a in argv] + (["--no-pip"] if command == "install" else [])
    status, out, err = run(capsys, command, *options)
    assert status != 0 and out == ""
    assert err == f"-ERR no FreeSWITCH configuration at {where.format(**names)}: pass --conf-dir\n"
    assert files_under(machine) == before


def test_dry_run_says_where_each_path_came_from(machine, capsys):
    source = paths.LAYOUTS["source"]
    make_configuration(source)
    fs_cli = write_fs_cli(machine / "usr/bin", {"global_getvar conf_dir": source["conf_dir"], "status": "UP"})
    before = files_under(machine)
    status, out, err = run(capsys, "install", "--dry-run", "--scripts-dir", f"{machine}/scripts")
    assert status == 0, err
    lines = out.splitlines()
    assert lines[:5] == [
        f"fs_cli {fs_cli} (found on disk in {machine}/usr/bin)",
        f"conf_dir {source['conf_dir']} (from the running switch: global_getvar conf_dir)",
        f"script_dir {machine}/scripts (from --scripts-dir)",
        f"mod_dir {source['mod_dir']} (source layout, matching conf_dir)",
        f"log_dir {source['log_dir']} (source layout, matching conf_dir)"]
    assert all(line.startswith("would ") for line in lines[5:]) and len(lines) > 6
    assert files_under(machine) == before


def test_a_source_build_under_another_prefix_keeps_its_files_together(machine):
    own = paths.source_layout(f"{machine}/opt/fs")
    make_configuration(own)
    make_configuration(paths.LAYOUTS["package"])
    found = resolve("--conf-dir", own["conf_dir"])
    assert found.script_dir == Path(own["script_dir"]) and found.mod_dir == Path(own["mod_dir"])
    assert found.sources["script_dir"] == f"source under {machine}/opt/fs layout, matching conf_dir"


def test_doctor_advice_restarts_the_switch_rather_than_reloading(machine, capsys):
    source = paths.LAYOUTS["source"]
    make_configuration(source)
    write_fs_cli(machine / "usr/local/freeswitch/bin",
                 switch_replies(source, **{"module_exists mod_python3": "false",
                                           "show api uuid_openai_s2s": "0 total."}))
    status, out, _ = run(capsys, "doctor", "--target", "none")
    assert status == 1
    assert "[FAIL] mod_python3 is not loaded in the running switch\n       -> once modules.conf.xml loads it, " \
           "restart FreeSWITCH" in out
    assert (f"look for 'openai_s2s' in {source['log_dir']}/freeswitch.log; after a fix, restart FreeSWITCH "
            "(mod_python3 cannot be unloaded or reloaded)") in out
    assert "load mod_python3'" not in out and "pyrun" not in out


def test_no_advice_anywhere_names_a_reload_of_mod_python3():
    """mod_python3 can be neither unloaded nor reloaded: only a restart takes a change."""
    wrong = ("'load mod_python3", "reload mod_python3", "unload mod_python3", "reload mod_python ",
             "unload mod_python ")
    texts = [path for path in REPO.rglob("*") if path.suffix in (".py", ".md", ".xml", ".snippet", ".cfg")
             and not any(part.startswith(".") or part == "__pycache__" for part in path.relative_to(REPO).parts)]
    assert any(path.name == "doctor.py" for path in texts) and any(path.name == "README.md" for path in texts)
    for path in texts:
        if path != Path(__file__).resolve():
            assert not [w for w in wrong if w in path.read_text(errors="replace")], path


# -- deprecated models, as the installed openai package lists them -------------------------

def test_doctor_warns_of_a_deprecated_model_the_openai_package_lists(tree):
    openai = pytest.importorskip("openai")
    version, deprecated = models.installed_deprecations()
    assert version == openai.__version__ and deprecated, "openai's model docstring is no longer read"
    assert "gpt-realtime-mini" in deprecated and "gpt-realtime-2" not in deprecated
    assert all("shutdown" in note.lower() for note in deprecated.values())
    dialplan = tree.conf_dir / "dialplan" / "default"
    dialplan.mkdir(parents=True)
    (dialplan / "agents.xml").write_text(
        '<include><extension name="a"><condition>\n'
        '  <action application="set" data="openai_s2s_model=gpt-realtime-mini"/>\n'
        '  <!-- <action application="set" data="openai_s2s_model=gpt-audio-mini"/> -->\n'
        '  <action application="set" data="openai_s2s_path=v1/realtime?model=gpt-realtime-2"/>\n'
        '</condition></extension></include>\n')
    warned = [(what, hint) for status, what, hint in doctor.doctor(tree) if status == "warn" and "deprecated" in what]
    mini = [(what, hint) for what, hint in warned if "gpt-realtime-mini" in what]
    assert mini == [(f"model gpt-realtime-mini (openai_s2s_model in {dialplan / 'agents.xml'}) is deprecated in "
                     f"openai {version}", f"choose another; openai says: {deprecated['gpt-realtime-mini']}")]
    assert not any("gpt-realtime-2 " in what or "gpt-audio-mini" in what for what, _ in warned)


def test_models_in_the_config_file_and_the_agent_default_are_checked(tree, monkeypatch):
    from openai_s2s.control import agent
    monkeypatch.setattr(models, "installed_deprecations", lambda: ("9.9", {"old-one": "gone soon.", "older": "gone."}))
    monkeypatch.setattr(agent, "DEFAULT_MODEL", "older")
    (tree.conf_dir / "autoload_configs" / "openai_s2s.conf.xml").write_text(
        '<configuration name="openai_s2s.conf"><settings>\n'
        '  <param name="path" value="v1/realtime?model=old-one&amp;x=1"/>\n</settings></configuration>\n')
    warned = [what for status, what, _ in doctor.model_checks(tree.conf_dir) if status == "warn"]
    assert warned == ["model older (the agent's default, when openai_s2s_model is not set) is deprecated in openai 9.9",
                      f"model old-one (path in {tree.conf_dir / 'autoload_configs' / 'openai_s2s.conf.xml'}) "
                      "is deprecated in openai 9.9"]


def test_an_unreadable_deprecation_list_says_nothing_but_that(tree, monkeypatch):
    unreadable = 'class S:\n    model: str\n    """Deprecated values:\n\n    - gpt-x: soon\n    """\n'
    assert models.deprecated_in_source(unreadable) is None
    assert models.deprecated_in_source("class S:\n    name: str\n") is None
    assert models.deprecated_in_source('class S:\n    model: str\n    """The model."""\n') == {}
    monkeypatch.setattr(models, "installed_deprecations", lambda: ("9.9", None))
    assert [status for status, _, _ in doctor.model_checks(tree.conf_dir)] == ["skip"]


def test_without_the_openai_package_models_are_not_mentioned(tree, monkeypatch):
    monkeypatch.setitem(sys.modules, "openai", None)   # import openai fails
    assert models.installed_deprecations() == (None, None) and doctor.model_checks(tree.conf_dir) == []
