import io
import json
import math
import struct

import fastavro
import pytest

from schemas import (
    BadMagicByte,
    Codec,
    FeatureCountMismatch,
    NonFiniteFeature,
    RecordError,
    SchemaMismatch,
    TruncatedRecord,
    UnknownSchemaId,
    codec,
    validate_features,
)
from schemas.codec import SCHEMA_DIR
from tests.samples import SAMPLES


def test_every_record_has_a_sample():
    assert sorted(SAMPLES) == codec().records


@pytest.mark.parametrize("record", sorted(SAMPLES))
def test_round_trip(record):
    raw = codec().encode(record, SAMPLES[record])
    assert raw[0] == 0 and struct.unpack(">I", raw[1:5])[0] == codec().schema_id(record)
    name, value = codec().decode(raw, expect=record)
    assert name == record and value == SAMPLES[record]


def _write_evolution(tmp_path) -> tuple[dict, dict]:
    v1 = json.loads((SCHEMA_DIR / "feedback.avsc").read_text())
    v2 = json.loads(json.dumps(v1))
    v2["fields"].append({"name": "source", "type": "string", "default": "unknown"})
    (tmp_path / "feedback.avsc").write_text(json.dumps(v1))
    (tmp_path / "feedback.v2.avsc").write_text(json.dumps(v2))
    (tmp_path / "old.json").write_text(json.dumps({"2": "feedback.avsc"}))
    (tmp_path / "new.json").write_text(json.dumps({"2": "feedback.avsc", "14": "feedback.v2.avsc"}))
    return v1, v2


def test_field_added_with_default_reads_both_ways(tmp_path):
    v1, v2 = _write_evolution(tmp_path)
    old, new = Codec(tmp_path, "old.json"), Codec(tmp_path, "new.json")
    fb = SAMPLES["Feedback"]
    # backward: data written by the old schema, read by new code; the default fills the new field
    assert new.decode(old.encode("Feedback", fb), expect="Feedback")[1] == {**fb, "source": "unknown"}
    # forward: data written by the new schema (id 14 in the header) ...
    raw_v2 = new.encode("Feedback", {**fb, "source": "app"})
    assert raw_v2[1:5] == struct.pack(">I", 14)
    # ... is refused by a reader whose id table predates it, with a clear reason,
    with pytest.raises(UnknownSchemaId, match="14"):
        old.decode(raw_v2)
    # and resolves into the old shape once the writer schema is known (the new field is dropped).
    body = io.BytesIO(raw_v2[5:])
    assert fastavro.schemaless_reader(body, fastavro.parse_schema(v2), fastavro.parse_schema(v1)) == fb


@pytest.mark.parametrize(
    ("mutate", "error", "words"),
    [
        (lambda b: b[:-3], TruncatedRecord, "ends early"),
        (lambda b: b[:4], TruncatedRecord, "header needs 5"),
        (lambda b: b + b"\x00", TruncatedRecord, "unread byte"),
        (lambda b: b"\x07" + b[1:], BadMagicByte, "magic byte is 0x07"),
        (lambda b: b[:1] + struct.pack(">I", 999) + b[5:], UnknownSchemaId, "schema id 999"),
    ],
)
def test_broken_bytes_raise_typed_errors(mutate, error, words):
    raw = codec().encode("InferenceRequest", SAMPLES["InferenceRequest"])
    with pytest.raises(error, match=words) as info:
        codec().decode(mutate(raw))
    assert isinstance(info.value, RecordError) and words in info.value.reason


def test_wrong_record_type_is_a_schema_mismatch():
    raw = codec().encode("Feedback", SAMPLES["Feedback"])
    with pytest.raises(SchemaMismatch, match="expected a InferenceRequest record, got Feedback"):
        codec().decode(raw, expect="InferenceRequest")


def test_encode_names_the_bad_field():
    bad = {**SAMPLES["InferenceRequest"], "features": ["x"]}
    with pytest.raises(SchemaMismatch, match="features"):
        codec().encode("InferenceRequest", bad)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_features_are_rejected(value):
    with pytest.raises(NonFiniteFeature, match="feature 2 is"):
        validate_features([1.0, 2.0, value])


def test_wrong_feature_count_is_rejected():
    with pytest.raises(FeatureCountMismatch, match="2 features, the stream has 3"):
        validate_features([1.0, 2.0], expected=3)
    validate_features([1.0, 2.0, 3.0], expected=3)
