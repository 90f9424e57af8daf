-- What produced the published synthetic.flights? Its latest lineage row.
SELECT version, run_id, source_tables, source_checksums, sql_file, model_id, config_hash,
       rows_in, rows_generated, rows_out, valid_fraction, dropped_unseen_mappings, dropped_by_filters,
       started_at, finished_at
FROM meta.lineage
WHERE table_name = 'synthetic.flights'
ORDER BY version DESC
LIMIT 1
