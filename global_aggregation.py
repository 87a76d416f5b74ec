"""The instructor's step: aggregate every client's update, compare the methods, publish the next round.

    python global_aggregation.py --weights-dir outputs --out outputs

Loads every pesos_cliente_N.pkl (and pesos_cliente_N_fedprox.pkl) through the
restricted loader, checks each against model.py's shapes and the shared initial
weights, then applies every strategy of the registry (FedAvg, FedProx, FedMed,
the trimmed mean, Krum), evaluates each global model on the common test set
beside every local model, and names the best method. Writes
modelo_global_<method>.h5, comparacion_metodos.png and resultados.json (and
evolucion_rondas.png from round 2 on), then publishes the next round's starting
weights (FedAvg's model unless --publish says otherwise) into the data folder:
pesos_ronda_<r+1>.npz and its entry in rondas.json, from which teammates train
round r + 1 (the notebook's ROUND). Every update must come from the round being
aggregated: the latest published one, unless --round names an earlier one.
"""

import argparse
import math
import sys
from pathlib import Path

from fedmnist import defaults, strategies
from fedmnist.attacks import DEFAULT_STRENGTH, MODEL_POISONING
from fedmnist.comparison import (
    Attack,
    ComparisonError,
    compare,
    format_table,
    plan_next_round,
    publish,
    write_outputs,
)
from fedmnist.errors import FedMnistError
from fedmnist.files import check_writable, os_error_text
from fedmnist.partition import PartitionError
from fedmnist.restricted_pickle import printable


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--weights-dir",
        type=Path,
        default=Path("."),
        help="folder with pesos_cliente_*.pkl (default: the working folder)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=defaults.DATA_DIR,
        help="split_data.py's output folder (default: data/ in the project)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("."),
        help="where to write the models, figure and JSON (default: the working folder)",
    )
    parser.add_argument(
        "--min-clients",
        type=int,
        default=defaults.MIN_CLIENTS,
        help="fewest valid updates needed to aggregate (default: %(default)s)",
    )
    parser.add_argument(
        "--allow-legacy",
        action="store_true",
        help="also read bare lists of arrays (older format), weighted by the manifest's counts; "
        "nothing checks their starting point",
    )
    parser.add_argument(
        "--round",
        type=int,
        default=None,
        help="the round whose updates are compared (default: the latest published in --data's rondas.json)",
    )
    parser.add_argument(
        "--publish",
        default="fedavg",
        choices=[row.key for row in strategies.one_shot_rows() if not row.private] + ["none"],
        help="whose global model starts the next round, or none (default: %(default)s); an earlier --round "
        "publishes nothing",
    )
    strategies.add_parameter_options(parser, client_side=False)
    attack = parser.add_argument_group("simulated attacks (model poisoning of M clients' updates Δ = w − w⁰)")
    attack.add_argument(
        "--attack",
        choices=MODEL_POISONING,
        default=None,
        help="the attack to simulate (label flipping is data poisoning: see the notebook's LABEL_FLIP)",
    )
    attack.add_argument(
        "--malicious",
        "-M",
        type=int,
        default=1,
        help="M, the number of attacking clients: the lowest client ids (default: 1)",
    )
    attack.add_argument(
        "--attack-strength",
        type=float,
        default=None,
        help="lambda of the attack (default: " + ", ".join(f"{k} {v:g}" for k, v in DEFAULT_STRENGTH.items()) + ")",
    )
    attack.add_argument("--seed", type=int, default=0, help="seed of the noise attack, in 0..2^32-1 (default: 0)")
    parser.add_argument(
        "--private",
        action="store_true",
        help="also the DP-FedAvg rows (their noise is sized for cohorts of hundreds of clients, not K = 5)",
    )
    return parser.parse_args(argv)


def checked_options(args):
    """The strategies' parameter values; ComparisonError naming the first option that cannot work."""
    if not args.weights_dir.is_dir():
        raise ComparisonError(
            f"{args.weights_dir}: no such folder; pass the folder holding the clients' "
            f"pesos_cliente_*.pkl with --weights-dir"
        )
    if args.min_clients < 1:
        raise ComparisonError(f"--min-clients {args.min_clients}: must be at least 1")
    if args.attack_strength is not None and not math.isfinite(args.attack_strength):
        raise ComparisonError(f"--attack-strength {args.attack_strength}: must be a finite number")
    if not 0 <= args.seed < 2**32:
        raise ComparisonError(f"--seed {printable(args.seed, 19)}: must be an integer in 0..2^32-1")
    try:
        return strategies.parameters_from_options(args, client_side=False)
    except ValueError as err:
        raise ComparisonError(str(err)) from None


def main(argv=None):
    args = parse_args(argv)
    try:  # every option checked before it is echoed or used
        values = checked_options(args)
    except ComparisonError as err:
        sys.exit(f"global_aggregation.py: error: {err}; earlier outputs in {args.out} are unchanged")
    print(
        f"global_aggregation: weights-dir={args.weights_dir} data={args.data} out={args.out} "
        f"min-clients={args.min_clients} "
        + " ".join(
            f"{p.config_key}={getattr(args, strategies.option_dest(p))}"
            for _, p in strategies.all_parameters(client_side=False)
        )
        + (f" attack={args.attack} M={args.malicious} strength={args.attack_strength}" if args.attack else "")
    )
    attack = Attack(args.attack, args.malicious, args.attack_strength, args.seed) if args.attack else None
    try:
        check_writable(args.out)
        comparison = compare(
            args.weights_dir,
            args.data,
            values,
            args.min_clients,
            args.allow_legacy,
            attack,
            private=args.private,
            round_number=args.round,
        )
        publishing = plan_next_round(comparison, args.data, None if args.publish == "none" else args.publish)
        written = write_outputs(args.out, comparison)
    except FedMnistError as err:
        sys.exit(f"global_aggregation.py: error: {err}; earlier outputs in {args.out} are unchanged")
    except OSError as err:
        sys.exit(f"global_aggregation.py: error: {args.out}: {os_error_text(err)}; earlier outputs are unchanged")
    print("\n" + format_table(comparison.results))
    print(f"Wrote {', '.join(written)} to {args.out}")
    if publishing:
        try:
            next_round = publish(comparison, args.data, publishing)
        except (FedMnistError, OSError) as err:  # the comparison is written; running again publishes
            text = err if isinstance(err, PartitionError) else os_error_text(err)
            sys.exit(f"global_aggregation.py: error: {args.data}: {text}; round not published, run again")
        print(
            f"Published round {next_round}'s starting weights ({strategies.REGISTRY[publishing].name}) to "
            f"{args.data}: teammates train with ROUND = {next_round}"
        )
    elif args.publish != "none":
        print(f"Round {comparison.results['round']} is not the latest: nothing published")


if __name__ == "__main__":
    main()
