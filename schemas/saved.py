"""An extract at one stage, saved as a folder of Parquet files plus one JSON file, so the
flow's tasks hand each other a path instead of data frames.

    <directory>/<kind>.json          format tag, manifest, digest, table names, other metadata
    <directory>/tables/<table>.parquet
    <directory>/<name>.parquet       further frames (faults, quarantine, load counts)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from chartaudit.schemas.manifest import Manifest


@dataclass
class Saved:
    manifest: Manifest
    digest: str
    tables: dict[str, pl.DataFrame]
    frames: dict[str, pl.DataFrame]
    meta: dict[str, Any]


# The work folder is scratch, read once by the next step and removed after the run: lz4 writes
# and reads in about 2/3 of zstd's time (polars' default), for files about twice as large.
STAGE_COMPRESSION = "lz4"


def save_stage(
    directory: Path,
    kind: str,
    manifest: Manifest,
    digest: str,
    tables: dict[str, pl.DataFrame],
    frames: dict[str, pl.DataFrame],
    meta: dict[str, Any],
) -> None:
    directory = Path(directory)
    (directory / "tables").mkdir(parents=True, exist_ok=True)
    for table, frame in tables.items():
        frame.write_parquet(
            directory / "tables" / f"{table}.parquet", compression=STAGE_COMPRESSION
        )
    for name, frame in frames.items():
        frame.write_parquet(directory / f"{name}.parquet", compression=STAGE_COMPRESSION)
    header = {
        "format": f"chartaudit.{kind}/1",
        "manifest": manifest.to_json(),
        "digest": digest,
        "tables": list(tables),
        "frames": list(frames),
        **meta,
    }
    (directory / f"{kind}.json").write_text(json.dumps(header, indent=2), encoding="utf-8")


def load_stage(directory: Path, kind: str, tables: bool = True) -> Saved:
    """A saved stage; without its tables when ``tables`` is False (stage_table_files names
    them)."""
    directory = Path(directory)
    path = directory / f"{kind}.json"
    meta = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    if meta.get("format") != f"chartaudit.{kind}/1":
        raise ValueError(f"{directory} does not hold a saved {kind}")
    return Saved(
        manifest=Manifest.from_json(meta.pop("manifest")),
        digest=meta.pop("digest"),
        tables={
            t: pl.read_parquet(directory / "tables" / f"{t}.parquet")
            for t in (meta["tables"] if tables else ())
        },
        frames={f: pl.read_parquet(directory / f"{f}.parquet") for f in meta["frames"]},
        meta=meta,
    )


def stage_table_files(directory: Path, kind: str) -> dict[str, Path]:
    """table -> its Parquet file in a saved stage, for readers that need no polars frame (the
    audit step's DuckDB reads them itself)."""
    directory = Path(directory)
    path = directory / f"{kind}.json"
    meta = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    if meta.get("format") != f"chartaudit.{kind}/1":
        raise ValueError(f"{directory} does not hold a saved {kind}")
    return {t: directory / "tables" / f"{t}.parquet" for t in meta["tables"]}
