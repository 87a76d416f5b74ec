"""The tables of the essay and the README, rendered from results/*.json, the one source of their numbers.

A document marks each table as

    <!-- tabla:NAME -->
    | ... |
    <!-- /tabla -->

`render_document` replaces what is between the markers with the table rendered
from results/; `stale_tables` names the tables whose copy differs (results
changed, or someone edited a number). experiments/tables.py is the command line.
"""

import json
import re
import statistics

from fedmnist import attacks, strategies
from fedmnist.comparison import read_comparison
from fedmnist.defaults import RESULTS_DIR
from fedmnist.strategies import label_of
from fedmnist.studies import cited, factors, scenarios, seed_summary, tuning
from fedmnist.studies.significance import VERDICT_WORDS, oriented

FLOWER_RUNS = {
    "propia": "simulación propia (`experiments/simulation.py`)",
    "flower_simulacion": "Flower, simulación (`flwr run`)",
    "flower_despliegue": "Flower, despliegue (SuperLink + 5 SuperNodes)",
}
MARKED = re.compile(r"(<!-- tabla:(?P<name>[a-z_]+) -->\n)(?P<body>.*?)(<!-- /tabla -->)", re.DOTALL)


def load(relative):
    return json.loads((RESULTS_DIR / relative).read_text())


def rule_labels():
    """{strategy key: Spanish label} of the one-shot rules without noise (the robustness study's), from the registry."""
    return {row.key: row.label for row in strategies.noiseless_one_shot_rows()}


def markdown(header, rows, align):
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---:" if a == "r" else "---" for a in align) + " |"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"


def mean_std(cell):
    return "n/a" if cell is None else f"{cell['mean']:.2f} ± {cell['std']:.2f}"


def paired_text(difference):
    """A paired difference as "mean [low, high]" in points, signs shown."""
    low, high = difference["ci95"]
    return f"{difference['mean']:+.2f} [{low:+.2f}, {high:+.2f}]"


def one_shot_table():
    """Rules and local models, one round without attacks: mean ± std over the seeds, and each seed."""
    summary = load("semillas.json")
    seeds = summary["config"]["seeds"]
    names = {**rule_labels(), "local_mean": "modelo local (media de los 5)", "local_best": "modelo local (el mejor)"}
    fedavg = summary["one_shot"]["fedavg"]["values"]

    def minus_fedavg(key):
        if key == "fedavg":
            return "—"
        return paired_text(seed_summary.paired(summary["one_shot"][key]["values"], fedavg))

    rows = [
        [
            name,
            mean_std(summary["one_shot"][key]),
            minus_fedavg(key),
            *(f"{v:.2f}" for v in summary["one_shot"][key]["values"]),
        ]
        for key, name in names.items()
        if summary["one_shot"].get(key)
    ]
    header = ["método", "exactitud (%)", "− FedAvg (puntos, IC 95 % pareado)", *(f"semilla {s}" for s in seeds)]
    return markdown(header, rows, "lrr" + "r" * len(seeds))


def verdict_cells(verdict):
    """The difference, Holm's interval and the verdict word of one comparison, in points."""
    low, high = verdict["holm_interval"] or verdict["ci95"]
    return [f"{verdict['mean']:+.2f}", f"[{low:+.2f}, {high:+.2f}]", VERDICT_WORDS[verdict["verdict"]]]


def tuned_one_round_table():
    """The course's round over the study's fresh seeds: each row's test and validation accuracy, and its difference
    from FedAvg within the family of every pair (Holm's interval; equivalent within the declared margin)."""
    summary = load("una_ronda/semillas.json")
    family = summary["comparisons"]["one_round"]
    labels = {
        **rule_labels(),
        "local_best": "modelo local (el mejor en validación)",
        "local_mean": "modelo local (media)",
    }
    rows = []
    for key, name in labels.items():
        if key not in summary["one_shot"]:
            continue
        test, validation = summary["one_shot"][key], summary["one_shot_validation"][key]
        compared = ["—", "—", "referencia"] if key == "fedavg" else ["", "", "no comparado"]
        if key not in ("fedavg", "local_mean"):
            compared = verdict_cells(oriented(family, key, "fedavg"))
        rows.append([name, mean_std(test), mean_std(validation), *compared])
    header = ["método", "test (%)", "validación (%)", "− FedAvg (puntos)", "intervalo de Holm", "veredicto"]
    return markdown(header, rows, "lrrrrl")


