"""What the web UI's POST routes accept: the start form (`/swarm`) and the fault control's JSON body.

Locust's `/swarm` handler stores each form field on `parsed_options` without checking it: the host as
typed (`ftp://…`, `not a url`), and a field whose current value is None as a plain string, so a
list-valued option such as `--header` or `--abort-on` became text that the plugin later iterated one
character at a time. The fault control forwarded whatever JSON Flask parsed: NaN, 1e400 (as inf),
repeated keys, or nesting deep enough to exhaust the interpreter. Each of these is now a 4xx with one
line, before Locust or the target sees it. Plain functions of the request's data, so tests call them
directly as well as through Flask's test client.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

from locust_plugin.mix import parse_mix
from mitigations.guard import parse_condition
from mitigations.metrics_map import SeriesMap, check_url
from mitigations.request import parse_header
from target_server.numbers import JSONProblem, strict_json

MAX_FAULT_BODY = 64 * 1024  # as the target's /admin
MAX_HOST = 2000
FAULT_EXAMPLE = '{"kind": "outage", "duration_s": 10}'


class Form(Protocol):
    def items(self) -> Any: ...

    def getlist(self, key: str) -> list[str]: ...


def fault_body(data: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """(the body, None) for a strict JSON object of at most MAX_FAULT_BODY bytes, else (None, why not)."""
    if len(data) > MAX_FAULT_BODY:
        return None, f"the body is larger than {MAX_FAULT_BODY:,} bytes"
    try:
        body = strict_json(data)
    except JSONProblem as problem:
        return None, f"body: {problem}"
    if not isinstance(body, dict):
        return None, f"the body must be a JSON object like {FAULT_EXAMPLE}"
    return body, None


def host_problem(host: str) -> str | None:
    """None for an empty host (each class's own) or an http(s)://host[:port][/path] URL, else why not."""
    if host == "":
        return None
    if len(host) > MAX_HOST or any(not (" " < c < "\x7f") or c in "<>\"'`" for c in host):
        return f"host: {host[:60]!r} must be printable ASCII without spaces, quotes or < >"
    try:
        parts = urlsplit(host)
        port = parts.port
    except ValueError:
        return f"host: {host[:60]!r} has a port that is not from 1 to 65535"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"host: {host[:60]!r} is not an http:// or https:// URL like http://127.0.0.1:3000"
    if "@" in parts.netloc or parts.fragment or port == 0:
        return f"host: {host[:60]!r} must be scheme://host[:port][/path] (no user name, fragment or port 0)"
    return None


def _condition(text: str) -> object:
    return None if text.strip().lower() == "none" else parse_condition(text)


# Options that hold a list (action="append"): flag, parser of one item.
LIST_FIELDS: dict[str, tuple[str, Callable[[str], object]]] = {
    "header": ("--header", parse_header),
    "abort_on": ("--abort-on", _condition),
    "server_metric": ("--server-metric", SeriesMap.parse),
}
# Text options the form may change: flag, parser.
TEXT_FIELDS: dict[str, tuple[str, Callable[[str], object]]] = {
    "server_metrics": ("--server-metrics", check_url),
    "mix": ("--mix", parse_mix),
}


def list_field_problem(form: Form, key: str, current: object) -> str | None:
    """A list option from the form: Locust keeps it a list only when it already is one (it splits the
    text at commas, or takes every value of the field), and stores plain text otherwise."""
    flag, parse = LIST_FIELDS[key]
    values = [value for value in form.getlist(key) if value.strip()]
    if not values:
        return None
    if not isinstance(current, list):
        return f"{flag}: the start form cannot set it (give {flag} on the command line)"
    items = values[0].split(",") if "," in values[0] else values
    for item in items:
        try:
            parse(item)
        except ValueError as error:
            return f"{flag}: {str(error).removeprefix(flag + ' ')}"
    return None


def swarm_form_problem(form: Form, current: Mapping[str, object]) -> str | None:
    """The first field of a /swarm form that Locust would store unchecked and that is wrong, as one line
    (the Hammerlab ranged options are `web_ui.options_problem`'s). `current`: parsed_options as a dict."""
    for key, value in form.items():
        if key == "host":
            problem = host_problem(value)
        elif key in LIST_FIELDS:
            problem = list_field_problem(form, key, current.get(key))
        elif key in TEXT_FIELDS and value.strip():
            flag, parse = TEXT_FIELDS[key]
            try:
                parse(value)
                problem = None
            except ValueError as error:
                problem = f"{flag}: {str(error).removeprefix(flag + ' ')}"
        else:
            problem = None
        if problem:
            return problem
    return None
