"""The URL holds the view (model, sample, target, methods, settings) so a link reproduces it.

Uploads never go into the URL. `restore()` runs once per session, before any widget, and seeds
the widgets' keys; `publish()` writes the current view back after the widgets have run.

A link is untrusted text, so every value is parsed defensively and never raises: each is cut
off at `MAX_VALUE_CHARS` before anything else, the settings JSON is refused above
`MAX_SETTINGS_CHARS` or `MAX_DEPTH` levels of nesting before it is parsed, numbers must be
finite and have at most `MAX_DIGITS` digits, out-of-range numbers are clamped to the
parameter's range, unknown names are dropped, and the target takes ASCII digits only. What was
ignored or changed is collected (`ignored()`), and the sidebar says so.
"""

from __future__ import annotations

import json
import math
from typing import Any

import streamlit as st

import engines
from dashboard import state

_RESTORED = "url.restored"
_IGNORED = "url.ignored"

MAX_VALUE_CHARS = 200
"""Longest value of a plain query parameter (model, sample, target, methods) that is read."""
MAX_SETTINGS_CHARS = 4000
"""Longest settings JSON that is parsed."""
MAX_DEPTH = 2
"""Deepest nesting of the settings JSON: {method: {setting: value}}."""
MAX_DIGITS = 18
"""Most digits a number in a link may have."""
MAX_METHODS = 40
"""Most method names read from a link."""
_KNOWN = {"model", "sample", "target", "methods", "settings", "embed", "embed_options"}


class _Refused:
    """A number in the settings JSON that was refused while parsing (too long, not finite)."""

    def __init__(self, text: str):
        self.text = text if len(text) <= 24 else f"a number of {len(text)} characters"


def restore() -> None:
    """Seeds session state from the query string, once per session; records what it ignored."""
    if st.session_state.get(_RESTORED):
        return
    st.session_state[_RESTORED] = True
    notes: list[str] = []
    query = {key: _text(st.query_params.get(key)) for key in list(st.query_params)}
    for key in sorted(set(query) - _KNOWN):
        notes.append(f"the unknown part “{_quoted(key)}”")
    if query.get("model"):
        if query["model"] in engines.catalogue():
            st.session_state[state.MODEL] = query["model"]
        else:
            notes.append(f"model “{_quoted(query['model'])}” (not in the catalogue)")
    if query.get("sample"):
        if query["sample"] in engines.sample_images():
            st.session_state[state.SAMPLE] = query["sample"]
        else:
            notes.append(f"sample “{_quoted(query['sample'])}” (no such sample image)")
    if query.get("target"):
        target = parse_target(query["target"])
        if target is None:
            notes.append(f"target “{_quoted(query['target'])}” (not a class number)")
        else:
            st.session_state[state.TARGET_PENDING] = target
    if "methods" in query:
        wanted, dropped = parse_methods(query["methods"])
        notes += [f"method “{_quoted(m)}” (unknown)" for m in dropped]
        for family in engines.method_families():
            st.session_state[f"{state.METHODS}.{family}"] = [m for m in wanted if engines.method_info(m).family == family]
    if "settings" in query:
        settings, more = parse_settings(st.query_params.get("settings"))
        notes += more
        _seed_settings(settings)
    st.session_state[_IGNORED] = notes


def ignored() -> list[str]:
    """What the link asked for that was ignored or changed, once: the list is emptied."""
    return st.session_state.pop(_IGNORED, None) or []


def note(text: str) -> None:
    """Records one more part of the link that could not be used (e.g. a target beyond the classes)."""
    st.session_state.setdefault(_IGNORED, []).append(text)


def _text(value: Any) -> str:
    """A query value as text, cut at `MAX_VALUE_CHARS` characters."""
    return str(value if value is not None else "")[:MAX_VALUE_CHARS]


def _quoted(text: str) -> str:
    """Text from a link, shortened and stripped of markup for a message."""
    text = "".join(c if c.isprintable() else "?" for c in str(text))[:40]
    return text.replace("*", "").replace("`", "").replace("[", "(").replace("]", ")").replace("$", "")


def parse_target(text: str) -> int | None:
    """A class index from ASCII digits only (no signs, no '²' or other scripts' digits), or None."""
    text = text.strip()
    if not text or not text.isascii() or not text.isdigit() or len(text) > 7:
        return None
    return int(text)


