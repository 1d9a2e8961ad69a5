"""JT/T 808 TCP gateway: terminals speaking the national protocol feed the same pipeline as MQTT."""
