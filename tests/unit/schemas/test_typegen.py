"""The typed records are generated from the Avro contract and kept in step with it."""

from __future__ import annotations

import typing

from schemas import records
from schemas.codec import codec
from schemas.typegen import SCHEMA_DIR, newest_schemas, render


def test_records_module_is_generated_from_the_current_schemas():
    assert (SCHEMA_DIR / "records.py").read_text() == render(), "stale: run python -m schemas.typegen"


def test_every_record_the_codec_writes_has_a_typed_dict_with_its_fields():
    for name, raw in newest_schemas().items():
        typed = getattr(records, name)
        assert list(typing.get_type_hints(typed)) == [f["name"] for f in raw["fields"]], name
    assert set(newest_schemas()) == set(codec().records)


def test_a_typed_record_round_trips_through_the_codec():
    value: records.Feedback = {"id": "r1", "label": 1, "time": 5}
    assert codec().decode(codec().encode("Feedback", value)) == ("Feedback", value)


def test_a_values_record_name_is_read_from_its_header_alone():
    from tests.samples import SAMPLES

    data = codec().encode("RoutingWeights", SAMPLES["RoutingWeights"])
    assert codec().name_of(data) == "RoutingWeights"
    odd = (None, b"", b"\x00\x00", b"\x01" + data[1:], b"\x00\xff\xff\xff\xff")  # short, bad magic, unknown id
    assert [codec().name_of(b) for b in odd] == [None] * 5
