from __future__ import annotations

import pandera.polars as pa
import polars as pl
import pytest
from pandera.errors import SchemaErrors

from chartaudit.schemas.contract import SOURCE_LINE, TABLE_ORDER, TABLES
from chartaudit.schemas.models import canonical_schema, table_model


@pytest.mark.parametrize("table", TABLE_ORDER)
def test_models_follow_the_contract(table: str) -> None:
    model = table_model(table, 2026)
    assert issubclass(model, pa.DataFrameModel)
    schema = model.to_schema()
    assert list(schema.columns) == [*TABLES[table].column_names, SOURCE_LINE]
    for column in TABLES[table].columns:
        component = schema.columns[column.name]
        assert component.dtype.type == canonical_schema(table)[column.name], column.name
        assert component.nullable is (not column.required), column.name
    assert schema.strict is True and schema.ordered is True and schema.coerce is False


def test_an_empty_canonical_frame_is_valid() -> None:
    for table in TABLE_ORDER:
        table_model(table, 2026).validate(pl.DataFrame(schema=canonical_schema(table)))


def _patient(birth_year: int, sex: str) -> pl.DataFrame:
    row = {"patient_id": "P1", "birth_year": birth_year, "sex": sex, "death_date": None}
    return pl.DataFrame([{**row, SOURCE_LINE: 2}], schema=canonical_schema("patients"))


def test_birth_year_bound_follows_the_extract_year() -> None:
    frame = _patient(2027, "F")
    table_model("patients", 2027).validate(frame)
    with pytest.raises(SchemaErrors) as caught:
        table_model("patients", 2026).validate(frame, lazy=True)
    cases = caught.value.failure_cases
    assert cases.select("column", "check", "failure_case", "index").rows() == [
        ("birth_year", "out_of_range", "2027", 0)
    ]


def test_a_lazy_frame_only_checks_the_schema() -> None:
    # Why validation.py validates eager frames: with a LazyFrame the value checks do not run.
    frame = _patient(1800, "?")
    table_model("patients", 2026).validate(frame.lazy()).collect()
    with pytest.raises(SchemaErrors):
        table_model("patients", 2026).validate(frame, lazy=True)