def fedprox_optimizer_table():
    """FedProx at the course's μ against FedAvg with Adam local steps and with SGD, and the difference of the gaps."""
    summary = load("una_ronda/semillas.json")
    family = summary["comparisons"]["fedprox_local_optimizer"]
    names = {
        "fedprox - fedavg (adam)": "FedProx − FedAvg, pasos locales Adam",
        "fedprox - fedavg (sgd)": "FedProx − FedAvg, pasos locales SGD",
        "gap with adam - gap with sgd": "diferencia de las dos brechas (Adam − SGD)",
    }
    rows = [[names.get(key, key), *verdict_cells(verdict)] for key, verdict in family.items()]
    return markdown(["comparación (μ del curso)", "puntos", "intervalo de Holm", "veredicto"], rows, "lrrl")


def robustness_table(source="semillas.json"):
    """Every rule under every attack, M = 1 and 2 of K: mean ± std over the seeds."""
    summary = load(source)
    measured = {key for by_m in summary["attacks"].values() for row in by_m.values() for key in row}
    labels = {key: label for key, label in rule_labels().items() if key in measured}  # rules the study ran
    rows = [
        [attacks.label(attack), m, *(mean_std(row.get(key)) for key in labels)]
        for attack, by_m in summary["attacks"].items()
        for m, row in by_m.items()
        if m != "0"
    ]
    return markdown(["ataque", "M", *labels.values()], rows, "lr" + "r" * len(labels))


def rounds_table():
    """The named single-run scenarios: final accuracy, rounds to 97 % and 99 %, seconds."""
    rows = []
    for name in scenarios.names():
        scenario = scenarios.load(name)
        if scenario.seeds:
            continue
        results = load(f"simulacion/{name}/simulacion.json")
        config = results["config"]
        for strategy, row in results["summary"].items():
            settings = f"{config['num_clients']} / {config['fraction']} / {config['epochs']} / {config['batch_size']}"
            rows.append(
                [
                    f"`{scenario.name}`",
                    scenario.label,
                    settings,
                    label_of(strategy),
                    f"{100 * row['final_accuracy']:.2f}",
                    str(row["rounds_to_97"] or "—"),
                    str(row["rounds_to_99"] or "—"),
                ]
            )
    return markdown(
        [
            "escenario",
            "partición",
            "K / C / E / B",
            "estrategia",
            "exactitud final (%)",
            "rondas hasta 97 %",
            "rondas hasta 99 %",
        ],
        rows,
        "llllrrr",
    )


def flower_table():
    """The same federation on the project's simulation and on Flower: final accuracy and wall time."""
    comparison = load("flower/comparacion.json")
    rows = [
        [FLOWER_RUNS[name], f"{100 * run['final_accuracy']:.2f}", f"{run['wall_seconds']:.0f}"]
        for name, run in comparison["runs"].items()
    ]
    header = ["ejecución", f"exactitud tras {comparison['config']['rounds']} rondas (%)", "tiempo total (s)"]
    return markdown(header, rows, "lrr")


def hostile_table():
    """What loading each crafted update costs, next to honest ones (python -m benchmarks.hostile_updates)."""
    bench = load("benchmarks.json")["hostile_updates"]
    rows = []
    for row in bench["files"]:
        outcome = (
            "aceptado"
            if row["outcome"] == "accepted"
            else row["outcome"].replace("rejected: ", "rechazado: ", 1)[:70].replace("|", "\\|")
        )
        rows.append(
            [
                row["file"],
                f"{row['bytes'] / 1e6:.2f}",
                f"{1000 * row['seconds']:.1f}",
                f"{row['peak_bytes'] / 1e6:.1f}",
                outcome,
            ]
        )
    return markdown(["archivo", "tamaño (MB)", "tiempo (ms)", "memoria pico (MB)", "resultado"], rows, "lrrrl")


