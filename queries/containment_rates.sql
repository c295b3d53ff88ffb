-- containment_rates: what containment computes from its conversations (conv: opened_at, day,
-- queue, resolved, handed_off), spliced into containment.sql and rollup/containment.sql.
SELECT day,
       queue,
       COUNT(*) AS conversations,
       SUM(resolved) AS resolved,
       SUM(CASE WHEN resolved = 1 AND handed_off = 0 THEN 1 ELSE 0 END) AS contained,
       SUM(handed_off) AS handed_off,
       CASE WHEN SUM(resolved) = 0 THEN NULL
            ELSE CAST(SUM(CASE WHEN resolved = 1 AND handed_off = 0 THEN 1 ELSE 0 END) AS DOUBLE) / SUM(resolved)
       END AS containment_rate
FROM conv
WHERE opened_at IS NOT NULL AND day <= $to
GROUP BY day, queue
ORDER BY day, queue
