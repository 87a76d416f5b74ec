"""The course workflow on a real-MNIST subset: split → notebook per client (papermill) → aggregation, two rounds
by hand; and the notebook as Google Colab runs it."""

import json
import shutil
import subprocess

import papermill
import pytest
from conftest import REPO, run_script

from fedmnist.data import ROUNDS_FILE
from fedmnist.mnist import sha256_file
from fedmnist.rounds import load_round_weights, round_weights_file
from fedmnist.updates import weights_sha256
from fedmnist.workflow import notebook_kernel

pytestmark = pytest.mark.slow


def run_notebook(executed, **parameters):
    papermill.execute_notebook(
        REPO / "local_training.ipynb",
        executed,
        parameters=parameters,
        cwd=str(REPO),
        progress_bar=False,
        kernel_name=notebook_kernel(),
    )


@pytest.fixture(scope="module")
def workflow(tmp_path_factory):
    root = tmp_path_factory.mktemp("workflow")
    data, out = root / "data", root / "out"
    run_script(
        "split_data.py",
        "--clients",
        "2",
        "--seed",
        "1",
        "--out",
        str(data),
        "--train-samples",
        "6000",
        "--test-samples",
        "1000",
        check=True,
    )
    for folder in (out, root / "ronda_2"):  # round 1, then round 2 from the weights round 1 published
        folder.mkdir()
        for client_id in (1, 2):
            run_notebook(
                folder / f"local_training_cliente_{client_id}.ipynb",
                CLIENT_ID=client_id,
                EPOCHS=1,
                MU=0.01,
                DATA_DIR=str(data),
                OUT_DIR=str(folder),
            )
        options = ("--weights-dir", str(folder), "--data", str(data), "--out", str(folder))
        run_script("global_aggregation.py", *options, check=True)
    return data, out


def test_every_artifact_is_written(workflow):
    _, out = workflow
    for client_id in (1, 2):
        for name in (
            f"modelo_local_cliente_{client_id}.h5",
            f"pesos_cliente_{client_id}.pkl",
            f"pesos_cliente_{client_id}_fedprox.pkl",
            f"curvas_cliente_{client_id}.png",
            f"matriz_confusion_cliente_{client_id}.png",
            f"local_training_cliente_{client_id}.ipynb",
        ):
            assert (out / name).is_file(), name
        executed = json.loads((out / f"local_training_cliente_{client_id}.ipynb").read_text())
        outputs = [o for c in executed["cells"] for o in c.get("outputs", [])]
        images = [o for o in outputs if "image/png" in o.get("data", {})]
        assert len(images) == 2  # the learning curves and the confusion matrix, each shown once
        native = [o for o in outputs if o.get("name") == "stderr" and "oneDNN" in "".join(o.get("text", ""))]
        assert native == []  # TensorFlow's C++ start-up lines stay out of the cells
    for name in (
        "modelo_global_fedavg.h5",
        "modelo_global_fedprox.h5",
        "modelo_global_fedmed.h5",
        "comparacion_metodos.png",
        "resultados.json",
    ):
        assert (out / name).is_file(), name


def test_every_global_model_without_noise_reaches_85_percent(workflow):
    results = json.loads((workflow[1] / "resultados.json").read_text())
    computed = {k: v for k, v in results["methods"].items() if v["status"] == "ok"}
    assert {"fedavg", "fedprox", "fedmed"} <= set(computed) and "dpfedavg" not in results["methods"]  # DP: --private
    assert results["methods"]["krum"]["status"].startswith("not computed")  # 2 clients cannot tolerate f = 1
    for key, entry in computed.items():
        if "privacy" in entry:  # DP-FedAvg's noise z·S/K per weight, with K = 2 clients, is its subject, not a bug
            assert entry["privacy"]["epsilon"] > 0
        else:
            assert entry["accuracy"] >= 0.85, (key, entry["accuracy"])


