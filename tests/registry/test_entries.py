"""The devices CSV and its checks: every bad row named with its field, value and reason (no services)."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry import DeviceEntry, RegistryInputError, read_devices_csv, validate_entries


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "devices.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_good_file_with_optional_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "device_id,vehicle_id,org,depot,password\n"
                 "d1,苏A00001,js.nj.u01,depot-1,\n"
                 "\n"
                 "d2,苏A00002,js.nj.u01,,a-long-password-1\n")  # fmt: skip
    entries = read_devices_csv(path)
    assert entries == [
        DeviceEntry("d1", "苏A00001", "js.nj.u01", "depot-1", None, 2),
        DeviceEntry("d2", "苏A00002", "js.nj.u01", None, "a-long-password-1", 4),
    ]
    assert "a-long-password-1" not in repr(entries[1])  # secrets stay out of reprs and logs


def test_header_must_name_the_required_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "id,plate,pw\nd1,苏A1,p1\n")
    with pytest.raises(RegistryInputError) as info:
        read_devices_csv(path)
    (error,) = info.value.errors
    assert (error.row, error.field) == (1, "header")
    assert "missing device_id, vehicle_id, org" in str(error) and "unknown id, plate, pw" in str(error)


@pytest.mark.parametrize(
    ("line", "field", "says"),
    [
        ("a/b,苏A00009,js.nj,", "device_id", "A-Z a-z 0-9 _ . -"),
        ("a+,苏A00009,js.nj,", "device_id", "MQTT username"),
        (",苏A00009,js.nj,", "device_id", "must be 1-64"),
        ("svc-admin,苏A00009,js.nj,", "device_id", "reserved for service accounts"),
        ("d1,苏A00009,js.nj,", "device_id", "listed twice (also row 2)"),
        ("d9,,js.nj,", "vehicle_id", "must be 1-16 characters"),
        ("d9,苏A000090000000000,js.nj,", "vehicle_id", "must be 1-16 characters"),
        ("d9,苏A00009,,", "org", "must be an org id"),
        ("d9,苏A00009,js nj,", "org", "must be an org id"),
        ("d9,苏A00001,js.zj,", "org", "vehicle '苏A00001' is in org 'js.nj' on row 2"),
        ("d9,苏A00009,js.nj,short", "password", "must be 12-128 characters"),
        ("d9,苏A00009", "row", "has 2 fields, the header has 4"),
    ],
)
def test_bad_rows_name_row_field_value_and_reason(tmp_path: Path, line: str, field: str, says: str) -> None:
    path = write(tmp_path, f"device_id,vehicle_id,org,password\nd1,苏A00001,js.nj,\n{line}\n")
    with pytest.raises(RegistryInputError) as info:
        read_devices_csv(path)
    (error,) = info.value.errors
    assert (error.row, error.field) == (3, field)
    assert says in str(error)
    assert str(path) in str(info.value) and "nothing registered" in str(info.value)
    if field == "password":
        assert "short" not in str(info.value)  # a password is never echoed
    elif field != "row":
        assert repr(error.value) in str(error)


def test_every_bad_row_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, "device_id,vehicle_id,org\nd1,苏A00001,js.nj\nbad/1,苏A00002,js.nj\n"
                 "d3,,js.nj\nd4,苏A00004,\n")  # fmt: skip
    with pytest.raises(RegistryInputError) as info:
        read_devices_csv(path)
    assert [(e.row, e.field) for e in info.value.errors] == [(3, "device_id"), (4, "vehicle_id"), (5, "org")]


def test_validate_entries_checks_reserved_names_from_the_settings() -> None:
    errors = validate_entries([DeviceEntry("bridge-user", "苏A1", "js")], reserved={"bridge-user"})
    assert [(e.field, e.reason) for e in errors] == [("device_id", "reserved for service accounts")]
    assert validate_entries([DeviceEntry("d1", "苏A1", "js", None, "x" * 12)]) == []
