"""Walk every HTTP and websocket route and build a request path that reaches each one.

Used by the route inventory (docs/security.md T04) and the "members never reach the admin" tests.
A route is identified by ``namespace:name``, or by its full pattern when it has no name.
"""

from __future__ import annotations

from dataclasses import dataclass

try:  # Python 3.11 moved the regex parser; the old name still works with a warning.
    from re import _parser as sre_parse
except ImportError:  # pragma: no cover
    import sre_parse

from django.urls import URLPattern, URLResolver, get_resolver, resolve


@dataclass(frozen=True)
class Route:
    key: str  # "namespace:name", or the pattern for an unnamed route
    route: str  # the joined pattern, as Django's ResolverMatch.route spells it
    namespace: str
    path: str  # a concrete request path that resolves to this route


def _join(prefix: str, pattern: str) -> str:
    # The same joining ResolverMatch.route uses: a regex's leading "^" is dropped.
    return prefix + (pattern[1:] if pattern.startswith("^") else pattern)


# --- a concrete string for a regular expression --------------------------------------------

_CANDIDATES = "x0a1-_."


def _class_matches(items, char: str) -> bool:
    negate = bool(items) and str(items[0][0]) == "NEGATE"
    hit = False
    for op, arg in items:
        op = str(op)
        if op == "LITERAL":
            hit |= char == chr(arg)
        elif op == "RANGE":
            hit |= arg[0] <= ord(char) <= arg[1]
        elif op == "CATEGORY":
            category = str(arg)
            if "DIGIT" in category:
                hit |= char.isdigit() != ("NOT" in category)
            elif "WORD" in category:
                hit |= (char.isalnum() or char == "_") != ("NOT" in category)
            elif "SPACE" in category:
                hit |= char.isspace() != ("NOT" in category)
    return hit != negate


def _sample(parsed) -> str:
    out = []
    for op, arg in parsed:
        op = str(op)
        if op == "LITERAL":
            out.append(chr(arg))
        elif op == "NOT_LITERAL":
            out.append(next(c for c in _CANDIDATES if c != chr(arg)))
        elif op == "ANY":
            out.append("x")
        elif op == "IN":
            out.append(next(c for c in _CANDIDATES if _class_matches(arg, c)))
        elif op in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, high, sub = arg
            # One repetition where zero is allowed: "admin/(?P<url>.*)$" should not collapse
            # onto "admin/" and hit the index instead of the catch-all.
            out.append(_sample(sub) * (low or min(1, high)))
        elif op in ("SUBPATTERN", "ATOMIC_GROUP"):
            out.append(_sample(arg[-1]))
        elif op == "BRANCH":
            out.append(_sample(arg[1][0]))
        elif op in ("AT", "ASSERT", "ASSERT_NOT"):
            continue
        else:
            raise ValueError(f"cannot build a sample for regex op {op}")
    return "".join(out)


def sample_for_regex(regex: str) -> str:
    return _sample(sre_parse.parse(regex))


# --- HTTP -----------------------------------------------------------------------------------


def _walk(patterns, prefix_route="", prefix_path="", namespace=""):
    for entry in patterns:
        route = _join(prefix_route, str(entry.pattern))
        path = prefix_path + sample_for_regex(entry.pattern.regex.pattern)
        if isinstance(entry, URLResolver):
            inner = entry.namespace or ""
            yield from _walk(
                entry.url_patterns, route, path, f"{namespace}:{inner}" if namespace and inner else inner or namespace
            )
        elif isinstance(entry, URLPattern):
            key = f"{namespace}:{entry.name}" if namespace and entry.name else entry.name or route
            yield Route(key=key, route=route, namespace=namespace, path="/" + path)


def http_routes(sample_paths: dict[str, str] | None = None) -> list[Route]:
    """Every HTTP route with a sample path; raises if a sample does not reach its own route.

    ``sample_paths`` maps a route key to a hand-written path, for a pattern the generated
    sample cannot reach (a converter whose ``to_python`` rejects it, a shadowed pattern).
    """
    sample_paths = sample_paths or {}
    routes = [
        Route(item.key, item.route, item.namespace, sample_paths.get(item.key, item.path))
        for item in _walk(get_resolver().url_patterns)
    ]
    for item in routes:
        match = resolve(item.path)
        if match.route != item.route:
            raise AssertionError(
                f"The sample path {item.path!r} for route {item.route!r} reached {match.route!r}. "
                "Add an explicit sample for it in SAMPLE_PATHS in tests/config/test_route_inventory.py."
            )
    return routes


# --- websockets -----------------------------------------------------------------------------


def _walk_ws(patterns, prefix_route="", prefix_path=""):
    from channels.routing import URLRouter

    for entry in patterns:
        route = _join(prefix_route, str(entry.pattern))
        path = prefix_path + sample_for_regex(entry.pattern.regex.pattern)
        inner = getattr(entry, "callback", None)
        if isinstance(inner, URLRouter):
            yield from _walk_ws(inner.routes, route, path)
        elif isinstance(entry, URLResolver):
            yield from _walk_ws(entry.url_patterns, route, path)
        else:
            yield Route(key=route, route=route, namespace="", path="/" + path)


def websocket_routes() -> list[Route]:
    from chat.transport.routing import websocket_urlpatterns

    return list(_walk_ws(websocket_urlpatterns))


def unique(routes: list[Route]) -> list[Route]:
    """One route per key (several patterns can share a name)."""
    seen: dict[str, Route] = {}
    for item in routes:
        seen.setdefault(item.key, item)
    return list(seen.values())
