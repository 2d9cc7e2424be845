-- Raw tables, loaded by the loader's COPY INTO from the stage, without transforms: columns are
-- positional and match the files exactly. Lineage (Kinesis stream, shard, sequence number,
-- partition key, arrival time, source file and row) is written into the files by the
-- orchestrator, because a COPY without transform cannot add METADATA$ columns (and the local
-- service supports neither transforms nor METADATA$ columns).
--
-- Variables: ${DATABASE}, ${SCHEMA}.

-- Sensor readings, NDJSON. A JSON COPY without transform loads exactly one VARIANT column, so
-- each line lands whole in RECORD:
--   {"payload": {...}, "metadata": {"stream", "shard_id", "sequence_number", "partition_key",
--                                   "arrival_time", "file", "row"}}
CREATE TABLE IF NOT EXISTS ${DATABASE}.${SCHEMA}.SENSOR_READINGS_RAW (
  RECORD VARIANT
);

-- The same rows as typed columns (works on the local service too).
CREATE OR REPLACE VIEW ${DATABASE}.${SCHEMA}.SENSOR_READINGS_RAW_V AS
SELECT
  -- TRY_CAST: the raw zone keeps records exactly as sent, so one record with a non-numeric
  -- sensorId must not make the whole view fail; it shows as NULL here.
  TRY_CAST(RECORD:payload:sensorId::STRING AS NUMBER)          AS SENSORID,
  TRY_CAST(RECORD:payload:currentTemperature::STRING AS FLOAT) AS CURRENTTEMPERATURE,
  RECORD:payload:status::STRING                 AS STATUS,
  RECORD:metadata:stream::STRING                AS STREAM,
  RECORD:metadata:shard_id::STRING              AS SHARD_ID,
  RECORD:metadata:sequence_number::STRING       AS SEQUENCE_NUMBER,
  RECORD:metadata:partition_key::STRING         AS PARTITION_KEY,
  RECORD:metadata:arrival_time::TIMESTAMP_NTZ   AS ARRIVAL_TIME,
  RECORD:metadata:file::STRING                  AS SOURCE_FILE,
  RECORD:metadata:row::NUMBER                   AS SOURCE_ROW
FROM ${DATABASE}.${SCHEMA}.SENSOR_READINGS_RAW;

-- Sensor readings as typed columns that evolve (micro-batch schema evolution): the loader lists the
-- key table in MATCH_BY_NAME_TABLES, so its NDJSON files load with MATCH_BY_COLUMN_NAME =
-- CASE_INSENSITIVE and each top-level field of a line lands in the column of that name. With
-- ENABLE_SCHEMA_EVOLUTION = TRUE, COPY adds a column for a new field (typed as schema detection
-- types its values, at most 100 per COPY) and drops NOT NULL from a column the files lack.
-- Only the lineage columns exist up front: INCLUDE_METADATA (LINEAGE=metadata) fills them, and
-- evolution never adds them. Lines must be flat records (fields at the top level), as written by
-- producers other than the orchestrator (whose lines nest the record under "payload").
-- https://docs.snowflake.com/en/user-guide/data-load-schema-evolution
CREATE TABLE IF NOT EXISTS ${DATABASE}.${SCHEMA}.SENSOR_READINGS_TYPED (
  SOURCE_FILE VARCHAR,
  SOURCE_ROW  NUMBER,
  LOADED_AT   TIMESTAMP_LTZ
) ENABLE_SCHEMA_EVOLUTION = TRUE;

-- Order events, CSV (header line; columns in exactly this order). The orchestrator's mapping:
-- event_id <- /event_id, event_type <- /event_type, event_timestamp <- /event_timestamp,
-- customer_id <- /customer/id, customer_name <- /customer/name, city <- /customer/city,
-- total <- /order/total, currency <- /order/currency, items <- /order/items (JSON text),
-- then the 7 lineage columns. ARRIVAL_TIME is ISO 8601 UTC (2024-03-05T07:30:00.000Z).
CREATE TABLE IF NOT EXISTS ${DATABASE}.${SCHEMA}.ORDER_EVENTS_RAW (
  EVENT_ID        VARCHAR,
  EVENT_TYPE      VARCHAR,
  EVENT_TIMESTAMP VARCHAR,
  CUSTOMER_ID     VARCHAR,
  CUSTOMER_NAME   VARCHAR,
  CITY            VARCHAR,
  TOTAL           NUMBER(12,2),
  CURRENCY        VARCHAR,
  ITEMS           VARCHAR,
  STREAM          VARCHAR,
  SHARD_ID        VARCHAR,
  SEQUENCE_NUMBER VARCHAR,
  PARTITION_KEY   VARCHAR,
  ARRIVAL_TIME    TIMESTAMP_NTZ,
  SOURCE_FILE     VARCHAR,
  SOURCE_ROW      NUMBER
);
