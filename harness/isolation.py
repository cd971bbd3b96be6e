"""Run a case in a fresh worker process (honest peak RSS, killable on timeout) or in-process."""

from __future__ import annotations

import multiprocessing
import signal
import threading
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

from harness.case import Record
from harness.worker import CaseSpec, run_case

_PRELOAD = ["torch", "harness.worker"]


def _context() -> multiprocessing.context.BaseContext:
    """forkserver with torch preloaded: each case gets a fresh process without paying torch's import."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    return ctx


def _worker_main(fn: Callable[..., Any], args: tuple, conn: multiprocessing.connection.Connection) -> None:
    try:
        conn.send(fn(*args))
    finally:
        conn.close()


def call_in_worker(fn: Callable[..., Any], args: tuple, timeout_s: float) -> tuple[str, Any]:
    """fn(*args) in a fresh process: ("ok", value), or (status, one-line reason) when it timed out or died."""
    ctx = _context()
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_worker_main, args=(fn, args, send), daemon=True)
    proc.start()
    send.close()
    try:
        if receive.poll(timeout_s):
            return "ok", receive.recv()
        return "timeout", f"killed after {timeout_s:.1f} s"
    except EOFError:
        proc.join(timeout=10)
        return _death(proc.exitcode)
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(timeout=10)
        receive.close()


def _run_case_json(spec: CaseSpec) -> dict:
    return run_case(spec).to_json()


def run_in_process(spec: CaseSpec) -> Record:
    """The parent enforces the timeout by killing the worker; a worker that dies says how."""
    grace = min(5.0, 1.0 + 0.25 * spec.settings.timeout_s)  # the worker's own deadline usually fires first
    status, value = call_in_worker(_run_case_json, (spec,), spec.settings.timeout_s + grace)
    if status == "ok":
        return Record(**value)
    if status == "timeout":
        value = f"killed after timeout_s={spec.settings.timeout_s} (+{grace:.1f} s grace)"
    return Record.for_case(spec.run, spec.case, status, error=value)


def _death(exitcode: int | None) -> tuple[str, str]:
    if exitcode == -signal.SIGKILL:
        return "oom", "worker killed by SIGKILL (most likely the kernel's out-of-memory killer)"
    if exitcode is not None and exitcode < 0:
        return "failed", f"worker died from signal {signal.Signals(-exitcode).name}"
    return "failed", f"worker exited with code {exitcode} before reporting a result"


def run_inline(spec: CaseSpec) -> Record:
    """In-process: no isolation of memory; the timeout interrupts Python code via SIGALRM (main thread only)."""
    with _alarm(spec.settings.timeout_s):
        return run_case(spec)


@contextmanager
def _alarm(seconds: float):
    if threading.current_thread() is not threading.main_thread():
        yield  # the worker's own deadline checks still apply
        return

    def on_alarm(signum, frame):
        from harness.collectors.timing import CaseTimeout

        raise CaseTimeout(f"SIGALRM after {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def execute(spec: CaseSpec) -> Record:
    """Run one case: a distributed workload as one process per rank, else isolated or inline per the suite."""
    from harness.registry import REGISTRY

    workload = REGISTRY.load(spec.plugins).workloads.get(spec.case.workload)
    if workload is not None and workload.distributed:
        from harness.distributed import run_ranks

        return run_ranks(spec, workload.ranks(spec.case.param_dict()))
    return run_in_process(spec) if spec.settings.isolation == "process" else run_inline(spec)