def demo_table():
    """What `make demo` prints at the end: every strategy and every local model, on validation (where the best is
    chosen) and on the common test set."""
    results = read_comparison(RESULTS_DIR)

    def validation(entry):
        value = entry.get("validation_accuracy")
        return "—" if value is None else f"{100 * value:.2f}"

    rows = []
    for key, entry in results["methods"].items():
        name = f"**{entry['label']}**" if key == results["best_method"] else entry["label"]
        if entry["status"] != "ok":
            rows.append([name, "—", "—", "—", "—", entry["status"]])
            continue
        said = [entry["note"]] if entry.get("note") else []
        said += [f"el modelo del cliente {entry['returned_client']}"] if entry.get("returned_client") else []
        if key in results.get("tied_with_best_on_test", {}):
            said.append(f"no se distingue del mejor en test (McNemar p = {results['tied_with_best_on_test'][key]:.2f})")
        rows.append(
            [
                name,
                validation(entry),
                f"{100 * entry['accuracy']:.2f}",
                f"{entry['loss']:.4f}",
                f"{entry['macro_f1']:.4f}",
                "; ".join(said),
            ]
        )
    for cid, entry in results["local_models"].items():
        rows.append(
            [
                f"modelo local {cid}",
                validation(entry),
                f"{100 * entry['accuracy']:.2f}",
                f"{entry['loss']:.4f}",
                f"{entry['macro_f1']:.4f}",
                f"{entry['num_samples']} imágenes",
            ]
        )
    header = ["modelo", "validación (%)", "test: exactitud (%)", "pérdida", "F1 macro", "nota"]
    return markdown(header, rows, "lrrrrl")


STAGES = {"split_data": "reparto de los datos", "global_aggregation": "agregación y comparación", "total": "total"}


def stage_name(stage):
    """A stage of the workflow's timings in Spanish: split_data, round_<r>_client_<n>, round_<r>_aggregation, total
    (and the one-round names of earlier measurements: client_<n>, global_aggregation)."""
    if match := re.fullmatch(r"round_(\d+)_(client_(\d+)|aggregation)", stage):
        what = f"cuaderno del cliente {match[3]}" if match[3] else STAGES["global_aggregation"]
        return f"ronda {match[1]}: {what}"
    return STAGES.get(stage, stage.replace("client_", "cuaderno del cliente "))


def stages_table():
    """Wall time of each stage of the course workflow (python -m benchmarks.end_to_end)."""
    bench = load("benchmarks.json")["end_to_end"]
    rows = [[stage_name(stage), f"{seconds:.0f}"] for stage, seconds in bench["seconds"].items()]
    return markdown(["etapa", "segundos"], rows, "lr")


def training_table():
    """Local-training throughput per batch size against the machine's GEMM ceiling (python -m benchmarks.training)."""
    bench = load("benchmarks.json")["training"]
    rows = [
        [
            str(row["batch_size"]),
            f"{row['images_per_second']:.0f}",
            " / ".join(f"{r:.0f}" for r in row["all_runs_images_per_second"]),
            f"{100 * row['fraction_of_ceiling']:.1f}",
            f"{100 * row['test_accuracy_after_1_epoch']:.2f}",
        ]
        for row in bench["rows"]
    ]
    header = [
        "lote B",
        "imágenes/s (mejor)",
        "cada ejecución",
        f"% del techo ({bench['ceiling_images_per_second']:.0f} imágenes/s)",
        "exactitud tras 1 época (%)",
    ]
    return markdown(header, rows, "rrrrr")


def compile_settings_table():
    """A plain Keras fit under each compile setting the project chose between (python -m benchmarks.training)."""
    bench = load("benchmarks.json")["training"]
    rows = [
        ["sí" if row["jit_compile"] else "no", str(row["steps_per_execution"]), f"{row['images_per_second']:.0f}"]
        for row in bench["settings_comparison"]
    ]
    return markdown(["jit_compile", "steps_per_execution", "imágenes/s (B = 64)"], rows, "lrr")


def aggregation_table():
    """Every rule at K = 10, 100, 1000 beside Flower's own functions (python -m benchmarks.aggregation)."""
    bench = load("benchmarks.json")["aggregation"]
    labels = rule_labels()
    labels["trimmed_mean"] += f" (β = {bench['trim_beta']:g})"
    labels["krum"] += f" (f = {str(bench['krum_f']).replace('K // 10', '⌊K/10⌋')})"
    rows = []
    for row in bench["rows"]:
        flower = row.get("flower_seconds")
        same = (
            "bit a bit"
            if row.get("bitwise_equal")
            else f"Δ ≤ {row['max_abs_difference']:.1e}"
            if "max_abs_difference" in row
            else ""
        )
        rows.append(
            [
                str(row["clients"]),
                labels.get(row["rule"], row["rule"]),
                f"{row['seconds']:.3f}",
                f"{row['peak_extra_models']:.1f}",
                "no medido" if flower is None else f"{flower:.3f}",
                "" if flower is None else f"{row['flower_peak_extra_models']:.1f}",
                "" if flower is None else f"{row['speedup']:.1f}×",
                same if flower is not None else "",
            ]
        )
    header = [
        "K",
        "regla",
        "nuestra (s)",
        "memoria extra (modelos)",
        "Flower (s)",
        "memoria Flower (modelos)",
        "aceleración",
        "mismo resultado",
    ]
    return markdown(header, rows, "rlrrrrrl")


