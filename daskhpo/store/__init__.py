"""Where an experiment's events live: the journal, the dataset codec and snapshots, the
writer lock, checkpoints and driver sessions."""
