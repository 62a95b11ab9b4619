"""One way to wait in the real-process tests: poll the real condition until a deadline derived from the
settings it depends on, and on timeout raise with the state that explains it.

Usage::

    poll(lambda: server.accepts_connections(), deadline=startup_seconds, what="PostgreSQL to accept connections",
         state=lambda: server.log_tail())

``check`` returns something truthy when the condition holds (that value is returned). An exception of a type
in ``retry_on`` counts as "not yet" (a member still starting answers with a refused connection) and is shown
in the timeout message. ``state`` is called only on timeout; its text (member lists, log tails, pool
listings) goes into the error so a failure in CI can be diagnosed from its log alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """A condition did not hold by its deadline; the message carries the diagnostic state."""


def poll(
    check: Callable[[], T | None | bool],
    *,
    deadline: float,
    what: str,
    state: Callable[[], str] | None = None,
    interval: float = 0.1,
    retry_on: tuple[type[BaseException], ...] = (),
    error: type[Exception] = WaitTimeout,
) -> T:
    """Call ``check`` every ``interval`` seconds until it returns something truthy, for at most ``deadline``
    seconds; then raise ``error`` naming ``what``, the last retried exception and ``state()``."""
    end = time.monotonic() + deadline
    last: BaseException | None = None
    while True:
        try:
            value = check()
            if value:
                return value  # type: ignore[return-value]
        except retry_on as caught:
            last = caught
        if time.monotonic() > end:
            raise error(timeout_message(what, deadline, last, state))
        time.sleep(interval)


def timeout_message(what: str, deadline: float, last: BaseException | None = None,
                    state: Callable[[], str] | None = None) -> str:
    """``<what> within <deadline>s``, the last error and the diagnostic state (a failing ``state`` is reported,
    never masks the timeout)."""
    message = f"{what} within {deadline:.0f}s"
    if last is not None:
        message += f" (last error: {last})"
    if state is not None:
        try:
            message += "\n" + state()
        except Exception as failed:  # noqa: BLE001 - the diagnostics must not hide the timeout itself
            message += f"\n(could not collect the state: {failed!r})"
    return message


def poll_steady(value: Callable[[], T], *, steady_for: float, deadline: float, what: str,
                interval: float = 0.05) -> T:
    """Wait until ``value()`` has not changed for ``steady_for`` seconds (a producer that stopped, a counter that
    settled) and return it; after ``deadline`` seconds raise naming ``what`` and the last value seen."""
    end = time.monotonic() + deadline
    last, since = value(), time.monotonic()
    while time.monotonic() - since < steady_for:
        if time.monotonic() > end:
            raise WaitTimeout(timeout_message(what, deadline, state=lambda: f"still changing, last value {last!r}"))
        time.sleep(interval)
        current = value()
        if current != last:
            last, since = current, time.monotonic()
    return last
