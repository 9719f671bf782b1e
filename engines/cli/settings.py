"""`--set method.param=value` for the command-line tools (audit, bench): text to checked settings."""

from __future__ import annotations

from engines.core.registry import method_info


def parse_value(param, raw: str):
    """A `--set` value as the parameter's kind wants it; text that does not convert is returned
    as given, so the parameter's own check names it in its error."""
    text = raw.strip()
    if param.optional and text.lower() == "none":
        return None
    if param.kind in ("int", "float"):
        try:
            number = float(text)
        except ValueError:
            return text
        if param.kind == "float":
            return number
        return int(number) if number.is_integer() else text
    if param.kind == "bool":
        return {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}.get(text.lower(), text)
    return next((choice for choice in param.choices if str(choice) == text), text)


def given_settings(pairs: list[str], methods: list[str]) -> dict[str, dict]:
    """`--set method.param=value` pairs as {method: {param: value}}, only what was written,
    each value converted to its parameter's kind (not yet range-checked); ValueError for a pair
    that is malformed or names a method outside `methods`."""
    given: dict[str, dict] = {}
    for pair in pairs:
        key, equals, raw = pair.partition("=")
        method, dot, name = key.strip().partition(".")
        if not equals or not dot:
            raise ValueError(f"--set {pair!r}: write method.param=value, e.g. integrated_gradients.steps=8")
        if method not in methods:
            raise ValueError(f"--set {pair!r}: {method!r} is not among --methods ({', '.join(methods)})")
        params = {p.name: p for p in method_info(method).params}
        given.setdefault(method, {})[name] = parse_value(params[name], raw) if name in params else raw
    return given


def parse_settings(pairs: list[str], methods: list[str]) -> dict[str, dict]:
    """`--set method.param=value` pairs as {method: full checked settings} for every method;
    ValueError naming the pair and the parameter when one is wrong."""
    given = given_settings(pairs, methods)
    settings = {}
    for method in methods:
        try:
            settings[method] = method_info(method).settings(given.get(method))
        except ValueError as error:
            raise ValueError(f"--set {method}: {error}") from None
    return settings
