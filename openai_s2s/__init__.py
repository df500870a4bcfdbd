"""openai_s2s: FreeSWITCH calls to the OpenAI Realtime speech-to-speech API."""

__version__ = "0.1.0"
