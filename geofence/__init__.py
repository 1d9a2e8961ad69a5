"""Zones (GeoJSON, datum-aware), spatial index and the rules configuration."""
