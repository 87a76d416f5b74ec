"""Run the Flower App on this machine, on loopback, and leave no process behind.

    python tools/flower_local.py simulation --clients 5 --rounds 5
    python tools/flower_local.py deployment --clients 2 --rounds 2 --timeout 900

simulation: one SuperLink with Flower's simulation runtime (Ray); `flwr run` submits the app
            and the K clients are simulated SuperNodes.
deployment: one SuperLink and K SuperNode processes talking over 127.0.0.1, SuperNode i with
            node config partition-id=i; `flwr run` submits the app to the SuperLink.

Both split MNIST first when --data holds no matching partition, use a private FLWR_HOME (the
`flwr` CLI's connection file), free ports, and stop every process they started when the run
ends, fails, times out or is interrupted. `flwr run` ships the project (the root pyproject.toml
names the apps in fedmnist/flower/); the ServerApp writes simulacion.json/.png to --out.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from fedmnist import defaults, strategies
from fedmnist.data import SplitSpec, ensure_split, read_manifest
from fedmnist.errors import FedMnistError
from fedmnist.flower.credentials import Credentials
from fedmnist.history import RESULTS_FILE
from fedmnist.partition import PartitionError
from fedmnist.settings import SETTINGS, add_options

LOCAL_ROUNDS = 3  # a first look at the Flower app on this machine; --rounds for more
FLOWER_STRATEGIES = [key for key, row in strategies.REGISTRY.items() if row.flower]
BIN_DIR = Path(sys.executable).parent
RUN_MARKER = "FEDMNIST_FLOWER_RUN"  # set in every child's environment, so leftovers can be found and stopped


class Processes:
    """The processes of one run, each in its own session; `stop` ends them and anything they spawned."""

    def __init__(self, env, log_dir):
        self.env, self.log_dir, self.children = env, log_dir, []

    def start(self, name, command):
        log = open(self.log_dir / f"{name}.log", "wb")
        child = subprocess.Popen(
            command,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
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


def wait_until_healthy(port, processes, credentials=None, timeout=60.0):
    scheme = "https" if credentials else "http"
    context = ssl.create_default_context(cafile=credentials.ca) if credentials else None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        processes.check_alive()
        try:
            with urllib.request.urlopen(f"{scheme}://127.0.0.1:{port}/health", timeout=1, context=context) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"the SuperLink did not answer on 127.0.0.1:{port} within {timeout:.0f} s; see its log")


def toml_value(value):
    return json.dumps(value) if isinstance(value, str) else str(value)


def run_config(args):
    """The run config for `flwr run`: folders, R, the strategy and its parameters, local training."""
    values = {"data-dir": str(args.data), "out-dir": str(args.out), "strategy": args.strategy}
    for row in (row for row in SETTINGS.values() if row.flower):  # "": the ServerApp's default
        values[row.flower] = "" if getattr(args, row.name) is None else getattr(args, row.name)
    for _, p in strategies.all_parameters(flower_only=True):
        values[p.config_key] = getattr(args, strategies.option_dest(p))
    return " ".join(f"{key}={toml_value(value)}" for key, value in values.items())


def child_environment(flwr_home):
    path = os.pathsep.join([str(BIN_DIR), os.environ.get("PATH", "")])  # Flower starts its own helpers by name
    return {
        **os.environ,
        "PATH": path,
        "FLWR_HOME": str(flwr_home),
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
        "PYTHONUNBUFFERED": "1",
        RUN_MARKER: uuid.uuid4().hex,
    }


def superlink_command(args, link_port, credentials):
    """flower-superlink as docs/flower.md gives it: with --secure, TLS, SuperNode authentication, all addresses."""
    security = (
        ["--ssl-ca-certfile", str(credentials.ca), "--ssl-certfile", str(credentials.cert)]
        + ["--ssl-keyfile", str(credentials.key), "--enable-supernode-auth", "--host", "0.0.0.0"]
        if credentials
        else ["--insecure", "--host", "127.0.0.1"]
    )
    simulation = ["--simulation"] if args.mode == "simulation" else []
    # the apps run in this environment: no run-time installation of their dependencies
    return [str(BIN_DIR / "flower-superlink"), *security, "--isolation", "subprocess", "--port", str(link_port)] + [
        "--disable-runtime-dependency-installation",
        *simulation,
    ]


def supernode_command(args, partition, link_port, credentials):
    security = (
        [
            "--root-certificates",
            str(credentials.ca),
            "--auth-supernode-private-key",
            str(credentials.node_keys[partition][0]),
        ]
        if credentials
        else ["--insecure"]
    )
    return [
        str(BIN_DIR / "flower-supernode"),
        *security,
        "--superlink",
        f"127.0.0.1:{link_port}",
        "--isolation",
        "subprocess",
        "--port",
        str(free_port()),
        "--node-config",
        f"partition-id={partition} num-partitions={args.clients}",
    ]


def register_supernodes(processes, credentials):
    """`flwr supernode register` each SuperNode's public key, as an instructor would before the run."""
    for _, public in credentials.node_keys:
        done = subprocess.run(
            [str(BIN_DIR / "flwr"), "supernode", "register", str(public), "loopback"],
            env=processes.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"flwr supernode register {public.name} failed: {(done.stdout + done.stderr)[-300:]}")


def start_federation(args, processes, link_port, credentials=None):
    """Start the SuperLink and, for a deployment, register (with --secure) and start the K SuperNodes."""
    processes.start("superlink", superlink_command(args, link_port, credentials))
    wait_until_healthy(link_port, processes, credentials)
    if args.mode == "deployment":
        if credentials:
            register_supernodes(processes, credentials)
        for partition in range(args.clients):
            processes.start(f"supernode_{partition}", supernode_command(args, partition, link_port, credentials))


