"""Fuzzing dispatch orders (`fleetwatch orders add`): a usable order or a specific ContractError."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from fleetwatch.records import ContractError, parse_order
from streams.core import OrderBook
from tests.fuzzing import assert_no_crash

ORDER = {
    "v": 1,
    "order_id": "o-1",
    "vehicle_id": "苏A00001",
    "org": "js.nj.u01",
    "start": "2026-11-25T08:00:00+08:00",
    "end": "2026-11-25T18:00:00+08:00",
    "status": "approved",
}
SQUARE = [[[118.7, 32.0], [118.8, 32.0], [118.8, 32.1], [118.7, 32.1], [118.7, 32.0]]]


def test_orders_never_crash() -> None:
    assert_no_crash("order", cases=400, seed_value=15)


@pytest.mark.parametrize(
    ("area", "code"),
    [
        (
            {"type": "Garbage", "coordinates": []},
            "bad_value",
        ),  # shapely raised GeometryTypeError in the worker
        ({"type": ["Polygon"]}, "bad_value"),  # unhashable type: the lookup raised TypeError
        ({"type": "Polygon", "coordinates": [[118.7, 32.0]]}, "bad_value"),  # not nested deep enough
        ({"type": "Polygon", "coordinates": [[["[", 1]]]}, "bad_value"),  # strings where numbers go
        (
            {"type": "Polygon", "coordinates": [[[118.7, 32.0], [118.8, 32.0], [118.7, 32.0, 5, 6]]]},
            "bad_value",
        ),
        (
            {
                "type": "Polygon",
                "coordinates": [[[118.7, 32.0], [118.8, 32.1], [118.8, 32.0], [118.7, 32.1], [118.7, 32.0]]],
            },
            "bad_value",
        ),  # a bow tie: self-intersecting
        (
            {
                "type": "Polygon",
                "coordinates": [[[318.7, 32.0], [318.8, 32.0], [318.8, 32.1], [318.7, 32.0]]],
            },
            "out_of_range",
        ),
        ({"type": "Polygon", "coordinates": [[[float("nan"), 32.0]]]}, "bad_value"),
    ],
)
def test_a_destination_area_that_is_no_usable_area_is_refused(area: dict[str, object], code: str) -> None:
    with pytest.raises(ContractError) as caught:
        parse_order({**ORDER, "destination_area": area})
    assert caught.value.code == code and caught.value.field == "destination_area"


def test_an_accepted_area_works_in_the_order_book() -> None:
    order = parse_order({**ORDER, "destination_area": {"type": "Polygon", "coordinates": SQUARE}})
    book = OrderBook.of([order])
    assert book.place_exemption(order.vehicle_id, order.start, order.end, [(32.05, 118.75)]) == order
    assert book.place_exemption(order.vehicle_id, order.start, order.end, [(32.5, 118.75)]) is None


def test_an_order_without_purpose_or_destination_survives_its_round_trip() -> None:
    # `orders add` publishes order.to_json(); it used to write "purpose": "", which the worker's
    # parser then refused (empty string), so such an order never reached the order book.
    order = parse_order(ORDER)
    assert "purpose" not in orjson.loads(order.to_json())
    assert parse_order(order.to_json()) == order
    assert order.start == datetime(2026, 11, 25, 0, 0, tzinfo=UTC)
