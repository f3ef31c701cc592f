"""The warehouse reads behind the report: one query per section, each over the `latest_*` views
or one run's rows (parameters ``$period``, ``$first``, ``$run_id``, ``$cap``, ``$top``)."""

# {extra}: the measures columns added since v1 this warehouse has (target, target_source,
# definition), each selected as itself or as NULL (render.py), so an older warehouse still reads.
MEASURES_SQL = """
WITH m AS (
    SELECT measure_id, any_value(measure_version) AS measure_version, any_value(title) AS title,
           any_value(unit) AS unit, any_value(measure_type) AS measure_type,
           any_value(reference_hours) AS reference_hours, any_value(ruleset) AS ruleset,
           any_value(window_hours) AS window_hours, any_value(changes) AS changes,
           any_value(source) AS source, {extra}
    FROM measures WHERE run_id = $run_id GROUP BY measure_id
),
s AS (
    SELECT * FROM latest_measure_summary WHERE period = $period AND stratum_kind = 'all'
)
SELECT coalesce(m.measure_id, s.measure_id) AS measure_id,
       m.* EXCLUDE (measure_id),
       s.denominator, s.met, s.not_met, s.excluded, s.pending, s.rate, s.ci_low, s.ci_high,
       s.status, s.status_reason
FROM m FULL OUTER JOIN s ON s.measure_id = m.measure_id
ORDER BY measure_id
"""

# Every stratum of the period's measure summary, for suppression (which looks at a measure's
# strata of one kind together) before anything is shown. A site or setting stratum with a NULL
# stratum holds the cases with none recorded (shown last); it is not the `all` row.
SUMMARY_SQL = """
SELECT measure_id, period, stratum_kind, CASE WHEN stratum_kind = 'all' THEN NULL ELSE stratum END
       AS stratum, denominator, met, not_met, excluded, pending, rate, ci_low, ci_high, status,
       status_reason
FROM latest_measure_summary
WHERE period = $period
ORDER BY measure_id, CASE stratum_kind WHEN 'all' THEN 0 WHEN 'site' THEN 1 ELSE 2 END,
         stratum NULLS LAST
"""

# The months of the trend charts: the `all` rows of each period from $first to $period, and the
# periods that have a succeeded run at all (a month without one is a gap, not a zero).
TREND_SQL = """
SELECT measure_id, period, stratum_kind, NULL::VARCHAR AS stratum,
       denominator, met, not_met, excluded, pending, rate, ci_low, ci_high, status
FROM latest_measure_summary
WHERE stratum_kind = 'all' AND period BETWEEN $first AND $period
ORDER BY measure_id, period
"""

RUN_PERIODS_SQL = """
SELECT period FROM latest_runs WHERE period BETWEEN $first AND $period ORDER BY period
"""

# Components (LN-04's exam parts) and also-reported facts (LN-07's loss of protective sensation),
# among the denominator cases, in the order the measure file lists them.
COMPONENTS_SQL = """
SELECT s.measure_id, s.kind, s.name, s.denominator, s.cases_with, s.rate, s.ci_low, s.ci_high
FROM latest_component_summary AS s
LEFT JOIN measures AS m ON m.run_id = s.run_id AND m.measure_id = s.measure_id
WHERE s.period = $period
ORDER BY s.measure_id, CASE s.kind WHEN 'component' THEN 0 ELSE 1 END,
         list_position(CASE s.kind WHEN 'component' THEN m.components ELSE m.also_report END,
                       s.name) NULLS LAST,
         s.name
"""

# Time to the numerator event (timeliness measures, and LN-01's 4 h reference line).
TIMING_SQL = """
SELECT * FROM latest_timing_summary WHERE period = $period ORDER BY measure_id
"""

# Pending cases judged again: by an audit run, those of earlier months (rejudged_cases.run_id);
# for a rejudge run, those of its own month (rejudged_cases.rejudge_run_id). {column} is one of
# these two names, never input.
REJUDGED_COUNTS_SQL = """
SELECT r.period, r.measure_id, r.previous_outcome, r.outcome, count(*) AS n,
       any_value(m.title) AS title
FROM rejudged_cases AS r
LEFT JOIN measures AS m ON m.run_id = r.rejudge_run_id AND m.measure_id = r.measure_id
WHERE r.{column} = $run_id
GROUP BY r.period, r.measure_id, r.previous_outcome, r.outcome
ORDER BY r.period, r.measure_id, r.previous_outcome, r.outcome
"""

