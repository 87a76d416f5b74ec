"""Rounds by hand: the data folder's round record, and the weights each round starts from.

The course federation runs one round at a time, by people: each teammate trains
from the round's starting weights (local_training.ipynb, ROUND), the instructor
aggregates (global_aggregation.py) and publishes the next round's starting
weights. Round 1 starts from split_data.py's pesos_iniciales.npz; round r > 1
from pesos_ronda_<r>.npz, published beside it in the data folder together with
rondas.json, the record of every published round:

    {"initial_weights_sha256": <round 1's>, "rounds": [
        {"round": 2, "file": "pesos_ronda_2.npz", "file_sha256": ..., "weights_sha256": ...,
         "from_round": 1, "method": "fedavg", "clients": [1, 2, 3], "accuracy": {"fedavg": 0.97, ...}}, ...]}

The record and the archives arrive from elsewhere (the instructor's folder,
shared with the team): they are read with a size cap, checked field by field
and against the manifest, and every archive against both of its hashes.
"""

import json
from pathlib import Path

import numpy as np

from fedmnist.data import (
    INITIAL_WEIGHTS_FILE,
    MANIFEST_LIMIT,
    ROUNDS_FILE,
    check_archive_sizes,
    load_initial_weights,
    read_manifest,
    round_files,
    weights_archive_bytes,
    weights_from_archive,
)
from fedmnist.defaults import MAX_ROUNDS
from fedmnist.errors import FedMnistError
from fedmnist.files import OutputSet
from fedmnist.mnist import sha256_bytes, sha256_file
from fedmnist.restricted_pickle import is_int, printable
from fedmnist.updates import SHA256_HEX, weights_sha256
from model import weight_shapes

RECORD_LIMIT = MANIFEST_LIMIT  # bytes: a round's entry takes a few hundred


class RoundError(FedMnistError, ValueError):
    """A round that cannot be trained or aggregated; the message names the file and what to do."""


def round_weights_file(round_number):
    return INITIAL_WEIGHTS_FILE if round_number == 1 else f"pesos_ronda_{round_number}.npz"


def read_round_record(data_dir):
    """rondas.json of `data_dir`, checked (an empty record where no round was published yet)."""
    manifest = read_manifest(data_dir)
    initial_sha = manifest["initial_weights"]["sha256"]
    path = Path(data_dir) / ROUNDS_FILE
    if not path.is_file():
        return {"initial_weights_sha256": initial_sha, "rounds": []}
    if path.stat().st_size > RECORD_LIMIT:
        raise RoundError(f"{path}: larger than any round record global_aggregation.py writes; delete it")
    try:
        record = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        raise RoundError(f"{path}: corrupted ({type(err).__name__}); delete it and publish the rounds again") from None
    if problem := record_problem(record):
        raise RoundError(f"{path}: not a round record global_aggregation.py writes ({problem}); delete it")
    if record["initial_weights_sha256"] != initial_sha:
        raise RoundError(
            f"{path}: its rounds started from other initial weights than this split's (a record of an earlier split); "
            "delete it, or use the data folder it came with"
        )
    return record


def record_problem(record):
    """What makes a round record unusable, or None."""
    if not isinstance(record, dict) or not isinstance(record.get("rounds"), list):
        return "not an object with a list of rounds"
    if not is_sha256(record.get("initial_weights_sha256")):
        return "initial_weights_sha256 is not a SHA-256"
    for position, entry in enumerate(record["rounds"]):
        wanted = position + 2
        if not isinstance(entry, dict) or entry.get("round") != wanted or not is_int(entry.get("round")):
            return f"entry {position + 1} is not round {wanted}"
        if entry.get("file") != round_weights_file(wanted):
            return f"round {wanted} does not name {round_weights_file(wanted)}"
        if not (is_sha256(entry.get("file_sha256")) and is_sha256(entry.get("weights_sha256"))):
            return f"round {wanted}'s hashes are not SHA-256s"
        if entry.get("from_round") != wanted - 1 or not isinstance(entry.get("method"), str):
            return f"round {wanted} does not say it follows round {wanted - 1} and by which method"
        accuracy = entry.get("accuracy", {})
        if not (isinstance(accuracy, dict) and all(isinstance(v, (int, float)) for v in accuracy.values())):
            return f"round {wanted}'s accuracies are not numbers"
    if len(record["rounds"]) >= MAX_ROUNDS:
        return f"more than {MAX_ROUNDS:,} rounds"
    return None


def is_sha256(value):
    return isinstance(value, str) and SHA256_HEX.fullmatch(value) is not None


def latest_round(data_dir):
    """The round teammates train in now: the last one published (1 before any)."""
    return 1 + len(read_round_record(data_dir)["rounds"])


def round_starts(data_dir):
    """{round: the SHA-256 of its starting weights} of every published round, round 1 included."""
    record = read_round_record(data_dir)
    return {
        1: record["initial_weights_sha256"],
        **{entry["round"]: entry["weights_sha256"] for entry in record["rounds"]},
    }


