"""Where the websocket points and how it authenticates: the URL, the key's header, TLS.

An :class:`Endpoint` holds the key; its ``display_url`` and ``repr`` never do.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import re
import ssl
from typing import Any, Dict, List, Optional, Sequence, Tuple
from urllib.parse import quote, urlsplit

AUTH_TYPES = ("bearer", "query", "api-key")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_UNSAFE = re.compile(r"[\x00-\x20\x7f]")


@dataclasses.dataclass(frozen=True)
class Endpoint:
    url: str
    headers: Tuple[str, ...]
    display_url: str     # safe to log: the key is never in it

    def __repr__(self) -> str:  # keep the key out of any accidental repr()
        return f"Endpoint({self.display_url})"


def build_endpoint(host: str, path: str, auth_type: str, api_key: Optional[str],
                   beta: bool = False, extra_headers: Optional[Dict[str, str]] = None) -> Endpoint:
    """``host`` is a name, ``name:port`` or a ws:// / wss:// URL; ``path`` keeps its query."""
    if auth_type not in AUTH_TYPES:
        raise ValueError(f"auth-type must be one of {', '.join(AUTH_TYPES)}, not {auth_type!r}")
    # Everything here reaches the upgrade request: a space would split its request line, and
    # CR, LF or NUL would end a header early and let the rest be read as another.
    for what, value in (("host", host), ("path", path)):
        if _UNSAFE.search(value) or not value.isprintable():
            raise ValueError(f"the {what} holds a space or a control character")
    if not path.isascii():
        raise ValueError("the path must be ASCII (percent-encode anything else)")
    if api_key is not None and _CONTROL.search(api_key):
        raise ValueError("the api-key holds a control character")
    for name, value in (extra_headers or {}).items():
        if _CONTROL.search(name + value) or ":" in name or not name.strip():
            raise ValueError(f"bad header name or value for {name!r}")
    if "://" in host:
        parts = urlsplit(host)
        if parts.scheme not in ("ws", "wss") or not parts.hostname or "@" in parts.netloc:
            raise ValueError(f"host URL must be ws:// or wss:// with a host and no user, not {host!r}")
    else:
        parts = urlsplit(f"wss://{host}")
    try:
        port = parts.port   # ValueError for a port that is no number or out of range
        (parts.hostname or "").encode("idna")
    except (ValueError, UnicodeError) as exc:
        raise ValueError(f"bad host: {exc}") from None
    if port is not None and port < 1:
        raise ValueError("bad host: the port must be 1-65535")
    if "://" in host:
        base = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
    else:
        if not host or any(c in host for c in "/?#@ "):
            raise ValueError(f"bad host {host!r}")
        base = f"wss://{host}"
    path = "/" + path.lstrip("/")
    url = display = base + path
    headers: List[str] = []
    if api_key:
        if auth_type == "query":
            sep = "&" if "?" in path else "?"
            url = f"{url}{sep}api-key={quote(api_key, safe='')}"
            display = f"{display}{sep}api-key=***"
        elif auth_type == "bearer":
            headers.append(f"Authorization: Bearer {api_key}")
        else:
            headers.append(f"api-key: {api_key}")
    if beta:
        headers.append("OpenAI-Beta: realtime=v1")
    for name, value in (extra_headers or {}).items():
        headers.append(f"{name}: {value}")
    return Endpoint(url, tuple(headers), display)


def tls_context(options: Dict[str, Any]) -> ssl.SSLContext:
    """Verification on unless the operator turns it off; a private CA and client cert if given."""
    ctx = ssl.create_default_context(cafile=options.get("tls_ca_file"))
    if not options.get("tls_verify", True):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif not options.get("tls_verify_hostname", True):
        ctx.check_hostname = False
    if options.get("tls_cert_file"):
        ctx.load_cert_chain(options["tls_cert_file"], options.get("tls_key_file"))
    return ctx


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def key_refusal(url: str, patterns: Sequence[str], key_over_ws: bool,
                from_command: bool) -> Optional[str]:
    """Why a key must not go to ``url``, or None. A key the command itself gave goes where the
    command says (but not in clear text off this machine); one from the config, a channel
    variable or the environment only to the allowed hosts."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme == "ws" and not key_over_ws and not is_loopback(host):
        return (f"refusing to send an API key over plain ws:// to {host} "
                "(key-over-ws in openai_s2s.conf.xml allows it)")
    if from_command:
        return None
    for pattern in patterns:
        if pattern == "loopback" and is_loopback(host):
            return None
        if pattern.startswith("*.") and host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
            return None
        if host == pattern:
            return None
    return (f"the configured API key is not sent to {host}: give the key on the command line, "
            "or add the host to key-hosts in openai_s2s.conf.xml")
