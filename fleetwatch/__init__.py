"""fleetwatch shared package: record contract, topic names, settings and the CLI."""
__version__ = "0.1.0"
