"""Alerts to fleet managers: routing by org, channels, a delivery log in the database, escalation."""
