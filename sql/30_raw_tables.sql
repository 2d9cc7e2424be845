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

-- Sensor readings as typed columns that evolve (micro-batch schema evolution): the orchestrator
-- and the loader list the key table in MATCH_BY_NAME_TABLES. The orchestrator then writes flat
-- lines: the record's own top-level fields, then its Kinesis lineage as top-level keys named as
-- the columns below ({"sensorId": 6, ..., "KINESIS_STREAM": "...", "KINESIS_SHARD_ID": "...",
-- "KINESIS_SEQUENCE_NUMBER": "...", "KINESIS_PARTITION_KEY": "...", "KINESIS_ARRIVAL_TIME":
-- "2024-03-05T07:30:00.000Z"}; "KINESIS_SUB_SEQUENCE" only for KPL sub-records). The loader
-- COPYs them with MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE, each top-level field into the column
-- of that name. With ENABLE_SCHEMA_EVOLUTION = TRUE, COPY adds a column for a new field (typed as
-- schema detection types its values, at most 100 per COPY) and drops NOT NULL from a column the
-- files lack. The lineage columns exist up front so that evolution never types them from their
-- values (a sequence number is too long for NUMBER, the arrival time would stay TEXT):
-- SOURCE_FILE, SOURCE_ROW and LOADED_AT are filled by INCLUDE_METADATA (the loader's
-- LINEAGE=metadata), the KINESIS_ columns by the lines. Flat lines from other producers load the
-- same way.
-- https://docs.snowflake.com/en/user-guide/data-load-schema-evolution
CREATE TABLE IF NOT EXISTS ${DATABASE}.${SCHEMA}.SENSOR_READINGS_TYPED (
  SOURCE_FILE             VARCHAR,
  SOURCE_ROW              NUMBER,
  LOADED_AT               TIMESTAMP_LTZ,
  KINESIS_STREAM          VARCHAR,
  KINESIS_SHARD_ID        VARCHAR,
  KINESIS_SEQUENCE_NUMBER VARCHAR,
  KINESIS_PARTITION_KEY   VARCHAR,
  KINESIS_SUB_SEQUENCE    NUMBER(10,0),
  KINESIS_ARRIVAL_TIME    TIMESTAMP_NTZ
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
