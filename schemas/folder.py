"""Which files make up an extract folder, and the digest that identifies an extract's content.

Below both the manifest (whose default ``extract_id`` uses the digest) and the layout checks
(which locate the table files), so neither has to import the other to get these.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from chartaudit.schemas.contract import TABLE_ORDER

__all__ = [
    "MANIFEST_FILE",
    "PROVENANCE_FILE",
    "TABLE_FILE_SUFFIXES",
    "extract_digest",
    "table_files",
]

MANIFEST_FILE = "manifest.json"
# Written by an adapter (sources/output.py) beside the tables it adapted: each row's source
# file and line. Part of an adapted extract folder, so never reported as an extra file.
PROVENANCE_FILE = "_provenance.parquet"
TABLE_FILE_SUFFIXES = (".csv", ".parquet")


def table_files(extract_dir: Path) -> list[Path]:
    """The files of the folder that are contract tables (``<table>.csv|parquet``), by name."""
    names = {f"{t}{suffix}" for t in TABLE_ORDER for suffix in TABLE_FILE_SUFFIXES}
    return sorted(
        (p for p in Path(extract_dir).iterdir() if p.name in names and p.is_file()),
        key=lambda p: p.name,
    )


def extract_digest(extract_dir: Path) -> str:
    """sha256 (hex) over the table files and manifest.json, in sorted name order.

    Each file contributes its name, its size and its bytes, so renaming a file, moving bytes
    between files or editing any value changes the digest; extra (ignored) files do not.
    """
    extract_dir = Path(extract_dir)
    files = table_files(extract_dir)
    manifest = extract_dir / MANIFEST_FILE
    if manifest.is_file():
        files.append(manifest)
    digest = hashlib.sha256()
    for path in sorted(files, key=lambda p: p.name):
        digest.update(path.name.encode("utf-8") + b"\0")
        digest.update(path.stat().st_size.to_bytes(8, "big"))
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()
