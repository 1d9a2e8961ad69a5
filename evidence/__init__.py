"""Evidence reports: a vehicle's (or a place's) track, stops, trips, alerts and orders as HTML/GeoJSON/GPX."""
