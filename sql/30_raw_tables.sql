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
