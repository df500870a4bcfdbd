"""openai_s2s: FreeSWITCH calls to the OpenAI Realtime speech-to-speech API.

mod_python3 imports and *reloads* this module on every ``python openai_s2s``
call, so it holds no state: each entry point hands over to
:mod:`openai_s2s.switch.entry`, which is imported once and keeps the live sessions.
"""

__version__ = "0.1.0"


def fsapi(session, stream, env, args):
    from .switch.entry import fsapi as run
    run(session, stream, env, args)


def handler(session, args):
    from .switch.entry import handler as run
    run(session, args)


def runtime(args):
    from .switch.entry import runtime as run
    run(args)