def registry_table():
    """Every registered strategy: its key, its reference, its parameters with their defaults, its Flower class."""
    rows = []
    for row in strategies.REGISTRY.values():
        parameters = ", ".join(
            f"{p.symbol} ({p.default:g}){', en el cliente' if p.client_side else ''}" for p in row.parameters
        )
        rows.append(
            [
                f"`{row.key}`",
                row.reference.split(":")[0],
                parameters or "—",
                "varias rondas" if row.multi_round_only else "una y varias",
                f"`{row.flower}`" if row.flower else "—",
            ]
        )
    return markdown(["clave", "referencia", "parámetros (por defecto)", "rondas", "Flower"], rows, "lllll")


def seeded_summaries(study="heterogeneity"):
    """(scenario, resumen.json) of every scenario of `study` run over seeds that has its summary in results/."""
    found = []
    for name in scenarios.of_study(study):
        scenario = scenarios.load(name)
        path = scenarios.results_dir(name) / seed_summary.SUMMARY_FILE
        if scenario.seeds and path.is_file():
            found.append((scenario, seed_summary.read_seed_summary(path, name)))
    return found


def per_seed(values):
    return " · ".join("—" if v is None else str(v) for v in values)


NO_DRIFT_RESULTS = "(sin resultados: `make heterogeneity`)"


def run_settings(config):
    return f"{config['num_clients']} / {config['fraction']} / {config['epochs']} / {config['batch_size']}"


def drift_full_table():
    """Every strategy of the heterogeneous-data scenarios over their seeds: final accuracy, rounds to 97 % and 99 %."""
    rows = []
    for scenario, summary in seeded_summaries():
        entries = list(summary["strategies"].values())
        if "centralized" in summary:
            entries.append(summary["centralized"])
        for entry in entries:
            rows.append(
                [
                    scenario.label,
                    run_settings(summary["config"]),
                    entry["label"]
                    if entry.get("label") != "centralizado"
                    else f"centralizado ({entry['epochs']} épocas)",
                    mean_std(entry["final_accuracy"]),
                    per_seed(entry.get("rounds_to_97", ["—"])),
                    per_seed(entry.get("rounds_to_99", ["—"])),
                ]
            )
    if not rows:
        rows.append([NO_DRIFT_RESULTS, "", "", "", "", ""])
    header = ["partición", "K / C / E / B", "estrategia", "exactitud final (%)", "rondas hasta 97 %", "hasta 99 %"]
    return markdown(header, rows, "lllrll")


def paired_difference(pairs, a, b):
    """a − b from a summary's "paired_final_accuracy", whichever order it stored the pair in."""
    if f"{a} - {b}" in pairs:
        return pairs[f"{a} - {b}"]
    stored = pairs[f"{b} - {a}"]
    low, high = stored["ci95"]
    return {**stored, "mean": -stored["mean"], "ci95": [-high, -low]}


def drift_table():
    """One row per heterogeneous-data scenario: FedAvg, the highest mean final accuracy, centralized.

    The highest mean is not always a winner: others may tie with it, and the paired CI against FedAvg says
    whether it even beats FedAvg.
    """
    rows = []
    for scenario, summary in seeded_summaries():
        strategies_ = summary["strategies"]
        best = max(strategies_, key=lambda name: strategies_[name]["final_accuracy"]["mean"])
        pairs = summary["paired_final_accuracy"]
        central = summary.get("centralized")
        rows.append(
            [
                scenario.label,
                run_settings(summary["config"]),
                mean_std(strategies_["fedavg"]["final_accuracy"]),
                f"{strategies_[best]['label']}: {mean_std(strategies_[best]['final_accuracy'])}",
                "—" if best == "fedavg" else paired_text(paired_difference(pairs, "fedavg", best)),
                "—" if central is None else f"{mean_std(central['final_accuracy'])} ({central['epochs']} épocas)",
            ]
        )
    if not rows:
        rows.append([NO_DRIFT_RESULTS, "", "", "", "", ""])
    header = [
        "partición",
        "K / C / E / B",
        "FedAvg (%)",
        "mayor media (%)",
        "FedAvg − mayor media (IC 95 %)",
        "centralizado (%)",
    ]
    return markdown(header, rows, "llrlrr")


