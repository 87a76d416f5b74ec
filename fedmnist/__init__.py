"""fedmnist: the course core under the course's scripts. One home per concept:

defaults      every default (K, seed, E, B, mu, learning rate, R, C, paths), each with its reason
settings      every run setting declared once: option, symbol, bounds, Flower key (the CLIs derive from it)
errors        FedMnistError, the one base of every concept's error (PartitionError, UpdateError, ...)
mnist         verified MNIST: the four original IDX files, checked by SHA-256
partition     the partition registry: iid / dirichlet / shards, each row with its options
seeds         every random stream, by name, from one seed
data          the data folder (manifest, partitions, test set, initial weights) and the weights archive
rounds        rounds by hand: the data folder's round record and each round's starting weights
training      the model compiled, seeded and saved; LocalTrainer; batched_training: a round at once
updates       the client-update file: write, restricted read (restricted_pickle), validation
strategies    the registry: one row per aggregation strategy, its labels, parameters and Flower class
aggregation   the rules themselves, pure NumPy; server_optimizers and scaffold: the multi-round server steps
attacks       the attack registry: simulated faulty and malicious clients
evaluation    test-set metrics, McNemar's test and the shared figures; drift: how far apart a round's updates are
comparison    the one-shot comparison of every strategy (global_aggregation.py, demo.py)
simulation    the multi-round loop; history: its results format, one writer for it and for Flower
privacy       DP-FedAvg's accounting
workflow      the course workflow end to end (demo.py)
files         atomic writes of one file or a set of files; restricted_pickle: the bounded pickle interpreter
tensorflow_logs  TensorFlow's start without its C++ log lines (the notebook)
flower/       client_app and server_app (Flower's apps over the core), settings (their run config), credentials
              (the certificates and keys for several machines)
studies/      the studies layer over the core (never imported by it): see fedmnist/studies/__init__.py
"""
