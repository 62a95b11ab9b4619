"""What a run did, as one JSON line per event on stdout plus a closing summary (``kubectl logs job/...``)."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Dict, List, Optional, TextIO


class Report:
    """Collects changes (things made true) and checks (things already true)."""

    def __init__(self, stream: Optional[TextIO] = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.started = time.monotonic()
        self.changes: List[Dict[str, Any]] = []
        self.checks: List[Dict[str, Any]] = []

    def _emit(self, event: Dict[str, Any]) -> None:
        stamped = {**event, "seconds": round(time.monotonic() - self.started, 1)}
        self.stream.write(json.dumps(stamped, sort_keys=True) + "\n")
        self.stream.flush()

    def change(self, kind: str, target: str, **details: Any) -> None:
        """Something was changed in the cluster."""
        event = {"event": "changed", "kind": kind, "target": target, **details}
        self.changes.append(event)
        self._emit(event)

    def unchanged(self, kind: str, target: str, **details: Any) -> None:
        """Something already matched the declaration."""
        event = {"event": "unchanged", "kind": kind, "target": target, **details}
        self.checks.append(event)
        self._emit(event)

    def info(self, message: str, **details: Any) -> None:
        self._emit({"event": "info", "message": message, **details})

    def summary(self, *, error: Optional[str] = None) -> str:
        """The closing line: what changed, or that nothing needed to (a no-op run says so)."""
        if error is not None:
            text = f"reconcile failed after {len(self.changes)} change(s): {error}"
        elif self.changes:
            kinds = sorted({c["kind"] for c in self.changes})
            text = f"reconciled: {len(self.changes)} change(s) ({', '.join(kinds)})"
        else:
            text = f"no changes: the cluster already matches the declaration ({len(self.checks)} checks)"
        self._emit({"event": "summary", "ok": error is None, "changes": len(self.changes), "message": text})
        return text
