"""Every default of the project, in one place: the CLIs, the notebook, the studies and the Flower app read them here.

The symbols are the papers': K clients, C the fraction sampled per round, E local
epochs, B the local batch size, R rounds, mu FedProx's proximal weight. The
aggregation rules' own parameters (beta, f, ...) live with each rule in
fedmnist/strategies.py.
"""

from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = PROJECT_DIR / "data"  # split_data.py's output
MNIST_CACHE_DIR = DATA_DIR / "mnist"  # the verified IDX files
SCENARIO_DATA_DIR = DATA_DIR / "escenarios"  # partitions that scenarios split on demand
RESULTS_DIR = PROJECT_DIR / "results"
SCENARIOS_DIR = PROJECT_DIR / "experiments" / "scenarios"
OUTPUT_DIR = PROJECT_DIR / "outputs"  # the demo's executed notebooks and artifacts

# The organizer's split
NUM_CLIENTS = 5  # K: the course's team of five
SEED = 42  # the course's seed; the studies draw their own (below), so no study reports the course's run
PARTITION = "iid"  # the course's stratified split: every client sees every digit
DIRICHLET_ALPHA = 0.5  # split_data.py --partition dirichlet without --alpha: moderate skew (Hsu et al., 2019, span
# 0.05 to 100); every scenario of the studies states its own α (0.1 or 1)
SHARDS_PER_CLIENT = 2  # McMahan et al.'s (2017) pathological split: two label-sorted shards per client
# Held out of the training pool for every choice (settings, a stopping round, a "best" model); the test set only
# reports. 1/12 of MNIST's 60,000 is 5,000 images: a standard error of 0.14 points at 99 % accuracy.
VALIDATION_FRACTION = 1 / 12

# Local training (the course's one-shot setting; the notebook's parameters cell repeats them, a test checks)
EPOCHS = 3  # E
BATCH_SIZE = 64  # B
OPTIMIZER = "adam"  # the local optimizer: "adam" (the course's) or "sgd" (the papers')
LEARNING_RATES = {"adam": 1e-3, "sgd": 0.05}  # each optimizer's default local learning rate
LEARNING_RATE = LEARNING_RATES[OPTIMIZER]
MU = 0.01  # FedProx's mu; also the default of the fedprox rule

# Bounds on every setting, checked before any work (the CLIs, scenario files, the notebook, the Flower run config)
MAX_EPOCHS = 1_000  # E
MAX_ROUNDS = 10_000  # R
MAX_BATCH_SIZE = 10_000  # B: a batch of 100,000 makes TensorFlow's convolutions on this CNN crash the process
MAX_WORKERS = 64
MAX_CLIENTS = 10_000  # K: a hundred times McMahan et al.'s K = 100

# The instructor's comparison
MIN_CLIENTS = 2  # an average of one update is that update: fewer is no aggregation

# Multi-round runs (a scenario file overrides any of these)
ROUNDS = 10  # R: a multi-round run without a scenario; the studies state their own R
FRACTION = 1.0  # C: every client every round, as a course team of five would
SAMPLINGS = ("fixed", "poisson")  # round(C·K) clients a round, or each client independently with probability C
SAMPLING = "fixed"
ROUND_EPOCHS = 1  # E per round: one pass a round, so R rounds are R epochs of each client
ROUND_STRATEGIES = ("fedavg", "fedprox", "fedmed")  # the assignment's three methods
ACCURACY_TARGETS = (0.97, 0.99)  # rounds to each: 99 % is McMahan et al.'s (2017) target for this CNN's kind
TRAINERS = ("batched", "per-client")  # a round's clients in one computation, or one LocalTrainer call each
TRAINER = "batched"  # more rounds per hour than the per-client pool on 2 cores: benchmarks/rounds.py measures it
WORKERS = 0  # worker processes of the per-client trainer (0: train in the calling process)

# Client-level differential privacy (fedmnist/privacy.py; the DP rows' other parameters live in the registry)
DP_DELTA_EXPONENT = 1.1  # ε is reported at δ = N^−1.1 for a population of N (clients; examples for DP-SGD): below 1/N
DP_CLIP = 1.0  # S, the clipping norm (DP-FedAvg's, and adaptive clipping's first round)

# The robustness study
MALICIOUS_COUNTS = (1, 2)  # the values of M
# The one-round study (experiments/seeds.py): fresh seeds (no other study reports them), the attacks on the first
# few of them, and FedProx's μ chosen on a tuning seed's validation set from Li et al.'s (2020) grid
STUDY_SEEDS = tuple(range(101, 111))
ATTACK_SEED_COUNT = 5
TUNING_SEED = 1001
MU_GRID = (0.001, 0.01, 0.1, 1.0)

# Statistics
ALPHA = 0.05  # the significance level: McNemar's ties with the best method, Holm's family-wise level
