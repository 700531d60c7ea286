"""One-off jobs off the GUI thread, with the result or the exception handed back on it.

Shaped like Picard's ``picard/util/thread.py``: a callable runs on a ``QThreadPool`` worker and
its outcome travels back to the GUI thread, where the caller's callbacks run. The hand-back is a
signal of a ``JobRunner`` that lives on the GUI thread, received by its own slot (a queued
connection), so callbacks never run on a worker and never touch a widget from one.

The executor is injectable: tests pass :class:`ImmediateExecutor` and every job runs to the end,
callbacks included, inside ``submit`` (Picard's ``FakeThreadPool``).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot

from app.errors import KnownError
from app.logs import Safe

logger = logging.getLogger(__name__)

ResultCallback = Callable[[Any], None]
ErrorCallback = Callable[[BaseException], None]


class Executor(Protocol):
    """Where a job's body runs. ``start`` must not block the GUI thread for long."""

    def start(self, task: Callable[[], None]) -> None: ...

    def wait_for_done(self, msecs: int = -1) -> bool: ...


class _Task(QRunnable):
    def __init__(self, task: Callable[[], None]) -> None:
        super().__init__()
        self._task = task
        self.setAutoDelete(True)

    def run(self) -> None:
        self._task()


class PoolExecutor:
    """Runs tasks on a private ``QThreadPool`` (not the global one, so shutdown can wait for it)."""

    def __init__(self, max_threads: int = 4) -> None:
        self.pool = QThreadPool()
        self.pool.setMaxThreadCount(max_threads)

    def start(self, task: Callable[[], None]) -> None:
        self.pool.start(_Task(task))

    def wait_for_done(self, msecs: int = -1) -> bool:
        return self.pool.waitForDone(msecs)


class ImmediateExecutor:
    """Runs each task at once on the calling thread: for unit tests and screenshots."""

    def start(self, task: Callable[[], None]) -> None:
        task()

    def wait_for_done(self, msecs: int = -1) -> bool:
        return True


@dataclass
class _Pending:
    name: str
    on_result: ResultCallback | None
    on_error: ErrorCallback | None
    owner: QObject | None


def _owner_alive(owner: QObject | None) -> bool:
    if owner is None:
        return True
    try:
        import shiboken6

        return shiboken6.isValid(owner)
    except ImportError:  # pragma: no cover - shiboken6 ships with PySide6
        return True


