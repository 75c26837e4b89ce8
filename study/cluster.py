"""Ray itself: start a local, loopback-only Ray or join a cluster, and watch a local one for its death
(Ray's core only, no Tune)."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path
from typing import Callable

import ray
from ray import cloudpickle
from ray._private import ray_constants

from study.supervise import Handover, hand_over


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
    if address:  # Ray's INFO lines (connecting, Tune restoring a stage) are not the study's news either
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
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
    """The vital processes of the local Ray a study's driver started (`init_ray`), watched from
    the process that supervises the driver (`study.supervise`): when one ends first, that process
    ends the driver, kills what is left of that Ray, calls `say(names)` naming what ended, and ends
    the command with status 1.

    Not from a thread of the driver: once the raylet is gone, Ray's core worker ends the driver at
    once (`Exiting because the Raylet IPC connection failed`), often before any thread of it could
    print. The study's rows written so far are on disk (each write is atomic), and its lock goes
    with the driver. Made in the driver, pickled (`say` is usually a closure: cloudpickle), used
    in the supervising process."""

    def __init__(self, vital: dict[int, str], say: Callable[[list[str]], None]):
        self.vital, self.say = vital, say
        self.raylet = next(pid for pid, kind in vital.items() if kind == ray_constants.PROCESS_TYPE_RAYLET)
        self._watched: dict[int, str] = {}  # pidfd -> kind, opened where the watch runs
        self._agents: dict[int, str] = {}
        self._gone: list[str] = []  # ended before it was watched
        self._opened = False

    def pidfds(self) -> tuple[list[int], float | None]:
        """The pidfds of the vital processes and of the raylet's agents running, and, until both
        agents run (the raylet starts them a second after it), a second after which to look again."""
        if not self._opened:
            self._open(self.vital)
            self._opened = True
        if len(self._agents) < len(RAYLET_AGENTS):
            self._open({pid: kind for pid, kind in raylet_agents(self.raylet).items() if pid not in self._agents})
        return list(self._watched), None if len(self._agents) == len(RAYLET_AGENTS) else 1.0

    def _open(self, processes: dict[int, str]) -> None:
        for pid, kind in processes.items():
            if kind in RAYLET_AGENTS.values():
                self._agents[pid] = kind
            try:
                self._watched[os.pidfd_open(pid)] = kind
            except ProcessLookupError:
                if kind in VITAL:  # an agent gone before it is watched is left to the raylet's end
                    self._gone.append(kind)

    def died(self, ready: list[int]) -> list[str]:
        """The kinds of the watched processes that ended (those whose pidfd is in `ready`)."""
        return self._gone + [self._watched[fd] for fd in ready if fd in self._watched]

    def kill_what_is_left(self) -> None:
        """SIGKILL to the processes of this Ray still running: Ray's own would die with the driver
        (its fate-sharing), but not the raylet's agents, which outlived the raylet by minutes."""
        for fd in self._watched:
            try:
                signal.pidfd_send_signal(fd, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.close()

    def close(self) -> None:
        """Stop watching."""
        for fd in self._watched:
            os.close(fd)
        self._watched = {}


def watch_local_ray(say: Callable[[list[str]], None]) -> Handover | None:
    """Have the process that supervises this one (`study.supervise`) watch the local Ray this
    process started (`LocalRayWatch`); `stop()` the handle returned before shutting that Ray down.
    None where this process joined a cluster (whose processes it did not start) or is not
    supervised (its command did not start under `study.supervise`, or the system lacks pidfds)."""
    node = ray._private.worker._global_node
    vital = {info.process.pid: kind for kind in VITAL for info in node.all_processes.get(kind, [])}
    if ray_constants.PROCESS_TYPE_RAYLET not in vital.values():
        return None
    return hand_over(cloudpickle.dumps(LocalRayWatch(vital, say)))


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
