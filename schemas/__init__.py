"""fedrift's Avro contract: one ``.avsc`` per record and one codec that every process uses."""

from schemas.codec import (
    BadMagicByte,
    Codec,
    FeatureCountMismatch,
    InvalidRecord,
    NonFiniteFeature,
    RecordError,
    SchemaMismatch,
    TruncatedRecord,
    UnknownSchemaId,
    codec,
    validate_features,
)

__all__ = [
    "BadMagicByte",
    "Codec",
    "FeatureCountMismatch",
    "InvalidRecord",
    "NonFiniteFeature",
    "RecordError",
    "SchemaMismatch",
    "TruncatedRecord",
    "UnknownSchemaId",
    "codec",
    "validate_features",
]
