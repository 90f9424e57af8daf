-- Single-engine aircraft in this fleet seat at most 16 people: drop single-engine airliners.
engines > 1 OR seats <= 16
