"""chartaudit's settings: a ``chartaudit.toml`` file, overridden by ``CHARTAUDIT_*`` variables,
overridden by command-line options.

The file is ``./chartaudit.toml`` (or the path in ``CHARTAUDIT_SETTINGS``)::

    [measures]
    folders = ["site-measures"]     # extra measure folders, relative to this file

    [thresholds]                    # the most a run accepts per table (after OHDSI's DQD)
    quarantine_share = 0.05         # of a table's input rows quarantined
    quarantine_rows = 1000          # quarantined rows (no limit when absent)
    warning_share = 0.10            # of a table's input rows with a data-quality warning
    warning_rows = 5000             # rows with a warning (no limit when absent)

    [thresholds.tables.orders]      # one table's own limits (the others keep the above)
    warning_share = 0.20

    [sources]
    code_map = "site-codes.csv"     # a site's own codes -> contract concepts (OMOP/Synthea/FHIR)

    [scale]                         # the audit in partitions of patients (flows/partitions.py)
    partitions = 4                  # 1 (the default): one process, as always
    dask_address = "tcp://scheduler:8786"  # none: a local Dask cluster for the run
    work_dir = "/shared/chartaudit-work"   # where run work folders go; every worker reads it

and ``CHARTAUDIT_MEASURES__FOLDERS='["/srv/chartaudit/site-measures"]'`` or
``CHARTAUDIT_THRESHOLDS__TABLES__ORDERS__WARNING_SHARE=0.2`` override it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

SETTINGS_FILE = "chartaudit.toml"
SETTINGS_VARIABLE = "CHARTAUDIT_SETTINGS"


class SettingsError(ValueError):
    """The settings file or a CHARTAUDIT_* variable is malformed."""


class MeasureSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    folders: list[Path] = []  # extra measure folders (measures/, value_sets/, decks/)


Share = Annotated[float, Field(ge=0, le=1)]
Rows = Annotated[int, Field(ge=0)]

# A run stops before the audit when a table passes one of these (decisions.md, "Thresholds").
DEFAULT_QUARANTINE_SHARE = 0.05
# Warned rows load and are audited, so their limit is looser: a share this large is a
# systematic export fault (swapped columns, a wrong time zone), not back-dated charting.
DEFAULT_WARNING_SHARE = 0.10


class TableLimits(BaseModel):
    """One table's own limits; a limit left out is the [thresholds] one."""

    model_config = ConfigDict(extra="forbid")
    quarantine_share: Share | None = None
    quarantine_rows: Rows | None = None
    warning_share: Share | None = None
    warning_rows: Rows | None = None


class ThresholdSettings(BaseModel):
    """The largest share and count of quarantined and of warned rows a run accepts, per table;
    a count of None is no limit."""

    model_config = ConfigDict(extra="forbid")
    quarantine_share: Share = DEFAULT_QUARANTINE_SHARE
    quarantine_rows: Rows | None = None
    warning_share: Share = DEFAULT_WARNING_SHARE
    warning_rows: Rows | None = None
    tables: dict[str, TableLimits] = {}

    @field_validator("tables")
    @classmethod
    def _known_tables(cls, tables: dict[str, TableLimits]) -> dict[str, TableLimits]:
        from chartaudit.schemas.contract import TABLE_ORDER

        unknown = sorted(set(tables) - set(TABLE_ORDER))
        if unknown:
            raise ValueError(f"no table {unknown[0]!r}; tables: {', '.join(TABLE_ORDER)}")
        return tables

    def for_table(self, table: str) -> TableLimits:
        """The limits in force for one table: its own where it has them, else the defaults."""
        own = self.tables.get(table, TableLimits())
        return TableLimits(
            **{
                name: getattr(own, name) if getattr(own, name) is not None else getattr(self, name)
                for name in TableLimits.model_fields
            }
        )

    def with_quarantine_share(self, share: float | None) -> ThresholdSettings:
        """The command line's --max-quarantine-share: the quarantined share of EVERY table."""
        if share is None:
            return self
        tables = {
            t: v.model_copy(update={"quarantine_share": None}) for t, v in self.tables.items()
        }
        return self.model_copy(update={"quarantine_share": share, "tables": tables})


class SourceSettings(BaseModel):
    """How sources other than the contract are read (sources/)."""

    model_config = ConfigDict(extra="forbid")
    # CSV mapping a site's own codes to the contract's concepts (sources/code_maps.py)
    code_map: Path | None = None


class ScaleSettings(BaseModel):
    """The audit split into partitions of patients, run as Prefect tasks on Dask."""

    model_config = ConfigDict(extra="forbid")
    partitions: Annotated[int, Field(ge=1)] = 1
    dask_address: str | None = None  # a running scheduler; none: a local cluster per run
    # the parent of each run's work folder (default: the system's temporary folder); with a
    # cluster, a shared filesystem every worker mounts at the same path
    work_dir: Path | None = None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CHARTAUDIT_", env_nested_delimiter="__", extra="forbid"
    )
    measures: MeasureSettings = MeasureSettings()
    thresholds: ThresholdSettings = ThresholdSettings()
    sources: SourceSettings = SourceSettings()
    scale: ScaleSettings = ScaleSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=settings_file())
        return (init_settings, env_settings, toml)


def settings_file() -> Path:
    return Path(os.environ.get(SETTINGS_VARIABLE, SETTINGS_FILE))


def load_settings() -> Settings:
    """The settings in effect; relative folders in the file are read from the file's folder."""
    path = settings_file()
    try:
        settings = Settings()
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in problem["loc"])
        raise SettingsError(
            f"{path} or CHARTAUDIT_* variables: {where}: {problem['msg']}"
        ) from None
    except ValueError as exc:  # TOML syntax, or a variable that is not JSON
        raise SettingsError(f"{path} or CHARTAUDIT_* variables: {exc}") from None
    base = path.resolve().parent if path.is_file() else Path.cwd()
    folders = [f if f.is_absolute() else base / f for f in settings.measures.folders]
    code_map = settings.sources.code_map
    if code_map is not None and not code_map.is_absolute():
        code_map = base / code_map
    work_dir = settings.scale.work_dir
    if work_dir is not None and not work_dir.is_absolute():
        work_dir = base / work_dir
    return settings.model_copy(
        update={
            "measures": MeasureSettings(folders=folders),
            "sources": SourceSettings(code_map=code_map),
            "scale": settings.scale.model_copy(update={"work_dir": work_dir}),
        }
    )


def measure_folders(option: list[Path] | None) -> list[Path]:
    """The extra measure folders: the command line's, else the settings'."""
    return list(option) if option else load_settings().measures.folders


def thresholds(max_quarantine_share: float | None = None) -> ThresholdSettings:
    """The data-quality limits: the settings', with the command line's quarantined share."""
    if max_quarantine_share is not None and not 0 <= max_quarantine_share <= 1:
        raise SettingsError(
            f"--max-quarantine-share {max_quarantine_share} is not a share between 0 and 1"
        )
    return load_settings().thresholds.with_quarantine_share(max_quarantine_share)


def scale(partitions: int | None = None, dask_address: str | None = None) -> ScaleSettings:
    """How the audit is spread: the settings' [scale], with the command line's options."""
    if partitions is not None and partitions < 1:
        raise SettingsError(f"--partitions {partitions}: at least 1")
    settings = load_settings().scale
    given = {"partitions": partitions, "dask_address": dask_address}
    return settings.model_copy(update={k: v for k, v in given.items() if v is not None})