NO_STUDY_RESULTS = "(sin resultados: `make study`)"


def tuned_studies(results=RESULTS_DIR):
    """(scenario, ajuste.json, resumen.json or None) of each tuned-study scenario whose tuning is in `results`."""
    found = []
    for name in scenarios.of_study("study"):
        folder = tuning.results_dir(name, results)
        if not (folder / tuning.TUNING_FILE).is_file():
            continue
        summary_path = folder / seed_summary.SUMMARY_FILE
        rewrite = f"python experiments/tune.py --scenario {name} --report"
        summary = seed_summary.read_seed_summary(summary_path, name, rewrite) if summary_path.is_file() else None
        found.append((scenarios.load(name), json.loads((folder / tuning.TUNING_FILE).read_text()), summary))
    return found


def symbols_of(key):
    """{grid name: symbol} of strategy `key`'s grid: the client's η and the row's parameters (η_g the server's)."""
    return {"learning_rate": "η", **{p.name: p.symbol for p in strategies.get(key).parameters}}


def setting_text(key, setting):
    """A grid point as the papers write it: η = 0.2, μ = 0.01."""
    symbols = symbols_of(key)
    return ", ".join(f"{symbols[name]} = {value:g}" for name, value in setting.items())


def grid_edges(key, found):
    """(edges, fixed): the symbols of the parameters whose chosen value is the smallest or largest of two or more
    tried, and of those tried at one value only (not tuned)."""
    edges, fixed, symbols = [], [], symbols_of(key)
    for name, value in found["chosen"].items():
        tried = sorted({point["setting"][name] for point in found["grid"]})
        if len(tried) == 1:
            fixed.append(symbols[name])
        elif value in (tried[0], tried[-1]):
            edges.append(symbols[name])
    return edges, fixed


def tuning_table(results=RESULTS_DIR):
    """Each tuned scenario's grids: points tried, the setting chosen on validation, its score, the parameters it
    chose at an edge of their grid (a wider grid might have found better) and those it did not tune."""
    rows = []
    for scenario, found, _ in tuned_studies(results):
        for key, result in found["strategies"].items():
            best = max(point["validation_score"] for point in result["grid"])
            edges, fixed = grid_edges(key, result)
            rows.append(
                [
                    scenario.label,
                    strategies.get(key).label,
                    str(len(result["grid"])),
                    setting_text(key, result["chosen"]),
                    f"{100 * best:.2f}",
                    ", ".join(edges) or "—",
                    ", ".join(fixed) or "—",
                ]
            )
    if not rows:
        rows.append([NO_STUDY_RESULTS, "", "", "", "", "", ""])
    header = ["escenario", "estrategia", "puntos", "elegido en validación", "validación (%)", "en el borde", "fijo"]
    return markdown(header, rows, "llrlrll")


def scenario_cell(scenario, summary):
    return f"{scenario.label} ({len(summary['config']['seeds'])} semillas)"


def tuned_strategy_cell(name, found):
    key = strategies.parse_spec(name).strategy.key
    return f"{strategies.get(key).label} ({setting_text(key, found['strategies'][key]['chosen'])})"


def tuned_study_table(results=RESULTS_DIR):
    """Each tuned scenario on its reported seeds: every strategy at its chosen setting, the primary endpoint (test
    accuracy over the last 5 rounds) and the last round, and its difference from FedAvg on the primary endpoint
    within the family of every pair (Holm's interval; equivalent within the declared margin)."""
    endpoint = seed_summary.PRIMARY_ENDPOINT
    rows = []
    for scenario, found, summary in tuned_studies(results):
        if summary is None:
            continue
        family = summary["comparisons"][endpoint]
        for name, entry in summary["strategies"].items():
            compared = ["—", "—", "referencia"] if name == "fedavg" else verdict_cells(oriented(family, name, "fedavg"))
            cells = [mean_std(entry[endpoint]), mean_std(entry["final_accuracy"])]
            rows.append([scenario_cell(scenario, summary), tuned_strategy_cell(name, found), *cells, *compared])
        if "centralized" in summary:
            central = summary["centralized"]
            label = f"centralizado ({central['epochs']} épocas)"
            rows.append([scenario_cell(scenario, summary), label, "", mean_std(central["final_accuracy"]), "", "", ""])
    if not rows:
        rows.append([NO_STUDY_RESULTS, "", "", "", "", "", ""])
    header = [
        "escenario",
        "estrategia (ajuste elegido)",
        "test, 5 últimas rondas (%)",
        "test, última ronda (%)",
        "− FedAvg (puntos)",
        "intervalo de Holm",
        "veredicto",
    ]
    return markdown(header, rows, "llrrrrl")


