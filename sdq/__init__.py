"""sdq: the command-line client of the task API, and the entry to the local stack."""
