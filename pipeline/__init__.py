"""The pipeline as one product: a supervisor for its services, `fleetwatch run` and `fleetwatch demo`."""