def tuned_best_table(results=RESULTS_DIR):
    """Each tuned scenario's highest mean on the primary endpoint against every other strategy, in the same family:
    the highest mean is "the best" only where every one of these says better."""
    endpoint = seed_summary.PRIMARY_ENDPOINT
    rows = []
    for scenario, found, summary in tuned_studies(results):
        if summary is None:
            continue
        family, entries = summary["comparisons"][endpoint], summary["strategies"]
        best = max(entries, key=lambda name: entries[name][endpoint]["mean"])
        for name in entries:
            if name != best:
                rows.append(
                    [
                        scenario_cell(scenario, summary),
                        f"{tuned_strategy_cell(best, found)} − {strategies.label_of(name, short=True)}",
                        *verdict_cells(oriented(family, best, name)),
                    ]
                )
    if not rows:
        rows.append([NO_STUDY_RESULTS, "", "", "", ""])
    return markdown(["escenario", "mayor media − otra", "puntos", "intervalo de Holm", "veredicto"], rows, "llrrl")


def study_compute_table(results=RESULTS_DIR):
    """The compute each tuned scenario has spent so far, summed from the seconds its finished runs recorded: the
    tuning's grid points, the report's runs (of the strategies × seeds it needs) and its centralized baselines."""
    rows = []
    for scenario, found, _ in tuned_studies(results):
        spent = tuning.compute_spent(tuning.results_dir(scenario.name, results))
        needed = len(found["strategies"]) * len(scenario.seeds)
        (tuned, tuning_hours), (reported, report_hours), (baselines, baseline_hours) = spent.values()
        rows.append(
            [
                scenario.label,
                f"{tuned} · {tuning_hours:.1f}",
                f"{reported} de {needed} · {report_hours:.1f}",
                f"{baselines} de {len(scenario.seeds)} · {baseline_hours:.1f}",
                f"{tuning_hours + report_hours + baseline_hours:.1f}",
            ]
        )
    if not rows:
        rows.append([NO_STUDY_RESULTS, "", "", "", ""])
    header = [
        "escenario",
        "ajuste: ejecuciones · horas",
        "informe: ejecuciones · horas",
        "centralizado: semillas · horas",
        "horas",
    ]
    return markdown(header, rows, "lrrrr")


ARM_LABELS = {
    "sequential": "por cliente, este proceso",
    "pool": "por cliente, 2 procesos de 1 hilo",
    "batched": "por lotes de clientes (este proceso)",
}


def rounds_per_hour_table():
    """Rounds per hour of the three trainers, interleaved repetitions (benchmarks/rounds.py)."""
    bench = load("benchmarks.json")["rounds"]
    rows = []
    for scenario, result in bench["scenarios"].items():
        for arm, measured in result["arms"].items():
            repetitions = measured["repetitions"]
            rows.append(
                [
                    scenario,
                    ARM_LABELS[arm],
                    " · ".join(f"{r['first_round_seconds']:.1f}" for r in repetitions),
                    " · ".join(f"{r['rounds_per_hour']:.0f}" for r in repetitions),
                    f"{measured['median_rounds_per_hour']:.0f}",
                    f"{statistics.median(r['training_share_of_ceiling'] for r in repetitions) * 100:.0f}",
                ]
            )
    header = [
        "escenario",
        "entrenamiento local",
        "1.ª ronda (s), por repetición",
        "rondas/hora, por repetición",
        "mediana",
        "entrenamiento, % del techo GEMM",
    ]
    return markdown(header, rows, "llrrrr")


