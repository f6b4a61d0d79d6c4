"""The client the operator uses to ask the recommender, with timeouts and plain errors."""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from typing import Any


class RecommenderUnavailable(Exception):
    """The recommender did not answer in time, or answered with a server error."""


class RecommenderRefused(Exception):
    """The recommender answered 4xx: the request itself is wrong (the message says why)."""


class RecommenderClient:
    def __init__(self, base_url: str, timeout_s: float = 2.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"} if data is not None else {},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            message = exc.read().decode(errors="replace")
            with contextlib.suppress(ValueError, KeyError, TypeError):
                message = json.loads(message)["error"]
            if 400 <= exc.code < 500:
                raise RecommenderRefused(f"{exc.code}: {message}") from None
            raise RecommenderUnavailable(f"{self.base_url}: {exc.code}: {message}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RecommenderUnavailable(f"{self.base_url} is unreachable: {reason}") from None

    def recommend(self, job: dict[str, Any], candidates: list[dict[str, Any]]) -> dict[str, Any]:
        answer: dict[str, Any] = self._call(
            "POST", "/v1/recommend", {"job": job, "candidates": candidates}
        )
        return answer

    def model(self) -> dict[str, Any]:
        answer: dict[str, Any] = self._call("GET", "/v1/model")
        return answer