class JobRunner(QObject):
    """Runs callables off the GUI thread and reports back on it.

    Callbacks run on the thread the runner lives on (the GUI thread). A job whose ``owner`` was
    deleted before it finished is dropped quietly: its widget is gone.

    Signals:
        job_finished(int, object): a job's id and its result.
        job_failed(int, object): a job's id and the exception it raised.
        busy_changed(bool): True when the first job starts, False when the last one ends.
    """

    job_finished = Signal(int, object)
    job_failed = Signal(int, object)
    busy_changed = Signal(bool)
    # Emitted from the worker; the runner's own slot receives it on the runner's thread.
    _done = Signal(int, bool, object)

    def __init__(self, executor: Executor | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._executor: Executor = executor if executor is not None else PoolExecutor()
        self._pending: dict[int, _Pending] = {}
        self._ids = itertools.count(1)
        self._done.connect(self._deliver)

    @property
    def executor(self) -> Executor:
        return self._executor

    def submit(
        self,
        fn: Callable[..., Any],
        *args: Any,
        on_result: ResultCallback | None = None,
        on_error: ErrorCallback | None = None,
        owner: QObject | None = None,
        name: str = "",
    ) -> int:
        """Run ``fn(*args)`` on a worker; return the job id.

        Args:
            fn: the work. It must not touch widgets or Qt models attached to views.
            args: positional arguments for ``fn``.
            on_result: called on the GUI thread with the return value.
            on_error: called on the GUI thread with the exception. Either way a KnownError is
                logged at info level (type only) and anything else as an error with its frames.
            owner: a QObject whose deletion cancels the callbacks (usually the calling widget).
            name: a PHI-free label for the log.
        """
        job_id = next(self._ids)
        self._pending[job_id] = _Pending(name or getattr(fn, "__name__", "job"), on_result, on_error, owner)
        if len(self._pending) == 1:
            self.busy_changed.emit(True)
        done = self._done

        def task() -> None:
            try:
                outcome: tuple[bool, object] = (True, fn(*args))
            except Exception as exc:  # handed to the caller on the GUI thread
                outcome = (False, exc)
            try:
                done.emit(job_id, *outcome)
            except RuntimeError:  # the runner was deleted while the job ran: nobody to tell
                pass

        self._executor.start(task)
        return job_id

    def active_count(self) -> int:
        return len(self._pending)

    def is_busy(self) -> bool:
        return bool(self._pending)

    def wait_for_done(self, msecs: int = -1) -> bool:
        """Block until the workers are idle (shutdown and tests); queued results still need events."""
        return self._executor.wait_for_done(msecs)

    def shutdown(self, msecs: int = 5000) -> None:
        """Stop delivering and wait for running jobs, so nothing outlives the objects it uses."""
        self._pending.clear()
        if not self._executor.wait_for_done(msecs):
            logger.warning("background jobs still running after %d ms at shutdown", msecs)

    @Slot(int, bool, object)
    def _deliver(self, job_id: int, ok: bool, payload: object) -> None:
        pending = self._pending.pop(job_id, None)
        if not self._pending:
            self.busy_changed.emit(False)
        if pending is None:
            return  # shut down meanwhile
        if ok:
            self.job_finished.emit(job_id, payload)
        else:
            self.job_failed.emit(job_id, payload)
        if not _owner_alive(pending.owner):
            logger.debug("job %d finished after its owner was deleted", job_id)
            return
        if ok:
            if pending.on_result is not None:
                pending.on_result(payload)
            return
        assert isinstance(payload, BaseException)
        if isinstance(payload, KnownError):
            logger.info("job %s ended with %s", Safe(pending.name), Safe(type(payload).__name__))
        else:
            # A bug, even when the caller shows a message: keep the frames (the filter drops messages).
            logger.error(
                "unexpected error in background job %s", Safe(pending.name),
                exc_info=(type(payload), payload, payload.__traceback__),
            )  # fmt: skip
        if pending.on_error is not None:
            pending.on_error(payload)


def run_and_wait(runner: JobRunner, fn: Callable[..., Any], *args: Any, name: str = "") -> Any:
    """Run ``fn(*args)`` on ``runner`` and wait for it while the GUI keeps processing events.

    For start-up and tools, before there is a window to hand a result to. Returns the result, or
    raises the job's exception on the calling (GUI) thread.
    """
    from PySide6.QtCore import QEventLoop

    loop = QEventLoop()
    outcome: dict[str, Any] = {}

    def finish(key: str, value: Any) -> None:
        outcome[key] = value
        loop.quit()

    runner.submit(
        fn, *args, on_result=lambda r: finish("result", r), on_error=lambda e: finish("error", e),
        name=name or getattr(fn, "__name__", "job"),
    )  # fmt: skip
    wait_for(runner, loop, outcome)
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("result")


def wait_for(runner: JobRunner, loop: Any, outcome: dict[str, Any]) -> None:
    """Spin ``loop`` until ``outcome`` is filled in by a job's callback.

    While the application is quitting, ``QEventLoop.exec`` returns at once: then wait for the
    workers and deliver their queued results directly.
    """
    from PySide6.QtCore import QCoreApplication

    while not outcome:  # an ImmediateExecutor has already finished
        if loop.exec() != 0 and not outcome:
            runner.wait_for_done(-1)
            QCoreApplication.sendPostedEvents()
            if not outcome:
                raise RuntimeError("background job did not report back")
