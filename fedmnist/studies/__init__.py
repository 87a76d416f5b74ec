"""The studies layer: what a researcher adds over the course core, which it imports and which never imports it.

robustness      the one-round study: tuned settings, every rule, attacks, seeds (make seeds, make robustness)
privacy_study   DP-FedAvg against its controls, and what updates and models leak; leakage: the attacks themselves
factors         one setting moved at a time, paired by seed; seed_summary: a scenario over its seeds
tuning          grids chosen on validation, then the chosen settings on fresh seeds; centralized: the baseline
significance    paired intervals, Holm's correction, equivalence (TOST) and their verdicts
scenarios       experiments/scenarios/*.toml: a scenario's settings as data
report, cited   the README's, the docs' and the essay's tables and cited numbers, rendered from results/
editorial       the documents' editorial rules, checked by experiments/tables.py --check (make test)
"""

from fedmnist.errors import FedMnistError


class StudyError(FedMnistError, ValueError):
    """A study's settings or runs that cannot be used (a scenario, a grid, missing or mismatched runs); the message
    says what to do."""
