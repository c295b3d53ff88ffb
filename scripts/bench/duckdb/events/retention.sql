-- retention as one query over the events: DuckDB's formulation over plain events
-- (scripts/bench_reports.py). Its pieces in double braces: cohort, the cohort over the events
-- (cohort.sql here); report_from:X, the rest of the report (queries/retention.sql) from its
-- CTE X.
WITH {{cohort}},
{{report_from:cohorts}}