def rounds_per_hour_summary():
    """The README's short form: each trainer's median rounds per hour in each scenario (benchmarks/rounds.py)."""
    bench = load("benchmarks.json")["rounds"]
    rows = []
    for scenario, result in bench["scenarios"].items():
        arms = result["arms"]
        per_repetition = arms.get("batched", {}).get("speedup_over_pool_per_repetition", [])
        rows.append(
            [scenario]
            + [f"{arms[arm]['median_rounds_per_hour']:.0f}" if arm in arms else "—" for arm in ARM_LABELS]
            + [" · ".join(f"{r:.2f}" for r in per_repetition) or "—"]
        )
    header = ["escenario", *ARM_LABELS.values(), "por lotes / 2 procesos, por repetición"]
    return markdown(header, rows, "lrrrr")


PRIVACY_README_ROWS = ("fedavg", "dpfedavg:0.1", "dpfedavg:1")
NO_PRIVACY_RESULTS = "(sin resultados: `make privacy`)"


def privacy_summary():
    path = RESULTS_DIR / "privacidad" / "privacidad.json"
    return json.loads(path.read_text()) if path.is_file() else None


def epsilon_text(row):
    if "noise_multiplier" not in row:
        return "—"
    return "∞ (sin ruido)" if row["epsilon"] is None else f"{row['epsilon']:.3g}"


def privacy_rows(scenario_names=None, strategy_names=None):
    """DP-FedAvg against its ε: a row per strategy of each privacy scenario (None: all of them)."""
    summary = privacy_summary()
    if summary is None:
        return [[NO_PRIVACY_RESULTS, "", "", "", "", "", ""]]
    rows = []
    for key, scenario in summary["scenarios"].items():
        if scenario_names and key not in scenario_names:
            continue
        for name, row in scenario["strategies"].items():
            if strategy_names and name not in strategy_names:
                continue
            rows.append(
                [
                    scenario["label"],
                    row["label"],
                    "—" if "noise_std" not in row else f"{row['noise_std']:.2g}",
                    epsilon_text(row),
                    mean_std(row["final_accuracy"]),
                    "—" if name == "fedavg" else paired_text(row["minus_fedavg"]),
                    paired_text(row["minus_clip_only"]) if "minus_clip_only" in row else "—",
                ]
            )
    return rows


PRIVACY_HEADER = [
    "partición",
    "estrategia",
    "σ",
    "ε (δ = K^−1.1)",
    "exactitud final (%)",
    "− FedAvg (puntos, IC 95 %)",
    "− solo recorte, z = 0 (puntos, IC 95 %)",
]


def privacy_table():
    """The README's accuracy against ε: FedAvg and two noise levels, IID and shards."""
    rows = privacy_rows(("privacidad-iid", "privacidad-fragmentos"), PRIVACY_README_ROWS)
    return markdown(PRIVACY_HEADER, rows, "llrrrrr")


def privacy_full_table():
    """Every strategy of every privacy scenario against its ε."""
    return markdown(PRIVACY_HEADER, privacy_rows(), "llrrrrr")


def leakage_table():
    """What leaks with and without DP: label inference from one update, membership AUC of local and global models."""
    summary = privacy_summary()
    header = [
        "partición",
        "clases nombradas exactamente (%): sin ruido · z = 1 · z = 10 locales",
        "AUC pertenencia (%): modelo local",
        "global FedAvg",
        "global DP-FedAvg (z = 0.1)",
    ]
    if summary is None:
        return markdown(header, [[NO_PRIVACY_RESULTS, "", "", "", ""]], "lrrrr")
    rows = []
    for scenario in summary["scenarios"].values():
        labels = (scenario["label_inference"] or {}).get("final")
        named = "— (IID: todas)" if not labels else " · ".join(mean_std(labels[z]["exact"]) for z in ("0", "1", "10"))
        auc = scenario["membership_auc"]
        rows.append(
            [
                scenario["label"],
                named,
                mean_std(auc["local"]),
                mean_std(auc["global"]["fedavg"]),
                mean_std(auc["global"].get("dpfedavg:0.1")),
            ]
        )
    return markdown(header, rows, "lrrrr")


