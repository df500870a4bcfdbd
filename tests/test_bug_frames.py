"""The media bug writes whole frames only: after a codec change mid-call it skips, never cuts."""
import pytest

from openai_s2s.switch.bug import frame_fits


@pytest.mark.parametrize("size,datalen,buflen,fits", [
    (320, 320, 8192, True),     # the call's own frames
    (320, 640, 8192, False),    # re-INVITE to 16 kHz: the channel's frame is twice ours
    (320, 160, 8192, False),    # to G.729-like 10 ms frames, or 8 kHz from 16 kHz
    (320, 0, 8192, True),       # nothing written yet: ours fills the buffer
    (320, 0, 160, False),       # a buffer too small for ours
    (320, 0, 0, True),          # no size known: the switch sizes it
])
def test_a_frame_fits_only_the_channels_frame_of_its_size(size, datalen, buflen, fits):
    assert frame_fits(size, datalen, buflen) is fits
