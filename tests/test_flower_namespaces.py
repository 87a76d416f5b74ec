"""docs/flower.md's multi-machine recipe, run as written between two Linux network namespaces.

The SuperLink runs in one namespace; the instructor and two SuperNodes in the other, joined by a veth pair. Every
command is read from the recipe's marked blocks (<!-- receta:NAME -->), with the example addresses and paths
replaced; nothing else is added but a local --port for the second SuperNode on the same machine, as the recipe
says. Checked: TLS (https), SuperNode authentication (registration), a completed round, and a SuperLink restart
that keeps the registrations (--database). Needs root and iproute2; skipped with its reason otherwise.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, run_script

pytestmark = pytest.mark.slow
pytest.importorskip("flwr")

RECIPE = REPO / "docs" / "flower.md"
BLOCK = re.compile(r"<!-- receta:(?P<name>[a-z]+) -->\n\s*```\w+\n(?P<body>.*?)\n\s*```", re.DOTALL)
SERVER, CLIENT = "10.77.0.1", "10.77.0.2"
CLIENTS = 2


def recipe():
    """{block name: its text, dedented} of docs/flower.md."""
    return {
        m["name"]: "\n".join(line.strip() for line in m["body"].splitlines())
        for m in BLOCK.finditer(RECIPE.read_text())
    }


def namespaces_available():
    if os.geteuid() != 0:
        return "creating network namespaces needs root (CI runs as root)"
    if shutil.which("ip") is None:
        return "iproute2's ip is not installed"
    probe = f"fedprobe{os.getpid()}"
    done = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None if done.returncode == 0 else f"ip netns add failed: {done.stderr.strip()[:100]}"


class Network:
    """Two namespaces and a veth pair between them; every process started in them is stopped at the end."""

    def __init__(self, root):
        tag = str(os.getpid())[-5:]
        self.server, self.client = f"fs{tag}", f"fc{tag}"
        self.root, self.processes = root, []
        self.environment = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "FLWR_HOME": str(root / "flwr"),
            "FLWR_DISABLE_UPDATE_CHECK": "1",
            "TF_CPP_MIN_LOG_LEVEL": "2",
        }
        commands = [
            ["ip", "netns", "add", self.server],
            ["ip", "netns", "add", self.client],
            ["ip", "link", "add", f"v{self.server}", "type", "veth", "peer", "name", f"v{self.client}"],
            ["ip", "link", "set", f"v{self.server}", "netns", self.server],
            ["ip", "link", "set", f"v{self.client}", "netns", self.client],
            ["ip", "-n", self.server, "addr", "add", f"{SERVER}/24", "dev", f"v{self.server}"],
            ["ip", "-n", self.client, "addr", "add", f"{CLIENT}/24", "dev", f"v{self.client}"],
        ]
        for space in (self.server, self.client):
            commands += [["ip", "-n", space, "link", "set", "lo", "up"]]
            commands += [["ip", "-n", space, "link", "set", f"v{space}", "up"]]
        for command in commands:
            subprocess.run(command, check=True, capture_output=True)

    def shell(self, space, script, cwd):
        return ["ip", "netns", "exec", space, "bash", "-c", f"cd {cwd} && {script}"]

    def start(self, name, space, script, cwd):
        log = open(self.root / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            self.shell(space, script, cwd),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.environment,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.processes.append((name, process, log))
        return process

    def run(self, space, script, cwd, timeout):
        return subprocess.run(
            self.shell(space, script, cwd),
            capture_output=True,
            text=True,
            env=self.environment,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
        )

    def stop(self, name):
        for entry in [e for e in self.processes if e[0] == name]:
            _, process, log = entry
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()
            log.close()
            self.processes.remove(entry)

    def close(self):
        for name in {name for name, _, _ in self.processes}:
            self.stop(name)
        for space in (self.server, self.client):
            subprocess.run(["ip", "netns", "pids", space], capture_output=True)  # what might still hold it
            for pid in subprocess.run(["ip", "netns", "pids", space], capture_output=True, text=True).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            subprocess.run(["ip", "netns", "del", space], capture_output=True)

    def log(self, name):
        return (self.root / f"{name}.log").read_text(errors="replace")


def wait_for(condition, what, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def network(tmp_path):
    if reason := namespaces_available():
        pytest.skip(reason)
    network = Network(tmp_path)
    yield network
    network.close()


def test_the_multi_machine_recipe_runs_between_two_namespaces_with_tls_auth_and_a_restart(network, tmp_path):
    blocks = recipe()
    assert {"certificados", "superlink", "conexion", "registro", "supernode", "run"} <= set(blocks)
    venv = f"{Path(sys.executable).parent}/"
    data = tmp_path / "data"
    run_script(
        "split_data.py",
        "--clients",
        str(CLIENTS),
        "--seed",
        "5",
        "--out",
        str(data),
        "--train-samples",
        "2000",
        "--test-samples",
        "500",
        check=True,
    )

    def concrete(text, **more):
        for example, actual in {
            "IP_DEL_SERVIDOR": SERVER,
            "--clients K": f"--clients {CLIENTS}",
            "num-partitions=K": f"num-partitions={CLIENTS}",
            ".venv/bin/": venv,
            "tools/credentials.py": str(REPO / "tools" / "credentials.py"),
            "/ruta/al/proyecto/": f"{tmp_path}/",
            "/ruta/a/datos": str(data),
            "/ruta/a/data": str(data),
            "/ruta/a/resultados": str(tmp_path / "resultados"),
            "/ruta/a/nodos.json": str(tmp_path / "nodos.json"),
            "num-server-rounds=5": "num-server-rounds=1 local-epochs=1",
            **more,
        }.items():
            text = text.replace(example, actual)
        return text

    made = network.run(network.client, concrete(blocks["certificados"]), tmp_path, timeout=120)
    assert made.returncode == 0, made.stderr
    superlink = concrete(blocks["superlink"]).replace("superlink.db", str(tmp_path / "superlink.db"))
    network.start("superlink", network.server, superlink, tmp_path)
    wait_for(lambda: "https://0.0.0.0:9092" in network.log("superlink"), "the SuperLink over TLS", 120)

    (tmp_path / "flwr").mkdir(exist_ok=True)
    (tmp_path / "flwr" / "config.toml").write_text(
        '[superlink]\ndefault = "curso"\n\n' + concrete(blocks["conexion"]) + "\n"
    )
    nodes = {}
    for client in range(1, CLIENTS + 1):
        registered = network.run(
            network.client, concrete(blocks["registro"], **{"cliente_1": f"cliente_{client}"}), tmp_path, timeout=120
        )
        assert "registered successfully" in registered.stdout, registered.stdout + registered.stderr
        nodes[re.search(r"SuperNode (\d+) registered", registered.stdout)[1]] = client
    (tmp_path / "nodos.json").write_text(json.dumps(nodes))
    for client in range(1, CLIENTS + 1):
        node = concrete(
            blocks["supernode"], **{"cliente_1": f"cliente_{client}", "partition-id=0": f"partition-id={client - 1}"}
        )
        network.start(f"supernode_{client}", network.client, f"{node} --port {9100 + client}", tmp_path)

    def one_round(out):
        command = concrete(blocks["run"]).replace(str(tmp_path / "resultados"), str(out))
        done = network.run(network.client, command, REPO, timeout=600)
        results = json.loads((out / "simulacion.json").read_text()) if (out / "simulacion.json").is_file() else None
        assert results and results["rounds_completed"] == 1, done.stdout[-2000:] + done.stderr[-2000:]
        assert (
            results["history"]["fedavg"][0]["clients"] == [1, 2] and results["history"]["fedavg"][0]["rejected"] == []
        )
        return results

    first = one_round(tmp_path / "resultados")
    network.stop("superlink")  # a restart: the registrations must survive in superlink.db
    network.start("superlink_tras_reinicio", network.server, superlink, tmp_path)
    wait_for(lambda: "https://0.0.0.0:9092" in network.log("superlink_tras_reinicio"), "the restarted SuperLink", 120)
    second = one_round(tmp_path / "resultados_tras_reinicio")
    print(
        f"TLS on https://{SERVER}:9092, {CLIENTS} SuperNodes authenticated ({nodes}), a round before the restart "
        f"({100 * first['history']['fedavg'][0]['accuracy']:.2f}%) and after it "
        f"({100 * second['history']['fedavg'][0]['accuracy']:.2f}%)"
    )
