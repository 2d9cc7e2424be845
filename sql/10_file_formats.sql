-- File formats of the raw zone (written by the orchestrator, loaded by the loader's COPY INTO).
--
-- Variables: ${DATABASE}, ${SCHEMA}.
--
-- NDJSON × {gzip, zstd} and CSV × {gzip, zstd}: COMPRESSION = AUTO detects gzip and zstd from the
-- file contents/extension (.gz / .zst) in Snowflake and in the local service alike, so one format
-- per file type covers both compressions. The explicit variants below (..._GZ_FMT, ..._ZSTD_FMT)
-- exist for people who prefer to pin the compression; the pipeline itself uses NDJSON_FMT and
-- CSV_FMT.

-- One JSON object per line: {"payload": {...}, "metadata": {...Kinesis lineage...}}.
-- ALLOW_DUPLICATE = TRUE: a payload with a repeated object key keeps the last value, the same rule
-- as the functions' own field extraction and the upsert's PARSE_JSON(?, 'd'); without it one such
-- line fails the whole file (https://docs.snowflake.com/en/sql-reference/sql/create-file-format).
CREATE FILE FORMAT IF NOT EXISTS ${DATABASE}.${SCHEMA}.NDJSON_FMT
  TYPE = JSON
  ALLOW_DUPLICATE = TRUE
  COMPRESSION = AUTO;

-- CSV as the orchestrator writes it: a header line, \N for NULL, a field containing , " CR LF \
-- or leading/trailing spaces is enclosed in double quotes (a quote doubled), the empty string is
-- written as "" and stays an empty string (EMPTY_FIELD_AS_NULL = FALSE). Backslashes are data
-- (ESCAPE_UNENCLOSED_FIELD = NONE). '\\N' is the two characters \N in Snowflake's string syntax.
CREATE FILE FORMAT IF NOT EXISTS ${DATABASE}.${SCHEMA}.CSV_FMT
  TYPE = CSV
  FIELD_OPTIONALLY_ENCLOSED_BY = '"'
  SKIP_HEADER = 1
  COMPRESSION = AUTO
  NULL_IF = ('\\N')
  EMPTY_FIELD_AS_NULL = FALSE
  ESCAPE_UNENCLOSED_FIELD = NONE;

-- Explicit-compression variants (same options).
CREATE FILE FORMAT IF NOT EXISTS ${DATABASE}.${SCHEMA}.NDJSON_GZ_FMT
  TYPE = JSON
  ALLOW_DUPLICATE = TRUE
  COMPRESSION = GZIP;

CREATE FILE FORMAT IF NOT EXISTS ${DATABASE}.${SCHEMA}.NDJSON_ZSTD_FMT
  TYPE = JSON
  ALLOW_DUPLICATE = TRUE
  COMPRESSION = ZSTD;

CREATE FILE FORMAT IF NOT EXISTS ${DATABASE}.${SCHEMA}.CSV_GZ_FMT
  TYPE = CSV
  FIELD_OPTIONALLY_ENCLOSED_BY = '"'
  SKIP_HEADER = 1
  COMPRESSION = GZIP
  NULL_IF = ('\\N')
  EMPTY_FIELD_AS_NULL = FALSE
  ESCAPE_UNENCLOSED_FIELD = NONE;

CREATE FILE FORMAT IF NOT EXISTS ${DATABASE}.${SCHEMA}.CSV_ZSTD_FMT
  TYPE = CSV
  FIELD_OPTIONALLY_ENCLOSED_BY = '"'
  SKIP_HEADER = 1
  COMPRESSION = ZSTD
  NULL_IF = ('\\N')
  EMPTY_FIELD_AS_NULL = FALSE
  ESCAPE_UNENCLOSED_FIELD = NONE;
