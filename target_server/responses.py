"""How the app answers: a fixed body or a JSON object, with Retry-After when the client should wait, and
every error as one JSON line (`{"error": "..."}`), so no endpoint ever answers with an HTML page."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify


def raw_response(status: int, body: bytes, retry_after: int | None = None) -> Response:
    """A prepared JSON body (the hot path's constants), without serialising anything."""
    response = Response(body, status=status, mimetype="application/json")
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def json_response(status: int, data: dict[str, Any], retry_after: int | None = None) -> Response:
    response = jsonify(data)
    response.status_code = status
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def error_response(message: str) -> Response:
    """The one-line error body; the caller pairs it with the status."""
    return jsonify(error=message)