REJUDGED_CASES_SQL = """
SELECT period, measure_id, patient_id, encounter_id, index_time, previous_outcome, outcome,
       evidence
FROM rejudged_cases
WHERE {column} = $run_id
QUALIFY row_number() OVER (
    PARTITION BY period, measure_id ORDER BY index_time, patient_id, encounter_id
) <= $cap
ORDER BY period, measure_id, index_time, patient_id, encounter_id
"""

LOAD_COUNTS_SQL = """
SELECT table_name,
       sum(input_rows) AS input_rows,
       sum(loaded_rows) AS loaded_rows,
       sum(quarantined_rows) AS quarantined_rows,
       sum(warned_rows) AS warned_rows,
       list_sort(list(DISTINCT source_file)) AS source_files
FROM load_counts WHERE run_id = $run_id
GROUP BY table_name ORDER BY table_name
"""

QUARANTINE_SQL = """
WITH g AS (
    SELECT table_name, column_name, rule, count(*) AS n,
           first(source_file || ' line ' || source_line ORDER BY source_file, source_line)
               AS first_seen
    FROM quarantine WHERE run_id = $run_id
    GROUP BY table_name, column_name, rule
)
SELECT *, count(*) OVER () AS groups, sum(n) OVER () AS problems
FROM g
ORDER BY n DESC, table_name, column_name NULLS FIRST, rule
LIMIT $top
"""

# Data-quality warnings (rows that loaded): every (table, column, rule) group with its count and
# the first line where it was seen, so a reviewer can open the file there.
DATA_QUALITY_SQL = """
SELECT table_name, column_name, rule, count(*) AS n,
       first(source_file || ' line ' || source_line ORDER BY source_file, source_line)
           AS first_seen,
       first(value ORDER BY source_file, source_line) AS first_value
FROM data_quality WHERE run_id = $run_id
GROUP BY table_name, column_name, rule
ORDER BY table_name, column_name NULLS FIRST, rule
"""

# --------------------------------------------------------------------------------------------
# Not-met cases with their evidence in words (the drill-down and `chartaudit export`'s CSVs).
#
# A case's evidence_id names the deciding row of a canonical table: its id (orders, medications,
# encounters) or its content-derived row_id (labs, findings, diagnoses). The canonical tables hold
# only the newest extract, so a row is described only when it comes from the extract the case's
# run judged (same extract_id); otherwise the judge's own words stand. Times are local to the
# run's time zone ($zone). Code names come from the measures' value sets (`code_names`: columns
# code_system, code, description), registered by the caller.

_LOCAL = "strftime(timezone($zone, {col}), '%Y-%m-%d %H:%M')"


def _local(col: str) -> str:
    return _LOCAL.format(col=col)


def _named(system: str, code: str) -> str:
    """'MRI lumbar spine without contrast (CPT 72148)', or 'CPT 72148' with no name known."""
    return (
        f"coalesce(n.description || ' (' || {system} || ' ' || {code} || ')', "
        f"{system} || ' ' || {code})"
    )


