"""ClientApp: train the project's model on this node's partition, from the weights the server sent.

The node's partition is client partition-id + 1 of split_data.py's output. Training is
client.LocalTrainer, the same function as the notebook and federated_simulation.py; the
server's config carries proximal-mu when the strategy is FedProx, which adds the proximal
term μ/2·‖w − w⁰‖² anchored at the received weights.
"""

from functools import lru_cache

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedmnist.settings import client_data_dir, client_id

app = ClientApp()


@lru_cache(maxsize=1)
def local_trainer(learning_rate):
    """One compiled model per ClientApp process, reused across rounds."""
    from client import LocalTrainer
    from model import build_model

    return LocalTrainer(build_model(), learning_rate)


@app.train()
def train(msg: Message, context: Context) -> Message:
    from client import client_seed
    from split_data import load_client_data, read_manifest

    data_dir = client_data_dir(context)
    cid = client_id(context, read_manifest(data_dir)["num_clients"])
    x, y = load_client_data(data_dir, cid)
    config: ConfigRecord = msg.content["config"]
    run = context.run_config
    trainer = local_trainer(float(run["learning-rate"]))
    history = trainer.train(x, y, initial_weights=msg.content["arrays"].to_numpy_ndarrays(),
                            epochs=int(run["local-epochs"]), batch_size=int(run["batch-size"]),
                            seed=client_seed(int(run["seed"]), int(config["server-round"]), cid),
                            mu=float(config.get("proximal-mu", 0.0)), verbose=0)
    reply = RecordDict({
        "arrays": ArrayRecord(trainer.model.get_weights()),
        "metrics": MetricRecord({"num-examples": len(y), "train-loss": float(history.history["loss"][-1])}),
        "client": ConfigRecord({"client-id": cid}),
    })
    return Message(content=reply, reply_to=msg)
