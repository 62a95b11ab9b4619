"""The validator server's failure handling: a hung or dead validator fails the call with its stderr, in bounded
time, and the next call starts a new one (stand-in validators: small Python programs)."""

from __future__ import annotations

import sys
import time

import pytest

from tests.crd_validation import _ValidatorProcess

ECHO = "import sys\nfor line in sys.stdin: print('{\"problems\": [], \"skipped\": []}', flush=True)"
HANG = "import sys, time\nprint('booting slowly', file=sys.stderr, flush=True)\ntime.sleep(60)"
DIE = "import sys\nprint('cannot load the schemas', file=sys.stderr, flush=True)\nsys.exit(3)"
NOISY = "import sys\nsys.stderr.write('x' * 1_000_000)\nsys.stderr.flush()\n" + ECHO


def _validator(program: str, timeout: float = 5.0) -> _ValidatorProcess:
    return _ValidatorProcess(command=(sys.executable, "-c", program), call_timeout=timeout)


def test_a_hung_validator_fails_the_call_in_time_with_its_stderr() -> None:
    validator = _validator(HANG, timeout=1.0)
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="no answer in time.*booting slowly"):
        validator.validate([{"kind": "PodMonitor"}])
    assert time.monotonic() - started < 10


def test_a_dead_validator_reports_its_exit_status_and_stderr_and_is_restarted() -> None:
    validator = _validator(DIE)
    with pytest.raises(RuntimeError, match="exit status 3.*cannot load the schemas"):
        validator.validate([{"kind": "PodMonitor"}])
    with pytest.raises(RuntimeError, match="exit status 3"):  # a new process, not the dead one's pipe
        validator.validate([{"kind": "PodMonitor"}])


def test_a_validator_writing_much_to_stderr_does_not_stall() -> None:
    validator = _validator(NOISY)
    for _ in range(3):
        assert validator.validate([{"kind": "PodMonitor"}]) == {"problems": [], "skipped": []}
