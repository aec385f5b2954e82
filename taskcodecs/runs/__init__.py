"""A run on disk: run directories (rundir), checkpoints (checkpoint) and codec checkpoints
(codecs), resume, the runs a run names (links), its data (run_data) and its model
(run_model)."""
