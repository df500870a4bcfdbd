"""Which Realtime models an installation asks for, and which of them OpenAI has deprecated.

The deprecated names are read from the installed ``openai`` package, not kept here: its
generated types document them in the docstring of the session's ``model`` field::

    Deprecated values:

    - "gpt-realtime", "gpt-realtime-mini", ...:
      Announced shutdown date: 2027-01-20. See https://... for details and recommended replacements.

so the list is as fresh as the package. When the package is absent or that text changes
shape, nothing is claimed.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..control.config import parse_settings_xml
from .paths import uncommented

SESSION_MODULE = "openai.types.realtime.realtime_session_create_request"
_BLOCK = re.compile(r"^\s*Deprecated values:\s*$", re.M)
_ITEM = re.compile(r'^((?:"[^"]+"\s*,\s*)*"[^"]+")\s*:\s*(.*)$', re.S)


def field_docstrings(source: str, field: str) -> List[str]:
    """The docstrings of ``field`` in every class of a module's source (a string right after
    the annotated assignment, as generated models and Sphinx write them)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    docs = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        for stmt, after in zip(node.body, node.body[1:]):
            if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                    and stmt.target.id == field and isinstance(after, ast.Expr)
                    and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
                docs.append(after.value.value)
    return docs


def deprecated_in_docstring(doc: str) -> Optional[Dict[str, str]]:
    """Name -> what the docstring says of it (the shutdown date, where to read more), from its
    "Deprecated values:" list; {} if it has none; None if the list is there but unreadable."""
    block = _BLOCK.search(doc)
    if block is None:
        return {}
    items: List[str] = []
    for line in doc[block.end():].splitlines():
        if line.lstrip().startswith("- "):
            items.append(line.lstrip()[2:])
        elif line.strip() and items:
            items[-1] += " " + line.strip()   # an item's wrapped continuation
        elif items:
            break   # the blank line after the list ends it
    found: Dict[str, str] = {}
    for item in items:
        match = _ITEM.match(" ".join(item.split()))
        if match is None:
            return None
        for name in re.findall(r'"([^"]+)"', match.group(1)):
            found[name] = match.group(2)
    return found or None


def deprecated_in_source(source: str) -> Optional[Dict[str, str]]:
    """Deprecated model names documented on ``model`` in a module's source; None if unrecognised."""
    docs = field_docstrings(source, "model")
    if not docs:
        return None
    found: Dict[str, str] = {}
    for doc in docs:
        names = deprecated_in_docstring(doc)
        if names is None:
            return None
        found.update(names)
    return found


def installed_deprecations() -> Tuple[Optional[str], Optional[Dict[str, str]]]:
    """(openai's version, its deprecated Realtime models); (None, None) without the package,
    (version, None) when its source is not in the shape this reads."""
    import importlib
    import inspect
    try:
        import openai
    except Exception:   # absent or broken: nothing to say
        return None, None
    version = str(getattr(openai, "__version__", "?"))
    try:
        source = inspect.getsource(importlib.import_module(SESSION_MODULE))
    except Exception:   # moved, or shipped without source
        return version, None
    return version, deprecated_in_source(source)


def model_in_path(path: str) -> Optional[str]:
    """The model a URL path names (``v1/realtime?model=NAME``)."""
    match = re.search(r"[?&]model=([^&#\s]+)", path.replace("&amp;", "&"))
    return match.group(1) if match else None


def configured_models(conf_dir: Path) -> List[Tuple[str, str]]:
    """(model, where it is set) for every model the configuration asks for: the agent's
    default, ``model``/``path`` in openai_s2s.conf.xml, and openai_s2s_model/openai_s2s_path
    set in the dialplan."""
    found: List[Tuple[str, str]] = []
    try:
        from ..control.agent import DEFAULT_MODEL   # needs orjson, absent before install
        found.append((DEFAULT_MODEL, "the agent's default, when openai_s2s_model is not set"))
    except ImportError:
        pass
    conf = conf_dir / "autoload_configs" / "openai_s2s.conf.xml"
    try:
        raw = parse_settings_xml(uncommented(conf.read_text()))
    except Exception:   # absent or unparsable: the doctor's other checks say so
        raw = {}
    if raw.get("model", "").strip():
        found.append((raw["model"].strip(), f"model in {conf}"))
    named = model_in_path(raw.get("path", ""))
    if named:
        found.append((named, f"path in {conf}"))
    dialplan = conf_dir / "dialplan"
    for xml in sorted(dialplan.rglob("*.xml")) if dialplan.is_dir() else []:
        try:
            text = uncommented(xml.read_text(errors="replace"))
        except OSError:
            continue
        for name in re.findall(r"openai_s2s_model=([^\"'\s]+)", text):
            found.append((name, f"openai_s2s_model in {xml}"))
        for path in re.findall(r"openai_s2s_path=([^\"'\s]+)", text):
            named = model_in_path(path)
            if named:
                found.append((named, f"openai_s2s_path in {xml}"))
    return found
