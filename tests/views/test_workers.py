"""The job runner: work off the GUI thread, results and errors back on it."""

from __future__ import annotations

import threading

import pytest
from PySide6.QtWidgets import QWidget

from app.errors import ValidationError
from views.workers import ImmediateExecutor, JobRunner, run_and_wait


def test_immediate_executor_delivers_synchronously():
    runner = JobRunner(ImmediateExecutor())
    got, errors = [], []
    runner.submit(lambda a, b: a + b, 2, 3, on_result=got.append, on_error=errors.append)
    assert got == [5] and errors == []
    runner.submit(lambda: (_ for _ in ()).throw(ValidationError("nope")), on_result=got.append, on_error=errors.append)
    assert isinstance(errors[0], ValidationError)
    assert not runner.is_busy()


def test_pool_runs_off_the_gui_thread_and_reports_on_it(qtbot):
    runner = JobRunner()
    work_thread, callback_thread, got = [], [], []

    def work():
        work_thread.append(threading.current_thread())
        return 42

    def done(value):
        callback_thread.append(threading.current_thread())
        got.append(value)

    with qtbot.waitSignal(runner.job_finished, timeout=5000):
        runner.submit(work, on_result=done)
    assert got == [42]
    assert work_thread[0] is not threading.main_thread()
    assert callback_thread[0] is threading.main_thread()
    runner.shutdown()


def test_errors_come_back_as_exceptions(qtbot):
    runner = JobRunner()
    errors = []

    def bad():
        raise ValidationError("Type at least two characters.")

    with qtbot.waitSignal(runner.job_failed, timeout=5000) as blocker:
        runner.submit(bad, on_error=errors.append)
    assert isinstance(errors[0], ValidationError)
    assert blocker.args[1] is errors[0]
    runner.shutdown()


def test_callbacks_of_a_deleted_owner_are_dropped(qtbot):
    runner = JobRunner(ImmediateExecutor())
    owner = QWidget()
    import shiboken6

    shiboken6.delete(owner)
    got = []
    runner.submit(lambda: 1, on_result=got.append, owner=owner)
    assert got == []


def test_busy_changed(qtbot):
    runner = JobRunner(ImmediateExecutor())
    states = []
    runner.busy_changed.connect(states.append)
    runner.submit(lambda: None)
    assert states == [True, False]


@pytest.mark.allow_log_warnings
def test_a_bug_is_logged_with_its_type(qtbot, caplog):
    runner = JobRunner(ImmediateExecutor())
    errors = []
    runner.submit(lambda: 1 / 0, on_error=errors.append, name="divide")
    assert isinstance(errors[0], ZeroDivisionError)
    assert any("unexpected error in background job" in r.getMessage() for r in caplog.records)


def test_run_and_wait(qtbot):
    runner = JobRunner()
    assert run_and_wait(runner, lambda: threading.current_thread() is threading.main_thread()) is False
    with pytest.raises(ValidationError):
        run_and_wait(runner, lambda: (_ for _ in ()).throw(ValidationError("x")))
    runner.shutdown()
