"""file:// instructions: regular files inside instructions-dir only, and nothing can hang the reader."""
import os
import threading

import pytest

from openai_s2s.control.instructions import MAX_BYTES, InstructionsError, read_instructions


def test_instructions_file_only_from_the_configured_directory(tmp_path):
    (tmp_path / "agent.txt").write_text("Be brief.")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.txt").write_text("nested")
    outside = tmp_path.parent / "outside.txt"
    outside.write_text("secret")
    assert read_instructions("agent.txt", str(tmp_path)) == "Be brief."
    assert read_instructions("sub/x.txt", str(tmp_path)) == "nested"
    for bad in ("../outside.txt", str(outside), "", "missing.txt"):
        with pytest.raises(InstructionsError):
            read_instructions(bad, str(tmp_path))
    with pytest.raises(InstructionsError, match="instructions-dir"):
        read_instructions("agent.txt", None)


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    outcome = []
    reader = threading.Thread(target=lambda: outcome.append(_error(lambda: read_instructions("pipe", str(tmp_path)))),
                              daemon=True)
    reader.start()
    reader.join(2)
    assert not reader.is_alive(), "reading a FIFO hung"
    assert outcome == ["instructions file 'pipe' is not a regular file"]


@pytest.mark.parametrize("make,message", [
    (lambda d: (d / "dir").mkdir(), "instructions file 'dir' is not a regular file"),
    (lambda d: os.symlink("/dev/zero", d / "dir"), "outside the instructions directory"),
    (lambda d: (d / "dir").write_bytes(b"\xff\xfe"), "is not UTF-8"),
    (lambda d: (d / "dir").write_bytes(b"x" * (MAX_BYTES + 1)), f"is larger than {MAX_BYTES} bytes"),
])
def test_what_is_no_regular_file_of_text_is_a_clear_error(tmp_path, make, message):
    make(tmp_path)
    assert message in _error(lambda: read_instructions("dir", str(tmp_path)))


def test_a_nul_in_the_name_is_a_clear_error(tmp_path):
    assert _error(lambda: read_instructions("a\0b", str(tmp_path))) == "the instructions file name holds a NUL"


def test_a_symlink_swapped_in_after_the_check_is_not_followed(tmp_path, monkeypatch):
    (tmp_path / "agent.txt").write_text("Be brief.")
    secret = tmp_path.parent / "secret.txt"
    secret.write_text("secret")
    real = os.path.realpath

    def swap_after_check(path):
        resolved = real(path)
        if path.endswith("agent.txt"):   # the check has looked: now the file becomes a link out
            os.remove(tmp_path / "agent.txt")
            os.symlink(secret, tmp_path / "agent.txt")
        return resolved
    monkeypatch.setattr(os.path, "realpath", swap_after_check)
    message = _error(lambda: read_instructions("agent.txt", str(tmp_path)))
    assert "secret" not in message and message.startswith("instructions file 'agent.txt'")


def _error(run):
    try:
        run()
    except InstructionsError as exc:
        return str(exc)
    return "no error"
