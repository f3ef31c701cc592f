"""One small clinical story, written as a contract extract, that every source format can carry:
the same-story test (test_same_story.py) writes it as OMOP CDM, Synthea CSV and FHIR NDJSON with
the writers in sample_data/formats/ and expects every case to come out the same.

Only facts all four formats hold are used: no disposition, department or referral specialty
(Synthea has none), orders performed when ordered (an OMOP procedure has one time), diagnoses
recorded at their encounter's arrival (Synthea dates a condition by day, and the adapter times it
at the encounter's start), naive local times in America/Chicago. Each patient has a birth year
of their own, which identifies them across formats (OMOP person ids are integers, not the
contract's ids).
"""

from __future__ import annotations

import json
from pathlib import Path

TIMEZONE = "America/Chicago"
PERIOD = "2026-10"

TABLES: dict[str, list[str]] = {
    "patients": [
        "patient_id,birth_year,sex,death_date",
        "P1,1960,F,",  # saddle anaesthesia: MRI 6.5 h later, sacral exam done
        "P2,1955,M,",  # new bladder dysfunction: MRI 13.5 h later
        "P3,1950,F,",  # diabetes, monofilament in March
        "P4,1948,M,",  # diabetes, no monofilament
        "P5,1970,F,",  # restless legs symptoms, ferritin the same day
        "P6,1958,M,",  # absent pedal pulses, ABI 0.85, ABI order a week later
        "P7,1965,F,",  # diabetic neuropathy: labs and pregabalin
    ],
    "encounters": [
        "encounter_id,patient_id,site_id,department,clinician_id,setting,arrival_time,"
        "departure_time,disposition",
        "E1,P1,S1,,C1,emergency,2026-10-05 08:00,2026-10-05 14:00,",
        "E2,P2,S1,,C1,emergency,2026-10-12 22:00,2026-10-13 04:00,",
        "E3A,P3,S2,,C2,outpatient,2025-07-01 09:00,2025-07-01 09:30,",
        "E3,P3,S2,,C2,outpatient,2026-03-10 09:00,2026-03-10 09:30,",
        "E4,P4,S2,,C2,outpatient,2026-02-01 10:00,2026-02-01 10:20,",
        "E5,P5,S2,,C2,outpatient,2026-10-08 11:00,2026-10-08 11:30,",
        "E6,P6,S1,,C3,outpatient,2026-10-20 14:00,2026-10-20 14:40,",
        "E7,P7,S2,,C2,outpatient,2026-10-15 09:00,2026-10-15 09:40,",
    ],
    "diagnoses": [
        "patient_id,encounter_id,code_system,code,recorded_time,source",
        "P3,E3A,SNOMEDCT,44054006,2025-07-01 09:00,encounter",
        "P4,E4,SNOMEDCT,44054006,2026-02-01 10:00,encounter",
        "P7,E7,SNOMEDCT,368581000119106,2026-10-15 09:00,encounter",
    ],
    "findings": [
        "patient_id,encounter_id,code_system,code,result,value_num,recorded_time",
        "P1,E1,LOCAL,saddle_anesthesia,present,,2026-10-05 08:30",
        "P1,E1,LOCAL,perianal_sensation,normal,,2026-10-05 08:40",
        "P1,E1,LOCAL,anal_sphincter_tone,normal,,2026-10-05 08:41",
        "P2,E2,LOCAL,new_bladder_dysfunction,present,,2026-10-12 22:30",
        "P3,E3,LOCAL,monofilament_10g,normal,,2026-03-10 09:15",
        "P5,E5,LOCAL,rls_symptoms,present,,2026-10-08 11:10",
        "P6,E6,LOCAL,pedal_pulses,abnormal,,2026-10-20 14:10",
    ],
    "orders": [
        "order_id,patient_id,encounter_id,code_system,code,category,specialty,ordered_time,"
        "performed_time,status",
        "O1,P1,E1,CPT,72148,imaging,,2026-10-05 15:00,2026-10-05 15:00,completed",
        "O2,P2,E2,CPT,72148,imaging,,2026-10-13 12:00,2026-10-13 12:00,completed",
        "O3,P6,E6,CPT,93922,procedure,,2026-10-27 10:00,2026-10-27 10:00,completed",
    ],
    "labs": [
        "patient_id,encounter_id,loinc,value_num,value_text,unit,collected_time,resulted_time",
        "P5,E5,2276-4,30,,ng/mL,2026-10-08 11:20,",
        "P6,E6,77194-9,0.85,,{ratio},2026-10-20 14:30,",
        "P7,E7,2132-9,400,,pg/mL,2026-10-15 09:30,",
        "P7,E7,3016-3,2.1,,mIU/L,2026-10-15 09:30,",
        "P7,E7,2160-0,0.9,,mg/dL,2026-10-15 09:30,",
        "P7,E7,4548-4,7.9,,%,2026-10-15 09:30,",
    ],
    "medications": [
        "medication_id,patient_id,encounter_id,ingredient,rxnorm,dose_mg,doses_per_day,route,"
        "start_time,end_time,status",
        "M1,P7,E7,pregabalin,483438,100,,,2026-10-15 09:35,,active",
    ],
}

MANIFEST = {
    "extract_id": "same-story",
    "timezone": TIMEZONE,
    "coverage_start": "2025-06-01",
    "coverage_end": "2026-10-31",
}

# (measure, birth year, outcome) of every case the story makes in 2026-10, as the measures
# catalogue reads it (shared/spec/measures.md).
EXPECTED = [
    ("LN-01", 1955, "not_met"),  # MRI 13.5 h after the red flag
    ("LN-01", 1960, "met"),  # MRI 6.5 h after
    ("LN-02", 1955, "not_met"),  # no referral
    ("LN-02", 1960, "not_met"),
    ("LN-03", 1955, "not_met"),  # no sacral examination
    ("LN-03", 1960, "met"),
    ("LN-07", 1948, "not_met"),  # diabetic, no monofilament in 12 months
    ("LN-07", 1950, "met"),
    ("LN-07", 1965, "not_met"),  # diabetic neuropathy implies diabetes
    ("LN-08", 1965, "met"),  # B12, TSH and creatinine with the diagnosis
    ("LN-09", 1965, "met"),  # HbA1c
    ("LN-10", 1965, "met"),  # pregabalin first
    ("LN-11", 1970, "met"),  # ferritin the same day
    ("LN-14", 1958, "met"),  # ABI a week after absent pulses
    ("LN-15", 1958, "pending"),  # ABI 0.85: the 90-day referral window is still open
]


def write_story(folder: Path) -> Path:
    """The story as a contract extract folder (CSV tables + manifest.json)."""
    folder.mkdir(parents=True, exist_ok=True)
    for table, lines in TABLES.items():
        (folder / f"{table}.csv").write_text("\n".join(lines) + "\n")
    (folder / "manifest.json").write_text(json.dumps(MANIFEST, indent=2))
    return folder
