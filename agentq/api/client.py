"""A small client of the running daemon's API, for ``agentq status``, ``swap`` and ``reload``.

Standard library only (``http.client``): the commands that use it must start fast.
:func:`discover` finds the API of the daemon that runs with a configuration: the
address it actually listens on is in its ``state.json``, the token in the token file.
"""

from __future__ import annotations

import http.client
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DEFAULT_TIMEOUT = 10.0


class ApiUnavailable(Exception):
    """The API could not be reached (the daemon stopped, or serves no API)."""


@dataclass(frozen=True)
class SseEvent:
    """One message of an event stream."""

    event: str
    data: Any
    id: str | None


class ApiClient:
    """Requests to one API base URL, with the bearer token when there is one."""

    def __init__(self, url: str, token: str | None, timeout: float = DEFAULT_TIMEOUT) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname or parts.port is None:
            raise ValueError(f"not an http://host:port URL: {url!r}")
        self.url = url
        self._host, self._port = parts.hostname, parts.port
        self._token = token
        self._timeout = timeout

    def _connection(self, timeout: float | None) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json", **(extra or {})}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def request(self, method: str, path: str, doc: Any = None) -> tuple[int, dict[str, Any]]:
        """One JSON request; returns the status and the decoded body.

        Raises:
            ApiUnavailable: no connection, or an answer that is not JSON.
        """
        body = None if doc is None else json.dumps(doc).encode()
        headers = self._headers({"Content-Type": "application/json"} if body else None)
        conn = self._connection(self._timeout)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise ApiUnavailable(f"cannot reach the API at {self.url}: {exc}") from exc
        finally:
            conn.close()
        try:
            decoded = json.loads(raw)
        except ValueError as exc:
            raise ApiUnavailable(f"the API at {self.url} answered {response.status}") from exc
        return response.status, decoded if isinstance(decoded, dict) else {"value": decoded}

    def get(self, path: str) -> dict[str, Any]:
        """GET a JSON document.

        Raises:
            ApiUnavailable: as :meth:`request`, or any status but 200.
        """
        status, doc = self.request("GET", path)
        if status != 200:
            raise ApiUnavailable(f"GET {path}: {status} {doc.get('message', '')}".rstrip())
        return doc

    def events(self, last_id: str | None = None, timeout: float = 60.0) -> Iterator[SseEvent]:
        """Follow ``/api/events`` until the stream ends (``timeout``: the longest silence).

        Raises:
            ApiUnavailable: the stream cannot be opened or breaks.
        """
        headers = self._headers({"Accept": "text/event-stream"})
        if last_id:
            headers["Last-Event-ID"] = last_id
        conn = self._connection(timeout)
        try:
            conn.request("GET", "/api/events", headers=headers)
            response = conn.getresponse()
            if response.status != 200:
                raise ApiUnavailable(f"the event stream answered {response.status}")
            yield from _parse_stream(response)
        except (OSError, http.client.HTTPException) as exc:
            raise ApiUnavailable(f"the event stream broke: {exc}") from exc
        finally:
            conn.close()


def _parse_stream(response: http.client.HTTPResponse) -> Iterator[SseEvent]:
    event, event_id = "message", None
    data: list[str] = []
    while True:
        raw = response.readline()
        if not raw:
            return
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if data:
                yield SseEvent(event, json.loads("\n".join(data)), event_id)
            event, data = "message", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)
        elif field == "id":
            event_id = value


def discover(
    state_dir: Path, token_file: Path, timeout: float = DEFAULT_TIMEOUT
) -> ApiClient | None:
    """The API of the daemon whose state is in ``state_dir``; None when it serves none.

    The caller checks first that the daemon runs (its lock is held).
    """
    try:
        state = json.loads((state_dir / "state.json").read_bytes())
        url = state["api"]["url"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(url, str) or not url:
        return None
    return ApiClient(url, read_token(token_file), timeout)


def read_token(path: Path) -> str | None:
    """The token, when this user may read the file; None otherwise (read-only access)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(fd, 4096).decode("utf-8", "replace").strip() or None
    finally:
        os.close(fd)
