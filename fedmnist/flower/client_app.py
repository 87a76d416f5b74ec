"""ClientApp: train the project's model on this node's partition, from the weights the server sent.

The node's partition is client partition-id + 1 of the split. Training is
fedmnist.training.LocalTrainer, the same as the notebook's and the simulation's,
with the settings the ServerApp sent; FedProx's config carries proximal-mu, which
adds the proximal term μ/2·‖w − w⁰‖² anchored at the received weights.
"""

from functools import lru_cache

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedmnist.data import load_client_data, read_manifest
from fedmnist.flower.settings import EQUAL_WEIGHT, TrainingConfig, client_data_dir, client_id
from fedmnist.seeds import client_training_seed
from fedmnist.training import LocalTrainer
from model import build_model

app = ClientApp()


@lru_cache(maxsize=1)
def local_trainer(learning_rate, optimizer):
    """One compiled model per ClientApp process, reused across rounds."""
    return LocalTrainer(build_model(), learning_rate, optimizer)


@app.train()
def train(msg: Message, context: Context) -> Message:
    config: ConfigRecord = msg.content["config"]
    settings = TrainingConfig.from_record(config)
    data_dir = client_data_dir(context.node_config, settings)
    cid = client_id(context.node_config, read_manifest(data_dir)["num_clients"])
    x, y = load_client_data(data_dir, cid)
    trainer = local_trainer(settings.learning_rate, settings.optimizer)
    history = trainer.train(
        x,
        y,
        initial_weights=msg.content["arrays"].to_numpy_ndarrays(),
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        seed=client_training_seed(settings.seed, int(config["server-round"]), cid),
        mu=float(config.get("proximal-mu", 0.0)),
        verbose=0,
    )
    reply = RecordDict(
        {
            "arrays": ArrayRecord(trainer.model.get_weights()),
            "metrics": MetricRecord(
                {"num-examples": len(y), EQUAL_WEIGHT: 1, "train-loss": float(history.history["loss"][-1])}
            ),
            "client": ConfigRecord({"client-id": cid}),
        }
    )
    return Message(content=reply, reply_to=msg)
