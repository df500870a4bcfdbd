"""What the Realtime service decides, not the module: the model to ask for when none is named,
and how long the service keeps a session open.

OpenAI ends a Realtime session after 60 minutes, Azure OpenAI after 30: it sends an ``error``
with the code ``session_expired``, then closes the websocket.
"""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

# The current GA model. gpt-realtime, gpt-realtime-mini and gpt-audio-mini (and their dated
# snapshots) are deprecated, to be shut down on 2027-01-20.
DEFAULT_MODEL = "gpt-realtime-2.1"

# GPT-Live (/v1/live/sessions): the model goes in session.start, never in the URL. The newest of
# the two the openai package names (SessionConfig.model: gpt-live-1, gpt-live-1.1).
LIVE_PATH = "/v1/live/sessions"
DEFAULT_LIVE_MODEL = "gpt-live-1.1"
# the Responses backend's model when a Realtime session's function tools move there (the model
# OpenAI's and Azure's GPT-Live examples delegate to)
DEFAULT_LIVE_DELEGATION_MODEL = "gpt-5.5"

OPENAI_SESSION_LIMIT = 60 * 60     # seconds
AZURE_SESSION_LIMIT = 30 * 60
# an Azure OpenAI resource's name, and those of Azure AI services and AI Foundry resources,
# which serve the same Realtime API
AZURE_HOST_SUFFIXES = (".openai.azure.com", ".cognitiveservices.azure.com", ".services.ai.azure.com")


def is_azure(url: str) -> bool:
    """Azure OpenAI by its host, or by its path's shape when the host says nothing (a gateway
    in front of it, the local server): ``/openai/...``, or an ``api-version`` in the query."""
    parts = urlsplit(url)
    if not parts.scheme:     # a path alone
        parts = urlsplit("/" + url.lstrip("/"))
    host = (parts.hostname or "").lower().rstrip(".")
    if host.endswith(AZURE_HOST_SUFFIXES):
        return True
    return parts.path.startswith("/openai/") or "api-version" in parse_qs(parts.query)


def session_limit(url: str) -> int:
    """Seconds the service at ``url`` (a URL, or a path alone) keeps a session open."""
    return AZURE_SESSION_LIMIT if is_azure(url) else OPENAI_SESSION_LIMIT


def expired_message(limit: float) -> str:
    """The ``session_expired`` error's message, as the service words it."""
    return f"Your session hit the maximum duration of {round(limit / 60)} minutes."
