"""The extract contract, its reader and its validation (see ``shared/spec/extract-contract.md``).

``load_extract(folder)`` reads an extract folder and splits it into canonical tables and
quarantine, with data-quality warnings about the rows that loaded; ``read_extract`` +
``validate_extract`` do the same in two steps (two Prefect tasks, handing over
``RawExtract.save`` / ``RawExtract.load``). Table-level faults raise ``ExtractRejected`` with a
one-line message.
"""

from chartaudit.schemas.errors import ExtractRejected
from chartaudit.schemas.folder import extract_digest
from chartaudit.schemas.manifest import Manifest, read_manifest
from chartaudit.schemas.models import RULES, WARNING_RULES, canonical_schema
from chartaudit.schemas.reader import RawExtract, read_extract
from chartaudit.schemas.validation import (
    DATA_QUALITY_SCHEMA,
    QUARANTINE_SCHEMA,
    ValidatedExtract,
    load_extract,
    validate_extract,
)

__all__ = [
    "DATA_QUALITY_SCHEMA",
    "QUARANTINE_SCHEMA",
    "RULES",
    "WARNING_RULES",
    "ExtractRejected",
    "Manifest",
    "RawExtract",
    "ValidatedExtract",
    "canonical_schema",
    "extract_digest",
    "load_extract",
    "read_extract",
    "read_manifest",
    "validate_extract",
]
