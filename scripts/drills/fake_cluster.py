"""A Ray cluster on this machine that Ray's own autoscaler scales: a head with no CPU for trials and
the worker types of `fake_cluster.yaml`, started by Ray's fake multi-node provider as raylets
of their own. Started and stopped without touching any other Ray on the machine (no `ray stop`): its
own temporary folder, free ports, its own token, and a teardown that ends only its own processes.

    python scripts/drills/fake_cluster.py up --dir /tmp/rayfake      # prints the address and env to use
    python scripts/drills/fake_cluster.py nodes --dir /tmp/rayfake   # its nodes (JSON): alive and dead
    python scripts/drills/fake_cluster.py down --dir /tmp/rayfake    # stops it, every process of it

Recipe and what to expect: docs/autoscaler.md. Imported by tests/study/test_autoscaler_drill.py.

How Ray 2.60 runs it (read in its source): `ray start --head --block` with RAY_FAKE_CLUSTER=1 gives
the head the provider's fixed node ID; the autoscaler (the head's `monitor.py`) creates a worker by
starting a `ray._private.node.Node` in its own process (raylet, agents, log monitor: children of the
monitor, not of `ray start`) joined to `provider.gcs_address`, and terminates it by killing those
processes. `ray.cluster_utils.AutoscalingCluster` would do the same but runs `ray stop --force`
(every Ray of the machine) and reads an example.yaml the 2.60 wheel lacks.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from ray._private.utils import get_dashboard_dependency_error, get_ray_client_dependency_error

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "fake_cluster.yaml"
STATE = "drill.json"  # in the cluster's folder: address, ports, the pid of `ray start`
RAY = [sys.executable, "-m", "ray.scripts.scripts"]  # the `ray` command of this interpreter's Ray


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free on 127.0.0.1 now (all bound at once, so none is drawn twice)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class FakeCluster:
    """The cluster whose temporary folder is `folder` (short: Ray's socket paths must fit in 107
    characters). `start` starts it, `stop` ends every process of it; `env` is what a client (a
    driver, `ray job submit`, `ray status`) needs in its environment to reach it."""

    def __init__(self, folder: Path, config: Path = CONFIG):
        self.folder, self.config = Path(folder).absolute(), Path(config)
        state = self.folder / STATE
        self.state = json.loads(state.read_text()) if state.is_file() else {}

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.state['port']}"

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.state['dashboard_port']}"

    @property
    def token_path(self) -> Path:
        return self.folder / "auth_token"

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """`base` (default: this process's environment) plus this cluster's token and loopback mode.
        A $RAY_ADDRESS of the caller's is dropped (the caller passes the address it means)."""
        env = dict(os.environ if base is None else base)
        env.pop("RAY_ADDRESS", None)
        env.pop("RAY_AUTH_TOKEN", None)  # it would win over the token file
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(self.token_path),
                   RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")  # every node on 127.0.0.1 (study/cluster.py)
        return env

    @property
    def log(self) -> Path:
        return self.folder / "ray-start.log"

    def logs_dir(self) -> Path:
        """The head session's logs (`monitor.log` is the autoscaler's)."""
        return self.folder / "session_latest" / "logs"

    def start(self, env: dict[str, str] | None = None, dashboard: bool | None = None,
              timeout: float = 180) -> "FakeCluster":
        """`ray start --head --block` in a session of its own (its pid is the session's id), on free
        ports; returns once the head is up. `env` (default: this process's) is also the environment
        of the autoscaler and so of the worker nodes and every trial, and of `ray job submit`'s
        drivers: set OPTISTUDY_CACHE, PATH and the like there. `dashboard` (Ray's job server
        included; default: where ray[default] is installed)."""
        if dashboard is None:
            dashboard = get_dashboard_dependency_error() is None
        self.folder.mkdir(parents=True, exist_ok=True)
        if not self.token_path.is_file():
            self.token_path.write_text(secrets.token_hex(32))
            self.token_path.chmod(0o600)
        names = ["port", "dashboard_port", "agent_port", "metrics_port", "runtime_env_port", "client_port"]
        ports = dict(zip(names, free_ports(len(names))))
        config = yaml.safe_load(self.config.read_text())
        config["provider"]["gcs_address"] = f"127.0.0.1:{ports['port']}"
        autoscaling = self.folder / "autoscaling.yaml"
        autoscaling.write_text(yaml.safe_dump(config))
        env = self.env(env)
        env.update(RAY_FAKE_CLUSTER="1", AUTOSCALER_UPDATE_INTERVAL_S="1",  # an autoscaler update a second (default 5)
                   RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO="1")  # as cluster.yaml's workers: a CPU trial sees no GPU
        command = [*RAY, "start", "--head", "--block", "--num-cpus", "0", "--num-gpus", "0",
                   f"--temp-dir={self.folder}", "--node-ip-address=127.0.0.1", f"--port={ports['port']}",
                   f"--autoscaling-config={autoscaling}", f"--include-dashboard={str(dashboard).lower()}",
                   "--dashboard-host=127.0.0.1", f"--dashboard-port={ports['dashboard_port']}",
                   f"--dashboard-agent-listen-port={ports['agent_port']}",
                   f"--metrics-export-port={ports['metrics_port']}",
                   f"--runtime-env-agent-port={ports['runtime_env_port']}",
                   f"--object-store-memory={200 * 1024**2}", "--disable-usage-stats"]
        if get_ray_client_dependency_error() is None:  # Ray Client is started (on 10001 by default) only
            command.append(f"--ray-client-server-port={ports['client_port']}")  # where ray[client] is installed
        with open(self.log, "ab") as out:
            process = subprocess.Popen(command, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        self.state = {**ports, "pid": process.pid, "dashboard": dashboard, "started": time.time()}
        (self.folder / STATE).write_text(json.dumps(self.state))
        deadline = time.time() + timeout
        while "Ray runtime started" not in self.log.read_text(errors="replace"):
            if process.poll() is not None or time.time() > deadline:
                self.stop()
                raise RuntimeError(f"the fake cluster's head did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.5)
        return self

    def nodes(self, timeout: float = 60) -> list[dict]:
        """Every node the GCS knows (dead ones too): id, alive, resources, type (from a subprocess:
        this process's Ray may hold another cluster's token)."""
        script = ("import json, ray._raylet as r\n"
                  f"infos = r.GcsClient(address={self.address!r}).get_all_node_info(timeout={timeout})\n"
                  "print(json.dumps([{'id': i.hex(), 'alive': n.state == 0, 'head': n.is_head_node,\n"
                  "  'resources': dict(n.resources_total), 'type': n.node_type_name,\n"
                  "  'death': n.death_info.reason_message} for i, n in infos.items()]))\n")
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=self.env(),
                              timeout=timeout + 30)
        if done.returncode:
            raise RuntimeError(f"cannot list the nodes of {self.address}: {done.stderr[-2000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    def processes(self) -> dict[int, str]:
        """pid -> command of every process of this cluster: the session that `ray start` leads while
        it runs (the head's processes, and the fake workers' that its autoscaler started), Ray's
        processes of this cluster's session folder, and every descendant of these (a `ray job submit`
        driver leads a session of its own). Never this process or one it runs under."""
        table = _process_table()
        leader = self.state.get("pid")
        if leader not in table or f"--temp-dir={self.folder}" not in table[leader][2]:
            leader = None  # ended: its pid may be another's now
        session_dir = f"{self.folder}/session_"  # a shell running `down --dir FOLDER` does not name it
        ours = {pid for pid, (_, sid, command) in table.items() if sid == leader or session_dir in command}
        children: dict[int, list[int]] = {}
        for pid, (parent, _, _) in table.items():
            children.setdefault(parent, []).append(pid)
        todo = list(ours)
        while todo:
            for child in children.get(todo.pop(), []):
                if child not in ours:
                    ours.add(child)
                    todo.append(child)
        pid = os.getpid()
        while pid in table:  # this process and its ancestors
            ours.discard(pid)
            pid = table[pid][0] if table[pid][0] != pid else 0
        return {pid: table[pid][2] for pid in ours}

    def stop(self, grace: float = 10, timeout: float = 60) -> dict[int, str]:
        """SIGTERM to `ray start` (it stops the head's processes), then SIGKILL to whatever of the
        cluster is left: the fake workers, which the autoscaler started and nobody stops once it is
        gone, and the drivers of submitted jobs. Returns the processes still alive after `timeout`
        (none, normally)."""
        known = self.processes()  # before anything dies: a process whose parent died is no descendant
        leader = self.state.get("pid")
        if leader and leader in known:
            _signal(leader, signal.SIGTERM)
            deadline = time.time() + grace
            while time.time() < deadline and _alive(leader, known[leader]):
                time.sleep(0.2)
        deadline = time.time() + timeout
        while True:
            known.update(self.processes())
            alive = {pid: command for pid, command in known.items() if _alive(pid, command)}
            if not alive or time.time() > deadline:
                return alive
            for pid in alive:
                _signal(pid, signal.SIGKILL)
            time.sleep(0.5)


def _process_table() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent pid, session id, command) of every live (not zombie) process, from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if fields[0] == "Z":
                continue
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            table[int(entry.name)] = (int(fields[1]), int(fields[3]), command)
        except (OSError, ValueError, IndexError):
            continue
    return table


def _alive(pid: int, command: str) -> bool:
    """The process is still the one seen (running, not a zombie, its pid not reused)."""
    try:
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
        now = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except (OSError, IndexError):
        return False
    return now == command


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["up", "nodes", "down"])
    parser.add_argument("--dir", type=Path, help="the cluster's temporary folder (up: default a new one "
                        "under /tmp; keep it short)")
    parser.add_argument("--config", type=Path, default=CONFIG, help="autoscaling config (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.action == "up":
        folder = args.dir or Path(tempfile.mkdtemp(prefix="rayfake", dir="/tmp"))
        cluster = FakeCluster(folder, args.config).start()
        submit = (f"ray job submit --address {cluster.dashboard} -- python -m study.launch --space smoke\n"
                  if cluster.state["dashboard"] else "(no dashboard, so no `ray job submit`: ray[default] is not installed)\n")
        print(f"fake cluster up in {folder}: head {cluster.address}\n"
              f"export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH={cluster.token_path} "
              "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0\n"
              f"python -m study.launch --space smoke --address {cluster.address}\n{submit}"
              f"python {Path(__file__).relative_to(ROOT)} down --dir {folder}")
        return 0
    if args.dir is None or not args.dir.is_dir():
        parser.error("--dir must be the cluster's folder (`up`'s, or the --temp-dir of a `ray start`)")
    cluster = FakeCluster(args.dir, args.config)
    if args.action == "nodes":
        if not cluster.state:
            parser.error(f"nodes: {args.dir} holds no {STATE} (a cluster `up` started); use `ray status`")
        print(json.dumps(cluster.nodes(), indent=1))
        return 0
    left = cluster.stop()
    if left:
        print(f"still running: {left}", file=sys.stderr)
        return 1
    print(f"stopped every process of the cluster in {args.dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