def submit_and_stream(args, processes):
    """`flwr run` the app on the loopback connection and stream its logs until the run ends."""
    command = [
        str(BIN_DIR / "flwr"),
        "run",
        str(defaults.PROJECT_DIR),
        "loopback",
        "--stream",
        "--run-config",
        run_config(args),
    ]
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


def check_finished(path, started_at, rounds):
    if not path.is_file() or path.stat().st_mtime < started_at:
        raise RuntimeError(f"the ServerApp wrote no {path}; see the logs above and in the run's log folder")
    results = json.loads(path.read_text())
    if results["rounds_completed"] != rounds:
        raise RuntimeError(f"{path}: {results['rounds_completed']} of {rounds} rounds completed")
    return results


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("simulation", "deployment"))
    parser.add_argument(
        "--clients", "-K", type=int, default=defaults.NUM_CLIENTS, help="K, SuperNodes (default: %(default)s)"
    )
    parser.add_argument(
        "--strategy",
        default=defaults.ROUND_STRATEGIES[0],
        choices=FLOWER_STRATEGIES,
        help="the registry strategy whose Flower class the ServerApp runs (default: %(default)s)",
    )
    strategies.add_parameter_options(parser, flower_only=True)
    add_options(parser, [row.name for row in SETTINGS.values() if row.flower], own={"rounds": LOCAL_ROUNDS})
    parser.add_argument(
        "--data",
        type=Path,
        help="a split_data.py output folder for K clients "
        "(default: data/escenarios/iid_<K>, split with --seed if missing)",
    )
    parser.add_argument("--out", type=Path, help="results folder (default: results/flower/<mode>)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=1800,
        help="seconds the run may take once the SuperLink is up; then every process is stopped (default: %(default)s)",
    )
    parser.add_argument(
        "--secure",
        action="store_true",
        help="deployment only: TLS with certificates made for this run, SuperNode authentication with keys "
        "registered through `flwr supernode register`, and the SuperLink bound to every address (0.0.0.0), "
        "as on separate machines",
    )
    args = parser.parse_args(argv)
    args.seed = defaults.SEED if args.seed is None else args.seed  # the split's seed too
    args.out = (args.out or defaults.RESULTS_DIR / "flower" / args.mode).resolve()
    return args


def prepared_data(args):
    """The partition folder for the run (split on demand); PartitionError if --data cannot serve K clients."""
    if args.data is None:
        data = defaults.SCENARIO_DATA_DIR / f"iid_{args.clients}"
        ensure_split(data, SplitSpec(num_clients=args.clients, seed=args.seed), replace=True)
        return data
    data = args.data.resolve()
    manifest = read_manifest(data)
    if manifest["num_clients"] != args.clients:
        raise PartitionError(
            f"{data}: holds a partition for K = {manifest['num_clients']} clients, not --clients {args.clients}"
        )
    return data


def main(argv=None):
    args = parse_args(argv)
    if args.clients < 2 or args.rounds < 1:
        sys.exit(
            f"flower_local.py: error: --clients {args.clients} --rounds {args.rounds}: need at least 2 clients "
            "and 1 round"
        )
    if args.secure and args.mode != "deployment":
        sys.exit("flower_local.py: error: --secure: only for deployment (the simulation runs on one SuperLink)")
    if not (BIN_DIR / "flower-superlink").is_file():
        sys.exit(
            f"flower_local.py: error: Flower is not installed beside {sys.executable}; "
            "run make venv (the lock includes Flower)"
        )
    try:
        strategies.parameters_from_options(args, flower_only=True)
        args.data = prepared_data(args)
    except (ValueError, FedMnistError) as err:
        sys.exit(f"flower_local.py: error: {err}")

    flwr_home = Path(tempfile.mkdtemp(prefix="flwr_home_"))
    link_port = free_port()
    credentials = Credentials(flwr_home / "certificados", flwr_home / "claves", args.clients) if args.secure else None
    security = f'root-certificates = "{credentials.ca}"' if credentials else "insecure = true"
    (flwr_home / "config.toml").write_text(
        f'[superlink]\ndefault = "loopback"\n\n[superlink.loopback]\naddress = "127.0.0.1:{link_port}"\n{security}\n'
    )
    log_dir = args.out.parent / f"{args.mode}_logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    processes = Processes(child_environment(flwr_home), log_dir)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda number, frame: sys.exit(f"flower_local.py: stopped by signal {number}"))

    print(
        f"flower_local: {args.mode}{' with TLS and SuperNode authentication' if args.secure else ''}, "
        f"K={args.clients}, R={args.rounds}, strategy={args.strategy}, "
        f"data={args.data}, out={args.out}, SuperLink 127.0.0.1:{link_port}, logs in {log_dir}",
        flush=True,
    )
    started_at, started = time.time(), time.perf_counter()
    try:
        start_federation(args, processes, link_port, credentials)
        submit_and_stream(args, processes)
        results = check_finished(args.out / RESULTS_FILE, started_at, args.rounds)
    except (RuntimeError, TimeoutError) as err:
        sys.exit(f"flower_local.py: error: {err}")
    finally:
        processes.stop()
        shutil.rmtree(flwr_home, ignore_errors=True)

    name, summary = next(iter(results["summary"].items()))
    print(
        f"flower_local: {args.mode} finished: {name} final test accuracy {100 * summary['final_accuracy']:.2f}% "
        f"after {args.rounds} rounds, {time.perf_counter() - started:.0f} s wall time (start to stop, processes "
        f"included); every process stopped"
    )


if __name__ == "__main__":
    main()
