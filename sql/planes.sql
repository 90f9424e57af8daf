-- Aircraft that flew from New York in 2013, one row per plane, without the registration number
-- (an identifier, not a property of the aircraft) and the mostly empty cruise speed.
SELECT
    year,          -- year built; planes with an unknown year are left out
    type,          -- fixed wing single/multi engine, rotorcraft
    manufacturer,  -- paired with model through mapped_columns in synth.yaml
    model,
    engines,
    seats,
    engine         -- engine type: Turbo-fan, Turbo-jet, Reciprocating, ...
FROM raw.planes
WHERE year IS NOT NULL
