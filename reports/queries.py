"""The warehouse reads behind the report: one query per section, each over the `latest_*` views
or one run's rows (parameters ``$period``, ``$run_id``, ``$cap``, ``$top``)."""

MEASURES_SQL = """
WITH m AS (
    SELECT measure_id, any_value(measure_version) AS measure_version, any_value(title) AS title,
           any_value(unit) AS unit, any_value(measure_type) AS measure_type,
           any_value(reference_hours) AS reference_hours, any_value(ruleset) AS ruleset,
           any_value(window_hours) AS window_hours, any_value(changes) AS changes
    FROM measures WHERE run_id = $run_id GROUP BY measure_id
),
s AS (
    SELECT * FROM latest_measure_summary WHERE period = $period AND stratum_kind = 'all'
)
SELECT coalesce(m.measure_id, s.measure_id) AS measure_id,
       m.measure_version, m.title, m.unit, m.measure_type, m.reference_hours, m.ruleset,
       m.window_hours, m.changes,
       s.denominator, s.met, s.not_met, s.excluded, s.pending, s.rate, s.ci_low, s.ci_high
FROM m FULL OUTER JOIN s ON s.measure_id = m.measure_id
ORDER BY measure_id
"""

STRATA_SQL = """
SELECT measure_id, stratum_kind, coalesce(stratum, 'unknown') AS stratum,
       denominator, met, not_met, excluded, pending, rate, ci_low, ci_high
FROM latest_measure_summary
WHERE period = $period AND stratum_kind IN ('site', 'setting')
ORDER BY measure_id, CASE stratum_kind WHEN 'site' THEN 0 ELSE 1 END, stratum
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

NOT_MET_SQL = """
SELECT measure_id, patient_id, encounter_id, site_id, setting, index_time, evidence,
       count(*) OVER (PARTITION BY measure_id) AS total
FROM latest_case_results
WHERE period = $period AND outcome = 'not_met'
QUALIFY row_number() OVER (
    PARTITION BY measure_id ORDER BY index_time, patient_id, encounter_id
) <= $cap
ORDER BY measure_id, index_time, patient_id, encounter_id
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
