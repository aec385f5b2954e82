"""Training: the entry point train() (run), the loop (trainer) and its outputs, DDP
(distributed), rate control, AMP and compile (precision), the learning-rate schedule."""
