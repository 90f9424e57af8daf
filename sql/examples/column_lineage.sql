-- Which source columns each published column of synthetic.planes comes from (latest version).
SELECT column_name, source_table, source_column
FROM meta.column_lineage
WHERE table_name = 'synthetic.planes'
  AND version = (SELECT max(version) FROM meta.lineage WHERE table_name = 'synthetic.planes')
ORDER BY column_name
