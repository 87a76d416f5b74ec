"""fedmnist: the library under the course's scripts. One home per concept:

defaults      every default (K, seed, E, B, mu, learning rate, R, C, paths)
mnist         verified MNIST: the four original IDX files, checked by SHA-256
partition     iid / dirichlet / shards: labels, K, seed -> one index array per client
data          the data folder (manifest, partitions, test set, initial weights) and the weights archive
training      LocalTrainer: local training with FedProx's proximal term
updates       the client-update file: write, restricted read (restricted_pickle), validation
strategies    the registry: one row per aggregation strategy, its labels, parameters and Flower class
aggregation   the rules themselves, pure NumPy
attacks       simulated faulty and malicious clients
evaluation    test-set metrics and the shared figures
comparison    the one-shot comparison of every strategy (global_aggregation.py, demo.py)
simulation    the multi-round loop; history: its results format, one writer for it and for Flower
scenarios     experiments/scenarios/*.toml; robustness: the robustness study and its summary over seeds
report        the README's and the essay's tables, rendered from results/
workflow      the course workflow end to end (demo.py)
files         atomic writes of one file or a set of files
flower/       the Flower ClientApp and ServerApp
"""
