"""Ray itself: start a local, loopback-only Ray or join a cluster (Ray's core only, no Tune)."""

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



# The processes of a local Ray that a study cannot run without.
VITAL = (ray_constants.PROCESS_TYPE_RAYLET, ray_constants.PROCESS_TYPE_GCS_SERVER)


class LocalRayWatch:
    """Watches the vital processes of the local Ray this process started (`init_ray`) from a
    thread, and calls `on_death(names)` there, naming what died, when one ends before `stop()`.

    A thread, not an exception: once the raylet is gone, Ray's core worker ends this process
    within about 50 ms (`The connection to the plasma store is failed. Terminate the process`),
    before any exception reaches the study; `on_death` is its last chance to say so."""

    def __init__(self, on_death: Callable[[list[str]], None]):
        node = ray._private.worker._global_node
        self._processes = {info.process.pid: kind for kind in VITAL for info in node.all_processes.get(kind, [])}
        self._logs, self._on_death, self._stopped = Path(node.get_logs_dir_path()), on_death, threading.Event()
        self._stop_read, self._stop_write = os.pipe()
        threading.Thread(target=self._watch, name="local-ray-watch", daemon=True).start()

    def _watch(self) -> None:
        pidfds = {os.pidfd_open(pid): kind for pid, kind in self._processes.items()}
        ready, _, _ = select.select([*pidfds, self._stop_read], [], [])
        if self._stopped.is_set():
            return
        died = [pidfds[fd] for fd in ready if fd in pidfds]
        self._on_death([*lost_agents(self._logs), *died] if ray_constants.PROCESS_TYPE_RAYLET in died else died)

    def stop(self) -> None:
        """Stop watching (before Ray is shut down on purpose)."""
        self._stopped.set()
        os.write(self._stop_write, b"x")


def lost_agents(logs: Path) -> list[str]:
    """The agents a raylet's log says failed (a raylet ends when one of its agents does)."""
    log = logs / "raylet.out"
    text = log.read_text(errors="replace") if log.is_file() else ""
    return sorted({line.split("agent_name = ", 1)[1].split(",")[0].strip(" .") for line in text.splitlines()
                   if "agent_name = " in line and "agent failed" in line})