def checked_round(data_dir, round_number, name="ROUND="):
    """`round_number` (None: the latest) as a published round's number; RoundError saying which exist otherwise,
    naming the setting as the user wrote it (the notebook's ROUND=, the command line's --round )."""
    latest = latest_round(data_dir)
    if round_number is None:
        return latest
    if not (is_int(round_number) or (isinstance(round_number, str) and round_number.strip().isdigit())):
        raise RoundError(f"{name}{printable(round_number, 40)} is not an integer; rounds 1..{latest} are published")
    round_number = int(round_number)
    if not 1 <= round_number <= latest:
        raise RoundError(
            f"{name}{round_number}: rounds 1..{latest} are published in {data_dir}; "
            "a later round starts once the instructor publishes it (global_aggregation.py)"
        )
    return round_number


def load_round_weights(data_dir, round_number=None):
    """(round, weights, weights' SHA-256) that round `round_number` (None: the latest published) starts from."""
    round_number = checked_round(data_dir, round_number)
    if round_number == 1:
        weights, sha = load_initial_weights(data_dir)
        return 1, weights, sha
    entry = read_round_record(data_dir)["rounds"][round_number - 2]
    path = Path(data_dir) / entry["file"]
    if not path.is_file() or sha256_file(path) != entry["file_sha256"]:
        raise RoundError(f"{path}: missing or not the file {ROUNDS_FILE} records; copy the instructor's again")
    try:
        check_archive_sizes(path)
        with np.load(path, allow_pickle=False) as npz:
            weights = weights_from_archive({key: npz[key] for key in npz.files})
    except (OSError, ValueError, EOFError) as err:
        raise RoundError(
            f"{path}: not a weights archive ({printable(err, 120)}); copy the instructor's again"
        ) from None
    shapes = [tuple(s) for s in weight_shapes()]
    if [tuple(w.shape) for w in weights] != shapes or any(w.dtype != np.float32 for w in weights):
        raise RoundError(f"{path}: not float32 weights of the course's CNN (model.py); copy the instructor's again")
    if not all(np.all(np.isfinite(w)) for w in weights) or weights_sha256(weights) != entry["weights_sha256"]:
        raise RoundError(f"{path}: its weights do not match {ROUNDS_FILE}; copy the instructor's again")
    return round_number, weights, entry["weights_sha256"]


def publish_next_round(data_dir, round_number, weights, method, clients, accuracy, by="global_aggregation.py"):
    """Publish the weights round `round_number` + 1 starts from, and its entry in the record, as one set.

    Returns the new round's number. RoundError if `round_number` is not the latest round (its successor is
    already published: teammates may be training from it).
    """
    record = read_round_record(data_dir)
    latest = 1 + len(record["rounds"])
    if round_number != latest:
        raise RoundError(
            f"round {round_number + 1} is already published in {data_dir}; its weights are not replaced "
            "(teammates may be training from them)"
        )
    data = weights_archive_bytes([np.asarray(w, dtype=np.float32) for w in weights])
    entry = {
        "round": latest + 1,
        "file": round_weights_file(latest + 1),
        "file_sha256": sha256_bytes(data),
        "weights_sha256": weights_sha256(weights),
        "from_round": round_number,
        "method": method,
        "clients": [int(c) for c in clients],
        "accuracy": {key: float(value) for key, value in accuracy.items()},
        "published_by": by,
    }
    record = {**record, "rounds": [*record["rounds"], entry]}
    with OutputSet() as outputs:
        outputs.write_bytes(Path(data_dir) / entry["file"], data)
        outputs.write_text(Path(data_dir) / ROUNDS_FILE, json.dumps(record, indent=2, allow_nan=False) + "\n")
    return latest + 1


def accuracy_by_round(data_dir, current_round, current_accuracy):
    """[{round, accuracy: {method: test accuracy}}] of every earlier round the record holds, then the current one."""
    earlier = [
        {"round": entry["from_round"], "published": entry["method"], "accuracy": entry["accuracy"]}
        for entry in read_round_record(data_dir)["rounds"]
        if entry["from_round"] < current_round
    ]
    return [*earlier, {"round": current_round, "accuracy": dict(current_accuracy)}]


def start_over(data_dir, keep_others_of=None):
    """Remove the published rounds (the record and their weights) so that the federation restarts at round 1.

    With `keep_others_of` (a program's name), RoundError if a round was published by another program (a hand-run
    federation is not the demo's to discard). Returns how many rounds were removed.
    """
    rounds = read_round_record(data_dir)["rounds"]
    others = [entry["round"] for entry in rounds if entry.get("published_by") != keep_others_of]
    if keep_others_of and others:
        raise RoundError(
            f"{Path(data_dir) / ROUNDS_FILE}: rounds {others[0]}..{others[-1]} were published by hand "
            f"(global_aggregation.py); choose another data folder, or pass --replace to start over at round 1"
        )
    with OutputSet(remove=[path for path in round_files(data_dir) if path.exists()]):
        pass
    return len(rounds)
