"""G.711 mu-law and A-law codecs on 16-bit little-endian PCM.

Table driven (numpy, already required by samplerate): encoding indexes a 64k
table by the sample's uint16 bit pattern, decoding indexes a 256-entry table.
``audioop`` would do this but is gone from Python 3.13.
"""
from __future__ import annotations

import numpy as np

_BIAS = 0x84


def _ulaw_encode_one(sample: int) -> int:
    # Sun's g711.c on 14-bit magnitude, bit-exact with audioop.lin2ulaw.
    sample >>= 2
    if sample < 0:
        sample, mask = -sample, 0x7F
    else:
        mask = 0xFF
    sample = min(sample, 8159) + 0x21
    segment = 0
    while segment < 8 and sample > (0x40 << segment) - 1:
        segment += 1
    if segment >= 8:
        return 0x7F ^ mask
    return ((segment << 4) | ((sample >> (segment + 1)) & 0x0F)) ^ mask


def _ulaw_decode_one(byte: int) -> int:
    byte = ~byte & 0xFF
    sign = byte & 0x80
    exponent = (byte >> 4) & 0x07
    mantissa = byte & 0x0F
    sample = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return -sample if sign else sample


def _alaw_encode_one(sample: int) -> int:
    sign = 0x80 if sample >= 0 else 0
    if sample < 0:
        sample = -sample - 1
    sample = min(sample, 32767) >> 3
    if sample < 32:
        value = sample >> 1
    else:
        exponent = 1
        while sample >= 64 and exponent < 7:
            sample >>= 1
            exponent += 1
        value = (exponent << 4) | ((sample >> 1) & 0x0F)
    return (value | sign) ^ 0x55


def _alaw_decode_one(byte: int) -> int:
    byte ^= 0x55
    sign = byte & 0x80
    exponent = (byte >> 4) & 0x07
    mantissa = byte & 0x0F
    if exponent == 0:
        sample = (mantissa << 4) + 8
    else:
        sample = ((mantissa << 4) + 0x108) << (exponent - 1)
    return sample if sign else -sample


_ALL_SAMPLES = np.arange(65536, dtype=np.uint16).view(np.int16)
_ULAW_ENC = np.array([_ulaw_encode_one(int(s)) for s in _ALL_SAMPLES], dtype=np.uint8)
_ALAW_ENC = np.array([_alaw_encode_one(int(s)) for s in _ALL_SAMPLES], dtype=np.uint8)
_ULAW_DEC = np.array([_ulaw_decode_one(b) for b in range(256)], dtype="<i2")
_ALAW_DEC = np.array([_alaw_decode_one(b) for b in range(256)], dtype="<i2")


def _as_index(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<u2", count=len(pcm) // 2)


def ulaw_encode(pcm: bytes) -> bytes:
    """16-bit LE PCM -> mu-law bytes (one per sample)."""
    return _ULAW_ENC[_as_index(pcm)].tobytes()


def alaw_encode(pcm: bytes) -> bytes:
    """16-bit LE PCM -> A-law bytes (one per sample)."""
    return _ALAW_ENC[_as_index(pcm)].tobytes()


def ulaw_decode(data: bytes) -> bytes:
    """mu-law bytes -> 16-bit LE PCM."""
    return _ULAW_DEC[np.frombuffer(data, dtype=np.uint8)].tobytes()


def alaw_decode(data: bytes) -> bytes:
    """A-law bytes -> 16-bit LE PCM."""
    return _ALAW_DEC[np.frombuffer(data, dtype=np.uint8)].tobytes()
