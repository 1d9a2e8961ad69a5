"""The device registry as product data: CSV input, database rows, compacted topic, MQTT accounts."""

from registry.entries import DeviceEntry, RegistryInputError, RowError, read_devices_csv, validate_entries
from registry.provision import Registered, device_password, list_devices, register, remove

__all__ = [
    "DeviceEntry",
    "Registered",
    "RegistryInputError",
    "RowError",
    "device_password",
    "list_devices",
    "read_devices_csv",
    "register",
    "remove",
    "validate_entries",
]
