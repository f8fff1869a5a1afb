# Checkpointing, logging and randomness shared by every catalog config.
config_template = 'sft'  # configs/_templates/sft.py renders the leaf into one v0-style file
save_steps = 500
save_total_limit = 2  # Maximum checkpoints to keep (-1 means unlimited)
log_interval = 10  # iterations between log lines
randomness = dict(seed=None, deterministic=False)
