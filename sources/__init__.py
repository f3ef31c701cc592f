"""Source adapters: turn an OMOP CDM, Synthea CSV or FHIR Bulk Data export into a contract
extract folder (``schemas/``'s canonical tables as Parquet, plus manifest.json) before any
validation, so every source runs through the same reader, rules and audit.

- ``formats``: which formats exist and how ``--format auto`` recognises a folder;
- ``output``: ``AdaptedExtract``, where an adapter writes its tables (with each row's origin);
- ``provenance``: maps quarantine and data-quality rows back to the source's file and line;
- ``omop``, ``synthea``, ``fhir``: one adapter each; ``maps/``: the code maps they share.

Imports only ``chartaudit.schemas`` (the contract): this layer sits beside it, below storage.
"""
