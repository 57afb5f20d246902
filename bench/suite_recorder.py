"""Record each test's outcome of a driver's own test suite, one JSON line per event, as it runs.

Loaded into the suite's own process by `bench.driver_suites`: as a pytest plugin
(`-p bench.suite_recorder`) for suites pytest runs, or as the runner of a unittest-based suite
(`python -m bench.suite_recorder OUT TIMEOUT SCRIPT ARGS...`, for Connector/Python's
unittests.py). Lines are written and flushed as tests start and end, so a suite killed by the
bench's timeout still tells which tests ended how, and which one was running.

    {"test": "<id>", "started": true}
    {"test": "<id>", "outcome": "passed|failed|error|skipped", "message": "...", "seconds": 0.012}
"""

from __future__ import annotations

import json
import os
import runpy
import signal
import sys
import time
import unittest
from collections.abc import Callable
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

RESULTS_ENV = "DRIVER_SUITE_RESULTS"
MESSAGE_CHARS = 400

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]


def _write(record: dict[str, Any]) -> None:
    path = os.environ.get(RESULTS_ENV)
    if not path:
        return
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(record) + "\n")


def _message(text: str) -> str:
    """The last non-empty line of a failure (the exception), cut to a readable length."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return (lines[-1] if lines else "")[:MESSAGE_CHARS]


# ---- pytest ----------------------------------------------------------------------------------


def _report_message(report: Any) -> str:
    """A pytest report's reason: the exception of a failure, the reason of a skip."""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # a skip: (path, line, reason)
        return str(longrepr[2]).removeprefix("Skipped: ")[:MESSAGE_CHARS]
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None:
        return str(crash.message).strip().split("\n", 1)[0][:MESSAGE_CHARS]
    return _message(str(report.longreprtext))


_pytest_outcomes: dict[str, tuple[str, str]] = {}
_pytest_seconds: dict[str, float] = {}


def pytest_runtest_logstart(nodeid: str, location: object) -> None:
    _write({"test": nodeid, "started": True})


def pytest_runtest_logreport(report: Any) -> None:
    nodeid: str = report.nodeid
    outcome, message = _pytest_outcomes.get(nodeid, ("passed", ""))
    if report.when == "setup":
        if report.failed:
            outcome, message = "error", _report_message(report)
        elif report.skipped:
            outcome, message = "skipped", _report_message(report)
    elif report.when == "call":
        if hasattr(report, "wasxfail"):
            outcome, message = "skipped", "xfail: " + str(report.wasxfail)
        elif report.failed:
            outcome, message = "failed", _report_message(report)
        elif report.skipped:
            outcome, message = "skipped", _report_message(report)
    elif report.failed and outcome == "passed":  # teardown
        outcome, message = "error", _report_message(report)
    _pytest_outcomes[nodeid] = (outcome, message)
    _pytest_seconds[nodeid] = _pytest_seconds.get(nodeid, 0.0) + float(report.duration)
    if report.when == "teardown":
        del _pytest_outcomes[nodeid]
        seconds = round(_pytest_seconds.pop(nodeid), 3)
        _write({"test": nodeid, "outcome": outcome, "message": message, "seconds": seconds})


# ---- unittest --------------------------------------------------------------------------------


class TestTimedOut(Exception):
    pass


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise TestTimedOut("the test ran past the bench's per-test timeout")