def parse_methods(text: str) -> tuple[list[str], list[str]]:
    """`(known, dropped)` method names from a comma-separated list, at most `MAX_METHODS`."""
    names = [n.strip() for n in text.split(",") if n.strip()][:MAX_METHODS]
    known = engines.methods()
    wanted = list(dict.fromkeys(n for n in names if n in known))
    return wanted, [n for n in names if n not in known]


def _depth(text: str) -> int:
    """The deepest nesting of brackets in JSON text, strings skipped, without parsing it."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _number(text: str) -> Any:
    digits = sum(c.isdigit() for c in text)
    if digits > MAX_DIGITS:
        return _Refused(text)
    value = float(text) if any(c in text for c in ".eE") else int(text)
    return value if math.isfinite(value) else _Refused(text)


def parse_settings(text: Any) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """`(settings, notes)`: the checked settings per method from the link's JSON, and what was
    ignored or clamped, in words. Never raises."""
    if text is None or text == "":
        return {}, []
    text = str(text)
    if len(text) > MAX_SETTINGS_CHARS:
        return {}, [f"the settings (over {MAX_SETTINGS_CHARS} characters)"]
    if _depth(text) > MAX_DEPTH:
        return {}, [f"the settings (nested deeper than {MAX_DEPTH} levels)"]
    try:
        given = json.loads(text, parse_int=_number, parse_float=_number, parse_constant=_Refused)
    except (ValueError, RecursionError):
        return {}, ["the settings (not valid JSON)"]
    if not isinstance(given, dict):
        return {}, ["the settings (not a JSON object of methods)"]
    settings: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    for method, values in given.items():
        if method not in engines.methods() or not isinstance(values, dict):
            notes.append(f"settings for “{_quoted(method)}” (unknown method)")
            continue
        params = {p.name: p for p in engines.method_info(method).params}
        for name, value in values.items():
            if name not in params:
                notes.append(f"setting {_quoted(method)}.{_quoted(name)} (unknown)")
                continue
            checked, why = _checked(params[name], value)
            if why:
                notes.append(f"setting {_quoted(method)}.{_quoted(name)} ({why})")
            if checked is not _DROP:
                settings.setdefault(method, {})[name] = checked
    return settings, notes


_DROP = object()


def _checked(param: Any, value: Any) -> tuple[Any, str]:
    """`(value, note)`: a setting from a link checked against its parameter: clamped to its range
    when it is a number outside it, `_DROP` when it cannot be used."""
    if isinstance(value, _Refused):
        return _DROP, f"{value.text} is not a finite number of at most {MAX_DIGITS} digits"
    if param.kind in ("int", "float") and isinstance(value, (int, float)) and not isinstance(value, bool):
        low = -math.inf if param.low is None else param.low
        high = math.inf if param.high is None else param.high
        clamped = min(max(value, low), high)
        if param.kind == "int" and isinstance(clamped, float) and clamped.is_integer():
            clamped = int(clamped)
        try:
            result = param.check(clamped)
        except ValueError as error:
            return _DROP, str(error)[:120]
        return result, "" if clamped == value else f"{value:g} clamped to {result:g}"
    try:
        return param.check(value), ""
    except ValueError as error:
        return _DROP, str(error)[:120]


def _seed_settings(settings: dict[str, dict[str, Any]]) -> None:
    for method, values in settings.items():
        params = {p.name: p for p in engines.method_info(method).params}
        for name, value in values.items():
            key = state.setting_key(method, name)
            if params[name].optional:
                st.session_state[key + ".none"] = value is None
            if value is not None:
                st.session_state[key] = value


def publish(model: str, sample: str, target: int, methods: list[str], settings: dict[str, dict]) -> None:
    """Writes the view into the URL: only settings that differ from the registry's defaults."""
    changed = {
        m: {k: v for k, v in s.items() if v != engines.method_info(m).defaults().get(k)} for m, s in settings.items()
    }
    changed = {m: s for m, s in changed.items() if s}
    view = {"model": model, "sample": sample, "target": str(target), "methods": ",".join(methods)}
    if changed:
        view["settings"] = json.dumps(changed, separators=(",", ":"), sort_keys=True)
    if dict(st.query_params) != view:
        st.query_params.from_dict(view)