# One SELECT per canonical table: (evidence id, extract_id, words). `cases.py` unions those of the
# tables the warehouse has.
EVIDENCE_ROW_SQL = {
    "orders": f"""
SELECT t.order_id AS id, t.extract_id,
       concat_ws(', ',
           coalesce(n.description, t.category) || ' (' || t.code_system || ' ' || t.code || ')'
               || coalesce(' ' || t.specialty, ''),
           'order ' || t.order_id,
           'ordered ' || {_local("t.ordered_time")},
           'performed ' || {_local("t.performed_time")},
           'status ' || t.status) AS words
FROM orders AS t LEFT JOIN code_names AS n ON n.code_system = t.code_system AND n.code = t.code
""",
    "medications": f"""
SELECT t.medication_id AS id, t.extract_id,
       concat_ws(', ',
           t.ingredient || coalesce(' ' || t.dose_mg || ' mg', '')
               || coalesce(' x ' || t.doses_per_day || '/day', '')
               || coalesce(' ' || t.route, ''),
           'medication ' || t.medication_id,
           'started ' || {_local("t.start_time")},
           'ended ' || {_local("t.end_time")},
           'status ' || t.status) AS words
FROM medications AS t
""",
    "labs": f"""
SELECT t.row_id AS id, t.extract_id,
       concat_ws(', ',
           {_named("'LOINC'", "t.loinc")} || ' = '
               || coalesce(CAST(t.value_num AS VARCHAR), t.value_text, 'no value')
               || coalesce(' ' || t.unit, ''),
           'collected ' || {_local("t.collected_time")},
           'resulted ' || {_local("t.resulted_time")}) AS words
FROM labs AS t LEFT JOIN code_names AS n ON n.code_system = 'LOINC' AND n.code = t.loinc
""",
    "findings": f"""
SELECT t.row_id AS id, t.extract_id,
       concat_ws(', ',
           {_named("t.code_system", "t.code")} || ' ' || t.result
               || coalesce(' (' || t.value_num || ')', ''),
           'recorded ' || {_local("t.recorded_time")}) AS words
FROM findings AS t LEFT JOIN code_names AS n ON n.code_system = t.code_system AND n.code = t.code
""",
    "diagnoses": f"""
SELECT t.row_id AS id, t.extract_id,
       concat_ws(', ',
           'diagnosis ' || {_named("t.code_system", "t.code")},
           coalesce(t.source, 'unknown source'),
           'recorded ' || {_local("t.recorded_time")}) AS words
FROM diagnoses AS t LEFT JOIN code_names AS n ON n.code_system = t.code_system AND n.code = t.code
""",
    "encounters": f"""
SELECT t.encounter_id AS id, t.extract_id,
       concat_ws(', ',
           t.setting || ' encounter ' || t.encounter_id || ' at ' || t.site_id
               || coalesce(' (' || t.department || ')', ''),
           'arrived ' || {_local("t.arrival_time")},
           'left ' || {_local("t.departure_time")},
           t.disposition) AS words
FROM encounters AS t
""",
}

NO_EVIDENCE_ROWS_SQL = (
    "SELECT NULL::VARCHAR AS id, NULL::VARCHAR AS extract_id, NULL::VARCHAR AS words WHERE false"
)
NO_ENCOUNTERS_SQL = (
    "SELECT NULL::VARCHAR AS encounter_id, NULL::VARCHAR AS extract_id,"
    " NULL::VARCHAR AS department WHERE false"
)

# {evidence_rows}: the union of EVIDENCE_ROW_SQL's selects (or NO_EVIDENCE_ROWS_SQL);
# {encounters}: `encounters` (or NO_ENCOUNTERS_SQL). `reason` is the measure's own reason
# (fails-if measures), else the judge's words up to any "nearest outside the window" part.
NOT_MET_CASES_SQL = """
WITH c AS (
    SELECT c.*, r.extract_id AS run_extract_id
    FROM latest_case_results AS c JOIN latest_runs AS r USING (run_id)
    WHERE c.period = $period AND c.outcome = 'not_met'
),
e AS (
    SELECT DISTINCT * FROM ({evidence_rows}) AS rows
    WHERE id IN (SELECT evidence_id FROM c)
),
enc AS (
    SELECT DISTINCT encounter_id, extract_id, department FROM ({encounters}) AS x
    WHERE encounter_id IN (SELECT encounter_id FROM c)
),
stripped AS (
    SELECT c.*, regexp_replace(c.evidence, '^not met: ', '') AS said FROM c
)
SELECT s.measure_id, s.period, s.patient_id, s.encounter_id, s.site_id,
       enc.department, s.setting, s.index_time,
       coalesce(s.reason, split_part(s.said, '; nearest outside the window', 1)) AS reason,
       CASE
           WHEN s.evidence_id IS NULL THEN 'no qualifying record found'
           WHEN e.words IS NULL THEN s.said
           WHEN s.said LIKE '%; nearest outside the window%'
               THEN 'nearest outside the window: ' || e.words
           ELSE e.words
       END AS evidence_text
FROM stripped AS s
LEFT JOIN e ON e.id = s.evidence_id AND e.extract_id = s.run_extract_id
LEFT JOIN enc ON enc.encounter_id = s.encounter_id AND enc.extract_id = s.run_extract_id
ORDER BY s.measure_id, s.index_time, s.patient_id, s.encounter_id NULLS FIRST
"""
