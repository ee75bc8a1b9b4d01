"""Running studies: the queue, one Ray Tune experiment per study, Optuna search and pruning."""
