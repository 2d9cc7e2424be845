-- External stage over the raw zone, local stack (`bootstrap --profile local`, the default).
--
-- Variables:
--   ${DATABASE}, ${SCHEMA}
--   ${STAGE}      stage name (default RAW_STAGE)
--   ${STAGE_URL}  the raw zone, e.g. s3://my-bucket/raw/ (default: $STAGE_URL)
--
-- A plain URL stage: the local Snowflake service (fakesnow on DuckDB) reads moto's S3 through
-- DuckDB's httpfs extension with the credentials it was started with, so no integration is needed.

CREATE STAGE IF NOT EXISTS ${DATABASE}.${SCHEMA}.${STAGE}
  URL = '${STAGE_URL}';
