"""Writers that turn a contract extract into other source formats (OMOP CDM, Synthea CSV, FHIR NDJSON), for tests and benchmarks."""