def test_notebook_refuses_a_client_id_outside_the_partition(workflow, tmp_path):
    data, _ = workflow
    with pytest.raises(papermill.PapermillExecutionError) as caught:
        papermill.execute_notebook(
            REPO / "local_training.ipynb",
            tmp_path / "bad.ipynb",
            parameters={"CLIENT_ID": 9, "DATA_DIR": str(data), "OUT_DIR": str(tmp_path)},
            cwd=str(REPO),
            progress_bar=False,
        )
    assert caught.value.ename == "PartitionError"
    assert "CLIENT_ID=9 is outside 1..2" in caught.value.evalue
    assert not list(tmp_path.glob("*.pkl"))


def test_two_rounds_by_hand_follow_the_published_weights_and_refuse_the_round_before(workflow, tmp_path):
    data, out = workflow
    second = out.parent / "ronda_2"
    record = json.loads((data / ROUNDS_FILE).read_text())["rounds"]
    assert [entry["round"] for entry in record] == [2, 3]
    for entry in record:
        assert entry["file_sha256"] == sha256_file(data / round_weights_file(entry["round"]))
    round_two = json.loads((second / "resultados.json").read_text())
    assert round_two["round"] == 2 and round_two["published"]["round"] == 3
    assert round_two["config"]["round_start_sha256"] == record[0]["weights_sha256"]
    assert all(model["declared"]["round"] == 2 for model in round_two["local_models"].values())
    assert [entry["round"] for entry in round_two["by_round"]] == [1, 2]
    first = json.loads((out / "resultados.json").read_text())
    assert round_two["by_round"][0]["accuracy"] == {
        k: v["accuracy"] for k, v in first["methods"].items() if "accuracy" in v
    }
    assert (second / "evolucion_rondas.png").is_file()
    assert weights_sha256(load_round_weights(data, 2)[1]) == first["published"]["weights_sha256"]

    mixed = shutil.copytree(second, tmp_path / "mixed")
    shutil.copy(out / "pesos_cliente_1.pkl", mixed / "pesos_cliente_1.pkl")  # client 1 resends round 1's update
    done = run_script(
        "global_aggregation.py",
        "--weights-dir",
        str(mixed),
        "--data",
        str(data),
        "--out",
        str(mixed),
        "--round",
        "2",
        "--min-clients",
        "1",
    )
    assert done.returncode == 0, done.stderr
    assert "REJECTED pesos_cliente_1.pkl: trained in round 1, but this aggregation is round 2" in done.stdout


def test_the_notebook_finds_the_data_as_colab_runs_it(workflow, tmp_path):
    """Colab: the notebook alone in a folder with the organizer's data/ beside it, google.colab imported at start,
    the project fetched by the setup cell from REPO_URL (here a local clone), and no change of folder."""
    data, _ = workflow
    content = tmp_path / "content"
    content.mkdir()
    shutil.copy(REPO / "local_training.ipynb", content)
    shutil.copytree(data, content / "data")
    fake = tmp_path / "colab_runtime"
    (fake / "google" / "colab").mkdir(parents=True)
    (fake / "google" / "colab" / "__init__.py").write_text('"""Stands for Colab\'s runtime package."""\n')
    (fake / "sitecustomize.py").write_text("import google.colab  # Colab imports it before any cell runs\n")
    source = tmp_path / "origin"
    subprocess.run(["git", "clone", "--quiet", "--depth", "1", f"file://{REPO}", str(source)], check=True)
    environment = {"PYTHONPATH": str(fake)}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment.items():
            patch.setenv(name, value)
        for run in ("first", "after_a_restart"):  # a fresh kernel finds proyecto/ already cloned, as after a restart
            papermill.execute_notebook(
                content / "local_training.ipynb",
                content / f"executed_{run}.ipynb",
                parameters={"CLIENT_ID": 2, "EPOCHS": 1, "MU": 0, "REPO_URL": str(source)},
                cwd=str(content),
                progress_bar=False,
                kernel_name=notebook_kernel(),
            )
            text = json.dumps(json.loads((content / f"executed_{run}.ipynb").read_text())["cells"])
            assert f"Project code from {content / 'proyecto'}" in text
            assert f"Data folder: {content / 'data'}" in text
    assert (content / "outputs" / "pesos_cliente_2.pkl").is_file()
