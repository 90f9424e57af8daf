-- A flight's average speed (distance over air time) lies between 100 and 700 mph.
air_time IS NULL OR distance / (air_time / 60.0) BETWEEN 100 AND 700
