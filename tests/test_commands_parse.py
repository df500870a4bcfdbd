import pytest

from openai_s2s.control import commands
from openai_s2s.control.commands import execute, split_args
from fakeswitch import FakeSwitch


def test_split_on_spaces_and_on_caret_separator():
    assert split_args("u1 session.delete") == (["u1", "session.delete"], None)
    assert split_args("^^|u1|client.event|{\"a\": \"x|y\"}") == (
        ["u1", "client.event", "{\"a\": \"x", "y\"}"], "|")


def test_rest_of_line_is_kept_exactly():
    line = 'u1 client.event {"type": "x",  "text": "a  b"}'
    words, sep = split_args(line)
    assert commands._rest_after(line, words, sep, 2) == '{"type": "x",  "text": "a  b"}'
    line = '^^|u1|client.event|{"type": "x", "t": "a|b"}'
    words, sep = split_args(line)
    assert commands._rest_after(line, words, sep, 2) == '{"type": "x", "t": "a|b"}'


@pytest.mark.parametrize("line,reply", [
    ("", "-USAGE: "),
    ("u1", "-USAGE: "),
    ("session.create", "-USAGE: uuid_openai_s2s <uuid> session.create"),
    ("u1 frobnicate", "-ERR unknown command 'frobnicate'"),
    ("u1 session.create host", "-USAGE: uuid_openai_s2s <uuid> session.create"),
    ("u1 session.create h p basic k", "-ERR unknown auth-type 'basic'"),
    ("nosuch session.create h v1/realtime bearer k", "-ERR no such channel nosuch"),
    ("u1 client.event", "-USAGE: uuid_openai_s2s <uuid> client.event <json>"),
    ('u1 client.event {"type":"x"}', "-ERR no openai_s2s session on u1"),
    ("u1 session.delete", "-ERR no openai_s2s session on u1"),
    ("u1 status", "-ERR no openai_s2s session on u1"),
    ("u1 pause", "-ERR no openai_s2s session on u1"),
    ("u1 mute everyone", "-USAGE: uuid_openai_s2s <uuid> mute [user|model|all]"),
    ("status", '+OK {"sessions":[],"threads":0,"python_gc":'),
])
def test_bad_input_gets_a_clear_reply(line, reply):
    assert execute(line, FakeSwitch()).startswith(reply)


def test_non_utf8_arguments():
    assert execute(b"u1 client.event {\"type\":\"\xff\"}", FakeSwitch()).startswith("-ERR arguments are not valid UTF-8")


def test_internal_error_is_an_err_line_not_a_traceback():
    class Broken(FakeSwitch):
        def find_call(self, uuid):
            raise ZeroDivisionError("boom")
    reply = execute("u1 session.create h v1/realtime bearer k", Broken())
    assert reply == "-ERR internal error (details in the switch log)"
