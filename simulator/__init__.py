"""Device simulator: a labelled world, scenarios with ground truth, load and replay."""
