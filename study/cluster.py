"""Ray itself: start a local, loopback-only Ray or join a cluster, and watch a local one for its death
(Ray's core only, no Tune)."""

from __future__ import annotations

import logging
import os
import select
import signal
import threading
from pathlib import Path
from typing import Callable

import ray
from ray._private import ray_constants


def init_ray(address: str | None, num_cpus: int | None = None, num_gpus: int | None = None) -> bool:
    """Join a cluster (`auto` or HOST:PORT, else `$RAY_ADDRESS` as `ray job submit` sets it) or start
    a local, loopback-only Ray with token authentication; False when this process was already
    connected. Without an address the local Ray is always a new one of this process: Ray's own
    default would join whatever Ray `ray start` last recorded on this machine (another user's study,
    a test's cluster, or a dead one)."""
    # Ray 2.60 leaves CUDA_VISIBLE_DEVICES unset for trials without GPUs; make it hide every GPU.
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "1")
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        listen_on_loopback_only()
        # Ray's own notice that it enabled token authentication (its default) is not the study's news.
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
        try:
            ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False,
                     object_store_memory=256 * 1024**2, log_to_driver=False, logging_level=logging.WARNING)
        except BaseException:  # Ctrl-C while it starts: stop what it started so far
            ray.shutdown()
            raise
    return True


def shutdown_ray() -> None:
    """`ray.shutdown()`, less the 1.5 s it spends idle after a study on a local Ray this process
    started: the half second the shutdown Ray registers at exit sleeps so that workers' last logs
    print (none are forwarded here: `log_to_driver` is off), and the second Ray waits for its
    autoscaler monitor, which a local Ray does not use, to die after SIGTERM: the monitor's handler
    reports its end to the GCS, which Ray stops first, until Ray kills it. The monitor gets SIGKILL
    at once instead (nothing of a study lives in it). A Ctrl-C while this runs (a second one, sent
    to stop at once) is held off until Ray is down: interrupted half way, Ray left its agents running
    for a minute after the study's exit."""
    node = getattr(ray._private.worker, "_global_node", None)
    monitors = getattr(node, "all_processes", {}).get(getattr(ray_constants, "PROCESS_TYPE_MONITOR", None), [])
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for monitor in monitors:
            monitor.process.kill()
            monitor.process.wait()
        ray.shutdown()
    finally:
        signal.signal(signal.SIGINT, previous)


def listen_on_loopback_only() -> None:
    """Make a local Ray bind every server to 127.0.0.1. Ray replaces 127.0.0.1 by the machine's
    routable address unless its multi-node mode is off; the switch is read from the environment by
    the processes Ray starts, and at import time by this one (hence the constant)."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray._private.ray_constants.ENABLE_RAY_CLUSTER = False


# The processes of a local Ray that a study cannot run without: its own, and the raylet's agents
# (by their process titles), whose end ends the raylet (Ray's fate-sharing).
VITAL = (ray_constants.PROCESS_TYPE_RAYLET, ray_constants.PROCESS_TYPE_GCS_SERVER)
RAYLET_AGENTS = {"ray::DashboardAgent": "dashboard_agent", "ray::RuntimeEnvAgent": "runtime_env_agent"}


class LocalRayWatch:
    """Watches the vital processes of the local Ray this process started (`init_ray`) from a
    thread; when one ends before `stop()`, calls `say(names)` there, naming what ended, kills
    what is left of that Ray and ends this process with status 1.

    A thread, not an exception: once the raylet is gone, Ray's core worker ends this process
    at once (`The connection to the plasma store is failed. Terminate the process`), before any
    exception reaches the study. An agent's end precedes the raylet's by tens of milliseconds,
    time enough for `say`; a raylet killed outright may end this process first. The study's
    rows written so far are on disk (each write is atomic), and its lock goes with the process."""

    def __init__(self, vital: dict[int, str], say: Callable[[list[str]], None]):
        self._vital = vital
        self._raylet = next(pid for pid, kind in vital.items() if kind == ray_constants.PROCESS_TYPE_RAYLET)
        self._say, self._stopped = say, threading.Event()
        self._stop_read, self._stop_write = os.pipe()
        threading.Thread(target=self._watch, name="local-ray-watch", daemon=True).start()

    def _watch(self) -> None:
        watched = {os.pidfd_open(pid): kind for pid, kind in self._vital.items()}
        agents: dict[int, str] = {}
        while True:
            for pid, kind in raylet_agents(self._raylet).items():  # started by the raylet, a second after it
                if pid not in agents:
                    agents[pid] = kind
                    try:
                        watched[os.pidfd_open(pid)] = kind
                    except ProcessLookupError:  # gone already: the raylet follows, and is watched
                        pass
            # until both agents run, look for them again every second
            ready, _, _ = select.select([*watched, self._stop_read], [], [],
                                        None if len(agents) == len(RAYLET_AGENTS) else 1.0)
            if self._stopped.is_set():
                return
            if ready:
                self._say([watched[fd] for fd in ready])
                self._kill_what_is_left(agents)
                os._exit(1)

    def _kill_what_is_left(self, agents: dict[int, str]) -> None:
        # Ray's own processes would die with this one (its fate-sharing), but not the raylet's
        # agents, which outlived the raylet by minutes.
        for pid in [*agents, *self._vital]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def stop(self) -> None:
        """Stop watching (before Ray is shut down on purpose)."""
        self._stopped.set()
        os.write(self._stop_write, b"x")


def watch_local_ray(say: Callable[[list[str]], None]) -> LocalRayWatch | None:
    """A `LocalRayWatch` of the Ray this process started; None where it joined a cluster (whose
    processes it did not start) or where the system cannot wait on a process it did not start
    (Linux's pidfd, from kernel 5.3)."""
    node = ray._private.worker._global_node
    vital = {info.process.pid: kind for kind in VITAL for info in node.all_processes.get(kind, [])}
    if ray_constants.PROCESS_TYPE_RAYLET not in vital.values() or not waits_on_processes():
        return None
    return LocalRayWatch(vital, say)


def waits_on_processes() -> bool:
    """Whether this system has pidfds (a process's end as a readable file descriptor)."""
    try:
        os.close(os.pidfd_open(os.getpid()))
        return True
    except (AttributeError, OSError):
        return False


def raylet_agents(raylet: int) -> dict[int, str]:
    """pid -> kind of the raylet's agents now running (its children with an agent's process title)."""
    agents = {}
    for child in _read(Path(f"/proc/{raylet}/task/{raylet}/children")).split():
        title = _read(Path(f"/proc/{child}/cmdline")).split("\0")[0]
        if title in RAYLET_AGENTS:
            agents[int(child)] = RAYLET_AGENTS[title]
    return agents


def _read(proc_file: Path) -> str:
    """A /proc file's text; empty once its process has ended."""
    try:
        return proc_file.read_text(errors="replace")
    except OSError:
        return ""
