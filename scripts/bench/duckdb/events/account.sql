-- account as one query over the events: the report reads the events alone, so this is the
-- report itself (queries/account.sql), for scripts/bench_reports.py.
{{report}}
