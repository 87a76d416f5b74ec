"""The project's one base error: a setting, a request or a file (often one that arrived from elsewhere) that cannot
be used.

Each concept raises its own subclass, defined beside it (PartitionError in partition.py, UpdateError in
updates.py, HistoryError in history.py, ...). The entry points catch FedMnistError and print it as one line
naming the thing, what is wrong and what to do, then exit non-zero.
"""


class FedMnistError(Exception):
    """Something this project cannot use, said in one line for the person who can fix it."""
