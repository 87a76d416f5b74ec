"""Run the Flower App on this machine, on loopback, and leave no process behind.

    python flower_app/run_local.py simulation --clients 5 --rounds 5
    python flower_app/run_local.py deployment --clients 2 --rounds 2 --timeout 900

simulation: one SuperLink with Flower's simulation runtime (Ray); `flwr run` submits the app
            and the K clients are simulated SuperNodes.
deployment: one SuperLink and K SuperNode processes talking over 127.0.0.1, SuperNode i with
            node config partition-id=i; `flwr run` submits the app to the SuperLink.

Both split MNIST first when --data holds no matching partition, use a private FLWR_HOME (the
`flwr` CLI's connection file), free ports, and stop every process they started when the run
ends, fails, times out or is interrupted. The ServerApp writes simulacion.json/.png to --out.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from fedmnist.settings import STRATEGIES

APP_DIR = Path(__file__).resolve().parent
PROJECT_DIR = APP_DIR.parent
BIN_DIR = Path(sys.executable).parent
RUN_MARKER = "FEDMNIST_FLOWER_RUN"  # set in every child's environment, so leftovers can be found and stopped


class Processes:
    """The processes of one run, each in its own session; `stop` ends them and anything they spawned."""

    def __init__(self, env, log_dir):
        self.env, self.log_dir, self.children = env, log_dir, []

    def start(self, name, command):
        log = open(self.log_dir / f"{name}.log", "wb")
        child = subprocess.Popen(command, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        self.children.append((name, child, log))

    def check_alive(self):
        for name, child, _ in self.children:
            if child.poll() is not None:
                raise RuntimeError(f"{name} exited with code {child.returncode}; see {self.log_dir / name}.log")

    def stop(self, grace=10.0):
        for _, child, _ in self.children:
            signal_group(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for _, child, _ in self.children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            signal_group(child.pid, signal.SIGKILL)
            child.wait()
        for _, _, log in self.children:
            log.close()
        kill_marked(self.env[RUN_MARKER])
        self.children = []


def signal_group(pid, sig):
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def kill_marked(marker):
    """SIGKILL every process whose environment carries this run's marker (Ray's workers, app processes)."""
    needle = f"{RUN_MARKER}={marker}".encode()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if int(proc.name) != os.getpid() and needle in (proc / "environ").read_bytes().split(b"\0"):
                os.kill(int(proc.name), signal.SIGKILL)
        except (OSError, ValueError):
            pass


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_healthy(port, processes, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        processes.check_alive()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"the SuperLink did not answer on 127.0.0.1:{port} within {timeout:.0f} s; see its log")


def toml_value(value):
    return json.dumps(value) if isinstance(value, str) else str(value)


def run_config(args):
    values = {"data-dir": str(args.data), "out-dir": str(args.out), "num-server-rounds": args.rounds, "strategy": args.strategy,
              "proximal-mu": args.mu, "local-epochs": args.epochs, "batch-size": args.batch_size,
              "fraction-train": args.fraction, "seed": args.seed}
    return " ".join(f"{key}={toml_value(value)}" for key, value in values.items())


def child_environment(flwr_home):
    python_path = os.pathsep.join(filter(None, [str(PROJECT_DIR), os.environ.get("PYTHONPATH")]))
    path = os.pathsep.join([str(BIN_DIR), os.environ.get("PATH", "")])  # Flower starts its own helpers by name
    return {**os.environ, "PATH": path, "PYTHONPATH": python_path, "FLWR_HOME": str(flwr_home), "FLWR_DISABLE_UPDATE_CHECK": "1",
            "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"), "PYTHONUNBUFFERED": "1",
            RUN_MARKER: uuid.uuid4().hex}


def start_federation(args, processes, link_port):
    """Start the SuperLink and, for a deployment, the K SuperNodes."""
    link = [str(BIN_DIR / "flower-superlink"), "--insecure", "--isolation", "subprocess", "--host", "127.0.0.1", "--port", str(link_port),
            "--disable-runtime-dependency-installation"]  # the apps run in this environment
    processes.start("superlink", link + (["--simulation"] if args.mode == "simulation" else []))
    wait_until_healthy(link_port, processes)
    if args.mode == "deployment":
        for partition in range(args.clients):
            processes.start(f"supernode_{partition}", [
                str(BIN_DIR / "flower-supernode"), "--insecure", "--superlink", f"127.0.0.1:{link_port}",
                "--isolation", "subprocess", "--port", str(free_port()),
                "--node-config", f"partition-id={partition} num-partitions={args.clients}"])


def submit_and_stream(args, processes):
    """`flwr run` the app on the loopback connection and stream its logs until the run ends."""
    command = [str(BIN_DIR / "flwr"), "run", str(APP_DIR), "loopback", "--stream", "--run-config", run_config(args)]
    if args.mode == "simulation":
        command += ["--federation-config", f"num-supernodes={args.clients}"]
    submit = subprocess.Popen(command, env=processes.env, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + args.timeout
    try:
        while submit.poll() is None:
            processes.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"the run took longer than --timeout {args.timeout} s; stopped every process")
            time.sleep(0.5)
    finally:
        signal_group(submit.pid, signal.SIGKILL)
        submit.wait()
    if submit.returncode != 0:
        raise RuntimeError(f"flwr run exited with code {submit.returncode}")


def finished_results(path, started_at, rounds):
    if not path.is_file() or path.stat().st_mtime < started_at:
        raise RuntimeError(f"the ServerApp wrote no {path}; see the logs above and in the run's log folder")
    results = json.loads(path.read_text())
    if results["rounds_completed"] != rounds:
        raise RuntimeError(f"{path}: {results['rounds_completed']} of {rounds} rounds completed")
    return results


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("simulation", "deployment"))
    parser.add_argument("--clients", "-K", type=int, default=5, help="K, SuperNodes (default: 5)")
    parser.add_argument("--rounds", "-R", type=int, default=3, help="R, rounds (default: 3)")
    parser.add_argument("--strategy", default="fedavg", choices=STRATEGIES,
                        help="the ServerApp's Flower strategy (default: fedavg)")
    parser.add_argument("--mu", type=float, default=0.01, help="proximal-mu for fedprox (default: 0.01)")
    parser.add_argument("--epochs", "-E", type=int, default=1, help="E, local epochs per round (default: 1)")
    parser.add_argument("--batch-size", "-B", type=int, default=64, help="B (default: 64)")
    parser.add_argument("--fraction", "-C", type=float, default=1.0, help="C, fraction of clients per round (default: 1.0)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the split and of local training (default: 42)")
    parser.add_argument("--data", type=Path, help="a split_data.py output folder for K clients (default: data/escenarios/iid_<K>, split with --seed if missing)")
    parser.add_argument("--out", type=Path, help="results folder (default: results/flower/<mode>)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds the run may take once the SuperLink is up; then every process is stopped (default: 1800)")
    args = parser.parse_args(argv)
    args.out = (args.out or PROJECT_DIR / "results" / "flower" / args.mode).resolve()
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.clients < 2 or args.rounds < 1:
        sys.exit(f"run_local.py: error: --clients {args.clients} --rounds {args.rounds}: need at least 2 clients and 1 round")
    if not (BIN_DIR / "flower-superlink").is_file():
        sys.exit(f"run_local.py: error: Flower is not installed beside {sys.executable}; run make flower "
                 "(or pip install -r requirements-flower.txt)")
    sys.path.insert(0, str(PROJECT_DIR))
    from federated_simulation import RESULTS_FILE
    from split_data import SCENARIOS_DIR, PartitionError, ensure_split, read_manifest

    try:
        if args.data is not None:
            args.data = args.data.resolve()
            manifest = read_manifest(args.data)
            if manifest["num_clients"] != args.clients:
                raise PartitionError(f"{args.data}: holds a partition for K = {manifest['num_clients']} clients, not --clients {args.clients}")
        else:
            args.data = SCENARIOS_DIR / f"iid_{args.clients}"
            ensure_split(args.data, args.clients, args.seed)
    except PartitionError as err:
        sys.exit(f"run_local.py: error: {err}")

    flwr_home = Path(tempfile.mkdtemp(prefix="flwr_home_"))
    link_port = free_port()
    (flwr_home / "config.toml").write_text(
        f'[superlink]\ndefault = "loopback"\n\n[superlink.loopback]\naddress = "127.0.0.1:{link_port}"\ninsecure = true\n')
    log_dir = args.out.parent / f"{args.mode}_logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    processes = Processes(child_environment(flwr_home), log_dir)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda number, frame: sys.exit(f"run_local.py: stopped by signal {number}"))

    print(f"run_local: {args.mode}, K={args.clients}, R={args.rounds}, strategy={args.strategy}, data={args.data}, "
          f"out={args.out}, SuperLink 127.0.0.1:{link_port}, logs in {log_dir}", flush=True)
    started_at, started = time.time(), time.perf_counter()
    try:
        start_federation(args, processes, link_port)
        submit_and_stream(args, processes)
        results = finished_results(args.out / RESULTS_FILE, started_at, args.rounds)
    except (RuntimeError, TimeoutError) as err:
        sys.exit(f"run_local.py: error: {err}")
    finally:
        processes.stop()
        shutil.rmtree(flwr_home, ignore_errors=True)

    wall = time.perf_counter() - started
    name, summary = next(iter(results["summary"].items()))
    results["launcher"] = {"mode": args.mode, "wall_seconds": round(wall, 1)}
    from atomic import write_text_atomically

    write_text_atomically(args.out / RESULTS_FILE, json.dumps(results, indent=2) + "\n")
    print(f"run_local: {args.mode} finished: {name} final test accuracy {100 * summary['final_accuracy']:.2f}% "
          f"after {args.rounds} rounds, {wall:.0f} s wall time (start to stop, processes included); every process stopped")


if __name__ == "__main__":
    main()
