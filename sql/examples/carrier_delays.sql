-- Mean departure delay and flight count per carrier, real (prepared) next to synthetic.
SELECT
    carrier,
    count(*) FILTER (WHERE kind = 'real') AS real_flights,
    count(*) FILTER (WHERE kind = 'synthetic') AS synthetic_flights,
    round(avg(dep_delay) FILTER (WHERE kind = 'real'), 1) AS real_mean_delay,
    round(avg(dep_delay) FILTER (WHERE kind = 'synthetic'), 1) AS synthetic_mean_delay
FROM (
    SELECT 'real' AS kind, carrier, dep_delay FROM prepared.flights
    UNION ALL
    SELECT 'synthetic' AS kind, carrier, dep_delay FROM synthetic.flights
)
GROUP BY carrier
ORDER BY real_flights DESC
LIMIT 8
