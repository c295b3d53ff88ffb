-- sla_summary: the sla report from its times per conversation (per_conv: day, queue,
-- first_response_s, resolution_s, resolved, fcr), spliced into sla.sql and rollup/sla.sql.
SELECT day,
       queue,
       COUNT(*) AS conversations,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY first_response_s) AS p50_first_response_s,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY first_response_s) AS p90_first_response_s,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY resolution_s) AS p50_resolution_s,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY resolution_s) AS p90_resolution_s,
       CASE WHEN SUM(resolved) = 0 THEN NULL ELSE CAST(SUM(fcr) AS DOUBLE) / SUM(resolved) END
           AS first_contact_resolution_rate
FROM per_conv
GROUP BY day, queue
ORDER BY day, queue
