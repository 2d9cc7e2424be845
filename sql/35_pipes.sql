-- Pipes for the loader's LOAD_MODE=snowpipe: one per raw table, named <table>_PIPE (the loader's
-- PIPE_SUFFIX), in the table's database and schema. The loader hands each file to its table's pipe
-- with the Snowpipe REST API (insertFiles) and reads what became of it (insertReport,
-- loadHistoryScan); Snowpipe loads it with the COPY below on Snowflake-managed compute, no
-- warehouse. https://docs.snowflake.com/en/sql-reference/sql/create-pipe
--
-- The COPY is the loader's own COPY for LINEAGE=in_file (the default, see functions/loader/src/
-- copy.rs): no transform, the lineage is in the files (the orchestrator writes
-- metadata.file/metadata.row into each NDJSON line and the SOURCE_FILE/SOURCE_ROW columns into
-- CSV, named in shared::lineage), so rows land with the same lineage in either mode. For files
-- without in-file lineage (LINEAGE=metadata), re-create a pipe with the transform copy mode runs,
-- e.g. AS COPY INTO T (RECORD, SOURCE_FILE, SOURCE_ROW, LOADED_AT) FROM (SELECT $1,
-- METADATA$FILENAME, METADATA$FILE_ROW_NUMBER, METADATA$START_SCAN_TIME FROM @STAGE/).
--
-- FROM the stage's root, not <table dir>/: insertFiles names a file by its path below the stage
-- (the same path copy mode's FILES list uses), so the path the loader sends means the same file
-- whatever the pipe's location. Snowpipe's default ON_ERROR is SKIP_FILE: a file with a bad row is
-- reported LOAD_FAILED with its first error, and the loader fails its message. Keep it: the loader
-- takes a file whose rows the table holds for loaded (README, Serverless load, step 4), which is
-- only true when a file loads whole or not at all.
-- https://docs.snowflake.com/en/sql-reference/sql/copy-into-table#copy-options-copyoptions
--
-- Variables: ${DATABASE}, ${SCHEMA}, ${STAGE}.

CREATE PIPE IF NOT EXISTS ${DATABASE}.${SCHEMA}.SENSOR_READINGS_RAW_PIPE
  AS COPY INTO ${DATABASE}.${SCHEMA}.SENSOR_READINGS_RAW
  FROM @${DATABASE}.${SCHEMA}.${STAGE}/
  FILE_FORMAT = (FORMAT_NAME = '${DATABASE}.${SCHEMA}.NDJSON_FMT');

CREATE PIPE IF NOT EXISTS ${DATABASE}.${SCHEMA}.ORDER_EVENTS_RAW_PIPE
  AS COPY INTO ${DATABASE}.${SCHEMA}.ORDER_EVENTS_RAW
  FROM @${DATABASE}.${SCHEMA}.${STAGE}/
  FILE_FORMAT = (FORMAT_NAME = '${DATABASE}.${SCHEMA}.CSV_FMT');
