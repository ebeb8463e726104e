"""certbot's ``ClientNetwork`` with provision's retry policy, request by request.

``acme`` retries a POST refused for a bad nonce once; Pebble refuses a share of nonces on
purpose, and a long order (polling while the CA validates) makes many requests, so each
request here is retried a few more times. A CA that is busy or limits this account (429
``rateLimited``, 503) is asked again after its ``Retry-After`` (RFC 8555 6.6), a bounded
number of times and only when the wait is short; a longer one fails the host, naming when
the CA said to come back. The JWS and nonces stay ``acme``'s own.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import time
from collections.abc import Callable
from typing import Any

import requests
from acme import client, errors, messages

NONCE_TRIES = 8
BUSY_TRIES = 3
LONGEST_WAIT = 60.0  # seconds; a longer Retry-After fails the host for a later run
_DEFAULT_WAIT = 5.0  # when a busy answer names no Retry-After
_BUSY = (429, 503)


class RetryLater(Exception):
    """The CA asked to be asked again later than this run will wait."""

    def __init__(self, problem: str, when: dt.datetime | None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.when = when


class Network(client.ClientNetwork):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._busy: requests.Response | None = None  # the last 429/503 answer
        self.sleep: Callable[[float], None] = time.sleep

    def _send_request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        response = super()._send_request(method, url, *args, **kwargs)
        self._busy = response if response.status_code in _BUSY else None
        return response

    def post(self, *args: Any, **kwargs: Any) -> requests.Response:
        return self._retrying(lambda: super(Network, self).post(*args, **kwargs))

    def get(self, *args: Any, **kwargs: Any) -> requests.Response:
        return self._retrying(lambda: super(Network, self).get(*args, **kwargs))

    def _retrying(self, call: Callable[[], requests.Response]) -> requests.Response:
        nonces = busy = 0
        while True:
            self._busy = None
            try:
                return call()
            except messages.Error as error:
                if error.code == "badNonce" and nonces < NONCE_TRIES:
                    nonces += 1
                    continue
                if self._busy is None:
                    raise
                words = f"{error.typ}: {error.detail or error.title or ''}".strip()
            except errors.ClientError:
                if self._busy is None:
                    raise
                words = f"HTTP {self._busy.status_code} {self._busy.reason}"
            wait, when = _retry_after(self._busy)
            if busy >= BUSY_TRIES or wait > LONGEST_WAIT:
                raise RetryLater(words, when) from None
            busy += 1
            self.sleep(wait)


def _retry_after(response: requests.Response) -> tuple[float, dt.datetime | None]:
    """Seconds to wait and the moment, from ``Retry-After`` (seconds or an HTTP date)."""
    now = dt.datetime.now(dt.UTC)
    value = response.headers.get("Retry-After", "").strip()
    if value.isdigit():
        seconds = float(value)
        return seconds, now + dt.timedelta(seconds=seconds)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return _DEFAULT_WAIT, None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - now).total_seconds()), when