def cohort_table():
    """How many clients a round would keep DP-FedAvg within a point of FedAvg at ε = 1 (trend and accountant)."""
    summary = privacy_summary()
    header = ["partición", "σ* (el mayor a ≤ 1 punto)", "q", "z para ε = 1", "clientes por ronda", "población", "δ"]
    if summary is None:
        return markdown(header, [[NO_PRIVACY_RESULTS, "", "", "", "", "", ""]], "lrrrrrr")
    rows = []
    for scenario in summary["scenarios"].values():
        cohort = scenario["cohort"]
        if cohort["clients_per_round"] is None:
            rows.append([scenario["label"], "ninguno medido", "", "", "", "", ""])
            continue
        for rate, need in cohort["clients_per_round"].items():
            rows.append(
                [
                    scenario["label"],
                    f"{cohort['noise_std_within']:.2g}",
                    rate,
                    f"{need['noise_multiplier']:.3g}",
                    f"{need['clients_per_round']:,}".replace(",", " "),
                    f"{need['population']:,}".replace(",", " "),
                    f"{need['delta']:.2g}",
                ]
            )
    return markdown(header, rows, "lrrrrrr")


def dp_sgd_table():
    """DP-SGD's cost: images/s with and without per-example clipping and noise (python -m benchmarks.dp_sgd)."""
    bench = load("benchmarks.json")["dp_sgd"]
    rows = [
        [
            str(row["batch_size"]),
            f"{row['sgd_images_per_second']:.0f}",
            f"{row['dp_sgd_images_per_second']:.0f}",
            f"{row['ratio']:.3f}",
        ]
        for row in bench["rows"]
    ]
    return markdown(["B", "SGD (imágenes/s)", "DP-SGD (imágenes/s)", "DP-SGD / SGD"], rows, "rrrr")


def factors_table():
    """The factors study: each level's final accuracy over the seeds and its paired difference with its reference."""
    path = factors.SUMMARY_JSON
    if not path.is_file():
        return markdown(["factor"], [["(sin resultados: `make factors`)"]], "l")
    summary, rows = json.loads(path.read_text()), []
    for key, factor in summary["factors"].items():
        for row in factor["rows"]:
            rows.append(
                [
                    factor["symbol"],
                    factors.level_text(key, row),
                    row["label"],
                    mean_std(row["final_accuracy"]),
                    "—" if row["is_reference"] else paired_text(row["difference"]),
                    "—" if row["is_reference"] else row["against"],
                ]
            )
    for pending in summary["pending"].values():
        missing = ", ".join(f"`{name}`" for name in pending["missing"])
        rows.append([pending["symbol"], "—", f"(pendiente: falta {missing}; `make factors`)", "—", "—", "—"])
    header = [
        "factor",
        "valor",
        "estrategia",
        "exactitud final (%)",
        "diferencia (puntos, IC 95 % pareado)",
        "frente a",
    ]
    return markdown(header, rows, "lllrrl")


TABLES = {
    "factores": factors_table,
    "dp_sgd": dp_sgd_table,
    "privacidad": privacy_table,
    "privacidad_completa": privacy_full_table,
    "fuga": leakage_table,
    "cohorte": cohort_table,
    "estrategias": registry_table,
    "deriva": drift_table,
    "deriva_completa": drift_full_table,
    "ajuste": tuning_table,
    "estudio_ajustado": tuned_study_table,
    "estudio_mejor": tuned_best_table,
    "computo_estudio": study_compute_table,
    "rondas_por_hora": rounds_per_hour_table,
    "rondas_por_hora_resumen": rounds_per_hour_summary,
    "una_ronda": one_shot_table,
    "robustez": robustness_table,
    "una_ronda_ajustada": tuned_one_round_table,
    "fedprox_optimizador": fedprox_optimizer_table,
    "robustez_ajustada": lambda: robustness_table("una_ronda/semillas.json"),
    "rondas": rounds_table,
    "flower": flower_table,
    "hostiles": hostile_table,
    "demo": demo_table,
    "etapas": stages_table,
    "entrenamiento": training_table,
    "compilacion": compile_settings_table,
    "agregacion": aggregation_table,
}


def rendered(name, source):
    """Table `name` rendered from results/; KeyError naming the document if there is no such table."""
    if name not in TABLES:
        raise KeyError(f"{source}: unknown table {name!r}; known: {', '.join(TABLES)}")
    return TABLES[name]()


def render_document(text, source):
    """The document with every marked table and every cited number (fedmnist.studies.cited) re-rendered."""
    text = MARKED.sub(lambda m: m.group(1) + rendered(m.group("name"), source) + m.group(4), text)
    return cited.render(text, source)


def stale_tables(text, source):
    """Names of the marked tables whose copy in the document differs from the rendered one."""
    return [m.group("name") for m in MARKED.finditer(text) if m.group("body") != rendered(m.group("name"), source)]
