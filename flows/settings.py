"""chartaudit's settings: a ``chartaudit.toml`` file, overridden by ``CHARTAUDIT_*`` variables,
overridden by command-line options.

The file is ``./chartaudit.toml`` (or the path in ``CHARTAUDIT_SETTINGS``)::

    [measures]
    folders = ["site-measures"]     # extra measure folders, relative to this file

and ``CHARTAUDIT_MEASURES__FOLDERS='["/srv/chartaudit/site-measures"]'`` overrides it.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError
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


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CHARTAUDIT_", env_nested_delimiter="__", extra="forbid"
    )
    measures: MeasureSettings = MeasureSettings()

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
    return settings.model_copy(update={"measures": MeasureSettings(folders=folders)})


def measure_folders(option: list[Path] | None) -> list[Path]:
    """The extra measure folders: the command line's, else the settings'."""
    return list(option) if option else load_settings().measures.folders
