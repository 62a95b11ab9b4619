"""Entry point: ``python3 -m components.reconciler.tsreconcile`` with the declaration in
``$TSRECONCILE_DESIRED`` (JSON). Exit 0 when the cluster matches (changed or not), 1 when it could not
be made to; the closing summary also goes to the container's termination message."""

from __future__ import annotations

import os
import sys

from .desired import DESIRED_ENV, Desired
from .report import Report
from .run import reconcile
from .sql import ReconcileError

TERMINATION_LOG = "/dev/termination-log"


def _termination_message(text: str) -> None:
    try:
        with open(TERMINATION_LOG, "w", encoding="utf-8") as handle:
            handle.write(text[:4000])
    except OSError:
        pass  # not in a container


def main() -> int:
    report = Report()
    try:
        reconcile(Desired.from_json(os.environ[DESIRED_ENV]), report)
    except (ReconcileError, OSError) as error:  # OSError: a Secret file not mounted
        _termination_message(report.summary(error=str(error)))
        return 1
    _termination_message(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