class RecordingMixin:
    """Mixed into a suite runner's TestResult class: records each test, and interrupts a test
    running longer than `timeout` seconds (SIGALRM, so a blocking socket read is interrupted).

    A test is recorded under the id it had when it started (a suite may rename it while it runs)."""

    timeout = 60
    _current: unittest.TestCase | None = None
    _current_id = ""
    _current_outcome: tuple[str, str] = ("passed", "")
    _current_start = 0.0

    def startTest(self, test: unittest.TestCase) -> None:
        self._current, self._current_id, self._current_outcome = test, test.id(), ("passed", "")
        self._current_start = time.monotonic()
        _write({"test": self._current_id, "started": True})
        signal.signal(signal.SIGALRM, _on_alarm)
        signal.alarm(self.timeout)
        super().startTest(test)  # type: ignore[misc]

    def stopTest(self, test: unittest.TestCase) -> None:
        signal.alarm(0)
        if test is self._current:
            outcome, message = self._current_outcome
            seconds = round(time.monotonic() - self._current_start, 3)
            _write({"test": self._current_id, "outcome": outcome, "message": message, "seconds": seconds})
            self._current = None
        super().stopTest(test)  # type: ignore[misc]

    def _note(self, test: unittest.TestCase, outcome: str, message: str) -> None:
        if test is not self._current:  # an error outside any test (setUpClass): its own record
            _write({"test": test.id(), "outcome": outcome, "message": message})
        elif self._current_outcome[0] == "passed":  # the first failure of a test is its outcome
            self._current_outcome = (outcome, message)

    def _text(self, test: unittest.TestCase, err: ExcInfo) -> str:
        """The exception's type and the first line of its message."""
        kind, value = err[0], err[1]
        if kind is None:
            return ""
        first = str(value).strip().split("\n", 1)[0]
        return f"{kind.__module__}.{kind.__qualname__}: {first}".removeprefix("builtins.")

    def addSuccess(self, test: unittest.TestCase) -> None:
        self._note(test, "passed", "")
        super().addSuccess(test)  # type: ignore[misc]

    def addFailure(self, test: unittest.TestCase, err: ExcInfo) -> None:
        self._note(test, "failed", self._text(test, err)[:MESSAGE_CHARS])
        super().addFailure(test, err)  # type: ignore[misc]

    def addError(self, test: unittest.TestCase, err: ExcInfo) -> None:
        self._note(test, "error", self._text(test, err)[:MESSAGE_CHARS])
        super().addError(test, err)  # type: ignore[misc]

    def addSkip(self, test: unittest.TestCase, reason: str) -> None:
        self._note(test, "skipped", reason[:MESSAGE_CHARS])
        super().addSkip(test, reason)  # type: ignore[misc]

    def addExpectedFailure(self, test: unittest.TestCase, err: ExcInfo) -> None:
        self._note(test, "skipped", "expected failure")
        super().addExpectedFailure(test, err)  # type: ignore[misc]

    def addUnexpectedSuccess(self, test: unittest.TestCase) -> None:
        self._note(test, "failed", "unexpected success")
        super().addUnexpectedSuccess(test)  # type: ignore[misc]

    def addSubTest(self, test: unittest.TestCase, subtest: unittest.TestCase, err: ExcInfo | None) -> None:
        if err is not None and err[0] is not None:
            failed = issubclass(err[0], test.failureException)
            self._note(test, "failed" if failed else "error", self._text(test, err)[:MESSAGE_CHARS])
        super().addSubTest(test, subtest, err)  # type: ignore[misc]


def _recording_runners(timeout: int) -> Callable[[], None]:
    """Make every unittest runner created from now on record through RecordingMixin; returns
    the function that undoes it."""
    original = unittest.TextTestRunner.__init__

    def init(self: unittest.TextTestRunner, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        base: Any = getattr(self, "resultclass", None) or unittest.TextTestResult
        if not issubclass(base, RecordingMixin):
            self.resultclass = type("Recording" + base.__name__, (RecordingMixin, base), {"timeout": timeout})

    unittest.TextTestRunner.__init__ = init  # type: ignore[method-assign]

    def undo() -> None:
        unittest.TextTestRunner.__init__ = original  # type: ignore[method-assign]

    return undo


def run_unittest_script(results: Path, timeout: int, script: Path, args: list[str]) -> int:
    """Run a suite's own runner script (its __main__), recording through its TestResult."""
    os.environ[RESULTS_ENV] = str(results)
    sys.argv = [str(script), *args]
    sys.path.insert(0, str(script.parent))
    undo = _recording_runners(timeout)
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    finally:
        undo()
    return 0


def main() -> int:
    if len(sys.argv) < 4:
        print("usage: python -m bench.suite_recorder RESULTS.jsonl TIMEOUT SCRIPT [ARGS...]", file=sys.stderr)
        return 2
    return run_unittest_script(Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]), sys.argv[4:])


if __name__ == "__main__":
    sys.exit(main())
