"""Start N processes of a command on this machine with PyTorch's own launcher (torchrun's machinery).

`launch(nproc, command)` runs `command` (an argument list, as for subprocess) as `nproc` worker
processes under torch.distributed.elastic's agent, exactly as `torchrun --nproc-per-node N`
would: each finds RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT in its environment,
so `distributed.setup` joins the group. What is ours:

- loopback only: the rendezvous store listens on 127.0.0.1 (a port the OS picks, on a socket
  bound before the store takes it, so no other program can take it in between), and gloo
  (NCCL) talk over the loopback interface unless GLOO_SOCKET_IFNAME (NCCL_SOCKET_IFNAME) says
  otherwise. torchrun's stores listen on every interface.
- no restarts, and one exit code: 0, or the exit code of the first process that failed (128 + n
  for one killed by signal n); the others are stopped then. `limit` seconds: 124, all stopped.
- quiet: elastic's log lines and error tables are not printed (LOGLEVEL set keeps them), so an
  expected failure is the one line its process printed.
- each process gets its share of the cores' threads, as torchrun does.

Each worker is a fresh interpreter whose exit status the agent reads from the process, so a
worker may end with `distributed.run_worker` (os._exit after its exit handlers), which skips the
interpreter's teardown.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from types import FrameType
from typing import Any

from gradtwin import validate
from gradtwin.errors import UsageError

LOOPBACK = "127.0.0.1"
BACKEND = "gradtwin-loopback"
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
ELASTIC_SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT")  # the handlers elastic installs
QUIET_LOGGERS = ("torch.distributed.elastic", "torch.distributed.launcher")
TIMED_OUT = 124  # as `timeout` reports


class _TimedOut(BaseException):
    """Raised in the launcher at `limit`; a BaseException so that no `except Exception` in elastic swallows it."""


def launch(nproc: int, command: Sequence[str], *, grace: float = 10.0, limit: float | None = None) -> int:
    """Run `command` as `nproc` processes that form a group on 127.0.0.1; returns an exit code.

    0 when every process exits 0; else the exit code of the first process that failed (one
    killed by signal n: 128 + n), the others stopped at once (SIGTERM). With `limit` (seconds),
    processes still running then are stopped and the result is 124. `grace`: seconds between
    SIGTERM and SIGKILL when the launcher stops them (at `limit`, or on a signal to it); after a
    failure elastic itself allows 30 s (workers that keep Python's SIGTERM default stop at once).
    Run it on the main thread: the agent and `limit` use signal handlers.
    """
    validate.whole(nproc, "nproc")
    if not command:
        raise UsageError("launch needs a command to run")
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    _register_backend()
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=uuid.uuid4().hex,
        rdzv_backend=BACKEND,
        rdzv_endpoint=f"{LOOPBACK}:0",
        max_restarts=0,
        monitor_interval=0.05,
        logs_specs=DefaultLogsSpecs(log_dir=os.devnull),  # output goes to our stdout/stderr; no log folders
        local_addr=LOOPBACK,
        shutdown_timeout=max(1, math.ceil(grace)),
    )
    with ExitStack() as stack:
        stack.enter_context(_environment(nproc))
        stack.enter_context(_signal_handlers())
        if "LOGLEVEL" not in os.environ:
            stack.enter_context(_quiet())
        if limit is not None:
            stack.enter_context(_alarm(limit))
        try:
            elastic_launch(config, command[0])(*command[1:])
        except ChildFailedError as failed:
            _rank, first = failed.get_first_failure()
            return first.exitcode if first.exitcode > 0 else 128 - first.exitcode
        except _TimedOut:
            return TIMED_OUT
        except SignalException as stop:  # the launcher got SIGINT/SIGTERM: the agent stopped the workers
            return 128 + int(stop.sigval)
    return 0


def _create_rendezvous(params: Any) -> Any:
    """The rendezvous of this one node: elastic's static TCP rendezvous, its store on the loopback only."""
    from torch.distributed import TCPStore
    from torch.distributed.elastic.rendezvous.static_tcp_rendezvous import StaticTCPRendezvous

    class LoopbackRendezvous(StaticTCPRendezvous):
        def get_backend(self) -> str:
            return BACKEND

    timeout = int(params.config.get("timeout", 900))
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind((LOOPBACK, 0))
        listener.listen(128)
        port = int(listener.getsockname()[1])
    except BaseException:
        listener.close()
        raise
    fd = listener.detach()  # the store owns the socket now, and closes it
    try:
        store = TCPStore(
            LOOPBACK,
            port,
            1,
            True,
            timedelta(seconds=timeout),
            wait_for_workers=False,
            multi_tenant=True,
            master_listen_fd=fd,
        )
    except BaseException:
        os.close(fd)
        raise
    handler = LoopbackRendezvous(LOOPBACK, port, 0, 1, params.run_id, timeout)
    handler._store = store  # the store it would create itself, but bound to 127.0.0.1 only
    return handler


def _register_backend() -> None:
    from torch.distributed.elastic.rendezvous import rendezvous_handler_registry

    rendezvous_handler_registry.register(BACKEND, _create_rendezvous)  # idempotent for the same creator


def loopback_interface() -> str | None:
    """The name of the loopback network interface ("lo" on Linux), None if none is found."""
    try:
        names = [name for _, name in socket.if_nameindex()]
    except OSError:
        return None
    for name in names:
        try:
            with open(f"/sys/class/net/{name}/type") as f:
                if f.read().strip() == "772":  # ARPHRD_LOOPBACK
                    return name
        except OSError:
            pass
    return next((name for name in ("lo", "lo0") if name in names), None)


@contextmanager
def _environment(nproc: int) -> Iterator[None]:
    """The workers' environment (they inherit ours): threads per process, the loopback interface."""
    # As torchrun does: the processes share the cores, so each gets its share of threads for
    # torch and the BLAS (unless the caller chose). Threads that outnumber the cores spin
    # against each other and can make a run ten times slower.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    added = {k: str(max(1, cores // nproc)) for k in THREAD_VARIABLES}
    interface = loopback_interface()
    if interface is not None:
        added |= {"GLOO_SOCKET_IFNAME": interface, "NCCL_SOCKET_IFNAME": interface}
    added = {k: v for k, v in added.items() if k not in os.environ}
    saved = {k: os.environ.get(k) for k in [*added, "TORCHELASTIC_SIGNALS_TO_HANDLE"]}
    os.environ.update(added)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextmanager
def _signal_handlers() -> Iterator[None]:
    """Restore the handlers that the agent replaces (its SIGINT handler would outlive the launch)."""
    signals = [getattr(signal, name) for name in ELASTIC_SIGNALS if hasattr(signal, name)]
    saved = {s: signal.getsignal(s) for s in signals}
    try:
        yield
    finally:
        for s, handler in saved.items():
            if handler is not None:
                signal.signal(s, handler)


@contextmanager
def _quiet() -> Iterator[None]:
    """Drop the agent's log records: they would add lines to stderr (warnings, error tables)."""
    saved = []
    null = logging.NullHandler()
    for name in QUIET_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.propagate))
        logger.addHandler(null)  # a handler, so that logging's last resort (stderr) is not used
        logger.propagate = False
    try:
        yield
    finally:
        for logger, propagate in saved:
            logger.removeHandler(null)
            logger.propagate = propagate


@contextmanager
def _alarm(limit: float) -> Iterator[None]:
    """Raise _TimedOut in the main thread after `limit` seconds (the agent then stops the workers)."""
    if not limit > 0:
        raise UsageError(f"limit must be > 0 seconds; got {limit!r}")

    def expire(signum: int, frame: FrameType | None) -> None:
        raise _TimedOut()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
