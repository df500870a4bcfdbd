import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


import pytest  # noqa: E402


@pytest.fixture
def local_harness():
    """A Harness on a cooperative local server (the key is engine_harness.KEY), finished after."""
    from openai_s2s.localserver import LocalRealtimeServer
    from engine_harness import KEY, Harness
    with LocalRealtimeServer(api_key=KEY) as srv:
        harness = Harness(srv)
        yield harness
        harness.finish()


@pytest.fixture
def server():
    """A cooperative local server that streams its replies four times faster than real time."""
    from openai_s2s.localserver import LocalRealtimeServer
    from engine_harness import KEY
    with LocalRealtimeServer(api_key=KEY, speed=4.0) as srv:
        yield srv


@pytest.fixture
def h(server):
    from engine_harness import Harness
    harness = Harness(server)
    yield harness
    harness.finish()
