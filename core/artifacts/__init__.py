"""Artifacts: exporting a trained model, verifying each export, the labels record that
travels with it, pretrained weights files, and reopening artifacts to predict."""
