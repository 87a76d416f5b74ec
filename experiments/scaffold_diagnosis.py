"""SCAFFOLD's divergence on the course's 5 clients, measured: what grows first, and from which client.

    python experiments/scaffold_diagnosis.py

Reads the runs of scenario diagnostico-scaffold-normas (`make scaffold-diagnosis` runs them: three ordinary
two splits with a client of under 300 images are in the docstring of experiments/scenarios/diagnostico-scaffold-
normas.toml) and writes results/simulacion/diagnostico-scaffold-normas/diagnostico.json: per run and round the
accuracy of FedAvg and SCAFFOLD, the server's step ‖Δx‖, ‖c‖ and the mean ‖cᵢ‖; and each client's first-round
‖cᵢ‖, which SCAFFOLD's option II makes (x − yᵢ)/(Kᵢ·η): the distance the client moved (recorded as its drift)
over its number of local steps Kᵢ = E·⌈nᵢ/B⌉ times η. A client of few images takes few steps, so its cᵢ is large,
and the uniform mean c = (1/N)·Σcᵢ that every client then adds for Kⱼ steps carries it.
"""

import json
import math
import sys

from fedmnist.data import read_manifest
from fedmnist.defaults import RESULTS_DIR, SCENARIO_DATA_DIR
from fedmnist.errors import FedMnistError
from fedmnist.files import write_text_atomically

SCENARIO = "diagnostico-scaffold-normas"
# {key in diagnostico.json: the runs' folder}: ordinary splits (c uniform); a client of under 300 images, c uniform
# (the paper's mean) and count-weighted
RUNS = {
    "ordinario": "uniforme",
    "diminuto_uniforme": "cliente_diminuto/uniforme",
    "diminuto_ponderado": "cliente_diminuto/ponderado",
}


def per_round(rows):
    return [
        {
            "round": row["round"],
            "accuracy": row["accuracy"],
            "step_norm": row["drift"]["aggregate_update_norm"] if row.get("drift") else None,
            "server_control_norm": ((row.get("drift") or {}).get("control_norms") or {}).get("server"),
            "mean_client_control_norm": ((row.get("drift") or {}).get("control_norms") or {}).get("mean_client"),
        }
        for row in rows
    ]


def first_round_controls(results, manifest, name):
    """Each client's ‖cᵢ‖ after round 1, from its recorded distance, its step count and η."""
    row = results["history"][name][0]
    config = results["config"]
    clients = row["clients"]
    out = {}
    for cid, distance in zip(clients, row["drift"]["client_distance"]):
        count = manifest["clients"][str(cid)]["num_samples"]
        steps = config["epochs"] * math.ceil(count / config["batch_size"])
        out[str(cid)] = {
            "num_samples": count,
            "local_steps": steps,
            "distance": distance,
            "control_norm": distance / (steps * config["learning_rate"]),
        }
    return out


def main():
    root = RESULTS_DIR / "simulacion" / SCENARIO
    found = {}
    for label, folder in RUNS.items():
        for path in sorted((root / folder).glob("semilla_*/simulacion.json")):
            results = json.loads(path.read_text())
            seed = results["config"]["seed"]
            try:
                manifest = read_manifest(SCENARIO_DATA_DIR / SCENARIO / f"semilla_{seed}")
            except FedMnistError as err:
                sys.exit(f"scaffold_diagnosis.py: error: {err}")
            scaffold = next(name for name in results["history"] if name.startswith("scaffold"))
            found.setdefault(label, {})[str(seed)] = {
                "rounds": {name: per_round(rows) for name, rows in results["history"].items()},
                "first_round_client_controls": first_round_controls(results, manifest, scaffold),
                "weighted": results["config"]["parameters"][scaffold].get("weighted"),
            }
    if not found:
        sys.exit(f"scaffold_diagnosis.py: error: no runs under {root}; run the scenario first")
    out = root / "diagnostico.json"
    write_text_atomically(out, json.dumps(found, indent=2) + "\n")
    for label, seeds in found.items():
        for seed, run in seeds.items():
            controls = run["first_round_client_controls"]
            print(
                f"{label}, seed {seed}: first-round ‖cᵢ‖ "
                + ", ".join(f"{cid}: {c['control_norm']:.2f} ({c['local_steps']} steps)" for cid, c in controls.items())
            )
            for name, rows in run["rounds"].items():
                print(f"  {name:<12} accuracy " + " ".join(f"{100 * r['accuracy']:5.1f}" for r in rows))
    print(f"Wrote {out}")


if __name__ == "__main__":
    main()
