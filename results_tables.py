"""The tables of the essay and the README, rendered from results/*.json, the one source of their numbers.

    python results_tables.py --write ensayo_aprendizaje_federado.md README.md
    python results_tables.py --check ensayo_aprendizaje_federado.md README.md

A document marks each table as

    <!-- tabla:NAME -->
    | ... |
    <!-- /tabla -->

--write replaces what is between the markers with the table rendered from results/; --check exits
non-zero, naming the table, when a document's copy differs (results changed, or someone edited a number).
"""

import argparse
import json
import re
import sys
from pathlib import Path

from atomic import write_text_atomically

PROJECT_DIR = Path(__file__).resolve().parent
RESULTS_DIR = PROJECT_DIR / "results"
RULES = {"fedavg": "FedAvg", "fedprox": "FedProx", "fedmed": "FedMed", "trimmed_mean": "Media recortada", "krum": "Krum"}
SCENARIOS = {"curso-iid": "IID", "curso-dirichlet": "Dirichlet α = 0.1", "fedavg-iid": "IID", "fedavg-shards": "2 fragmentos"}
STRATEGY_NAMES = {"fedavg": "FedAvg", "fedprox:0.01": "FedProx (μ = 0.01)", "fedmed": "FedMed"}
FLOWER_RUNS = {"propia": "simulación propia (`federated_simulation.py`)", "flower_simulacion": "Flower, simulación (`flwr run`)",
               "flower_despliegue": "Flower, despliegue (SuperLink + 5 SuperNodes)"}
MARKED = re.compile(r"(<!-- tabla:(?P<name>[a-z_]+) -->\n)(?P<body>.*?)(<!-- /tabla -->)", re.DOTALL)


def load(relative):
    return json.loads((RESULTS_DIR / relative).read_text())


def markdown(header, rows, align):
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---:" if a == "r" else "---" for a in align) + " |"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"


def mean_std(cell):
    return "n/a" if cell is None else f"{cell['mean']:.2f} ± {cell['std']:.2f}"


def one_shot_table():
    """Rules and local models, one round without attacks: mean ± std over the seeds, and each seed."""
    summary = load("semillas.json")
    seeds = summary["config"]["seeds"]
    names = {**RULES, "local_mean": "modelo local (media de los 5)", "local_best": "modelo local (el mejor)"}
    rows = [[name, mean_std(summary["one_shot"][key]), *(f"{v:.2f}" for v in summary["one_shot"][key]["values"])]
            for key, name in names.items()]
    return markdown(["método", "exactitud (%)", *(f"semilla {s}" for s in seeds)], rows, "lr" + "r" * len(seeds))


def robustness_table():
    """Every rule under every attack, M = 1 and 2 of K: mean ± std over the seeds."""
    summary = load("semillas.json")
    rows = [[attack, m, *(mean_std(row[key]) for key in RULES)]
            for attack, by_m in summary["attacks"].items() for m, row in by_m.items() if m != "0"]
    return markdown(["ataque", "M", *RULES.values()], rows, "lr" + "r" * len(RULES))


def rounds_table():
    """The named multi-round scenarios: final accuracy, rounds to 97 % and 99 %, seconds."""
    rows = []
    for scenario, partition in SCENARIOS.items():
        results = load(f"simulacion/{scenario}/simulacion.json")
        config = results["config"]
        for name, row in results["summary"].items():
            rows.append([f"`{scenario}`", partition, f"{config['num_clients']} / {config['fraction']} / {config['epochs']} / {config['batch_size']}",
                         STRATEGY_NAMES.get(name, name), f"{100 * row['final_accuracy']:.2f}",
                         str(row["rounds_to_97"] or "—"), str(row["rounds_to_99"] or "—")])
    return markdown(["escenario", "partición", "K / C / E / B", "estrategia", "exactitud final (%)", "rondas hasta 97 %",
                     "rondas hasta 99 %"], rows, "llllrrr")


def flower_table():
    """The same federation on the project's simulation and on Flower: final accuracy and wall time."""
    comparison = load("flower/comparacion.json")
    rows = [[FLOWER_RUNS[name], f"{100 * run['final_accuracy']:.2f}", f"{run['wall_seconds']:.0f}"]
            for name, run in comparison["runs"].items()]
    return markdown(["ejecución", f"exactitud tras {comparison['config']['rounds']} rondas (%)", "tiempo total (s)"], rows, "lrr")


def hostile_table():
    """What loading each crafted update costs, next to honest ones (python -m benchmarks.hostile_updates)."""
    bench = load("benchmarks.json")["hostile_updates"]
    rows = [[row["file"], f"{row['bytes'] / 1e6:.2f}", f"{1000 * row['seconds']:.1f}", f"{row['peak_bytes'] / 1e6:.1f}",
             "aceptado" if row["outcome"] == "accepted" else row["outcome"].replace("rejected: ", "rechazado: ", 1)[:70].replace("|", "\\|")]
            for row in bench["files"]]
    return markdown(["archivo", "tamaño (MB)", "tiempo (ms)", "memoria pico (MB)", "resultado"], rows, "lrrrl")


TABLES = {"una_ronda": one_shot_table, "robustez": robustness_table, "rondas": rounds_table, "flower": flower_table,
          "hostiles": hostile_table}


def rendered(name, source):
    """Table `name` rendered from results/; KeyError naming the document if there is no such table."""
    if name not in TABLES:
        raise KeyError(f"{source}: unknown table {name!r}; known: {', '.join(TABLES)}")
    return TABLES[name]()


def render_document(text, source):
    """The document with every marked table re-rendered."""
    return MARKED.sub(lambda m: m.group(1) + rendered(m.group("name"), source) + m.group(4), text)


def stale_tables(text, source):
    """Names of the marked tables whose copy in the document differs from the rendered one."""
    return [m.group("name") for m in MARKED.finditer(text) if m.group("body") != rendered(m.group("name"), source)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help="rewrite the marked tables in place")
    action.add_argument("--check", action="store_true", help="fail if a marked table differs from results/")
    parser.add_argument("documents", type=Path, nargs="+")
    args = parser.parse_args(argv)
    failed = False
    for path in args.documents:
        try:
            text = path.read_text()
            if args.write:
                write_text_atomically(path, render_document(text, path))
                print(f"{path}: {len(MARKED.findall(text))} tables rendered from results/")
            elif stale := stale_tables(text, path):
                print(f"{path}: tables {', '.join(stale)} differ from results/; run python results_tables.py --write {path}")
                failed = True
        except (OSError, KeyError, json.JSONDecodeError) as err:
            sys.exit(f"results_tables.py: error: {err}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
