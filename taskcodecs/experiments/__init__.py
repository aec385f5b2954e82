"""What to train: the model registry (registry), the experiment table and its YAML configs
(table, configs/), the typed training config (train_config)."""
