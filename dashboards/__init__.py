"""Grafana dashboards kept as JSON, plus their provisioning files."""
