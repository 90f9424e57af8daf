-- Departures from New York in the first week of 2013 (demo-sized), one row per flight; the flights
-- of one plane (tailnum) are the events of one entity.
SELECT
    tailnum,         -- the entity: synth.yaml groups training examples by it
    day,             -- day of January
    sched_dep_time,  -- scheduled departure, HHMM
    dep_delay,       -- minutes, negative when early
    arr_delay,       -- minutes
    carrier,         -- carrier, origin and dest are one mapped route in synth.yaml
    origin,
    dest,
    air_time,        -- minutes in the air
    distance         -- miles
FROM raw.flights
WHERE month = 1 AND day <= 7 AND tailnum IS NOT NULL AND dep_delay IS NOT NULL
