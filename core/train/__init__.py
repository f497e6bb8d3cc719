"""Training: the engine's phases, model assembly, feature extraction and its disk cache,
head fitting, fine-tuning, checkpoints and tf.distribute."""
