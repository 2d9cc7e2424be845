-- Targets of the streaming path: the upsert function MERGEs each Kinesis batch into these tables
-- by business key. KINESIS_SEQUENCE_NUMBER (and the arrival time) is the version: a row only
-- overwrites the target when it is newer, so a replayed batch cannot roll data back.
-- Snowflake does not enforce PRIMARY KEY; the MERGE (one source row per key) keeps keys unique.
--
-- Variables: ${DATABASE}, ${SCHEMA}.

-- The reference system's sensor table (sensorid, currenttemperature, status) plus version and
-- lineage columns.
CREATE TABLE IF NOT EXISTS ${DATABASE}.${SCHEMA}.SENSOR_READINGS (
  SENSORID                NUMBER(38,0) NOT NULL PRIMARY KEY,
  CURRENTTEMPERATURE      FLOAT,
  STATUS                  VARCHAR,
  KINESIS_SHARD_ID        VARCHAR,
  KINESIS_SEQUENCE_NUMBER VARCHAR,
  KINESIS_ARRIVAL_TIME    TIMESTAMP_NTZ,
  LOADED_AT               TIMESTAMP_NTZ
);

-- E-commerce orders, the CDC target (a delete marker in the change record deletes the row).
CREATE TABLE IF NOT EXISTS ${DATABASE}.${SCHEMA}.ORDERS (
  ORDER_ID                NUMBER(38,0) NOT NULL PRIMARY KEY,
  STATUS                  VARCHAR,
  AMOUNT                  NUMBER(12,2),
  CUSTOMER                VARCHAR,
  UPDATED_AT              TIMESTAMP_NTZ,
  PAYLOAD                 VARIANT,
  KINESIS_SHARD_ID        VARCHAR,
  KINESIS_SEQUENCE_NUMBER VARCHAR,
  KINESIS_ARRIVAL_TIME    TIMESTAMP_NTZ,
  LOADED_AT               TIMESTAMP_NTZ
);

-- Change data capture from the MariaDB `shop` database (local/tools/cdc.py, or AWS DMS / Debezium
-- Server in production): one target per source table, same columns and keys, plus the envelope's
-- version (CDC_VERSION, which orders changes across batches) and the lineage columns. MariaDB's
-- JSON column lands as text, byte for byte. See the README's "Change data capture" section.
CREATE TABLE IF NOT EXISTS ${DATABASE}.${SCHEMA}.SHOP_ORDERS (
  TENANT_ID               NUMBER(38,0) NOT NULL,
  ORDER_ID                NUMBER(38,0) NOT NULL,
  STATUS                  VARCHAR,
  CUSTOMER                VARCHAR,
  AMOUNT                  NUMBER(38,9),
  PLACED_AT               TIMESTAMP_NTZ,
  ATTRS                   VARCHAR,
  CDC_VERSION             VARCHAR,
  KINESIS_SHARD_ID        VARCHAR,
  KINESIS_SEQUENCE_NUMBER VARCHAR,
  KINESIS_ARRIVAL_TIME    TIMESTAMP_NTZ,
  LOADED_AT               TIMESTAMP_NTZ,
  PRIMARY KEY (TENANT_ID, ORDER_ID)
);

CREATE TABLE IF NOT EXISTS ${DATABASE}.${SCHEMA}.SHOP_CUSTOMERS (
  CODE                    VARCHAR NOT NULL PRIMARY KEY,
  NAME                    VARCHAR,
  BALANCE                 NUMBER(38,9),
  UPDATED_AT              TIMESTAMP_NTZ,
  NOTE                    VARCHAR,
  CDC_VERSION             VARCHAR,
  KINESIS_SHARD_ID        VARCHAR,
  KINESIS_SEQUENCE_NUMBER VARCHAR,
  KINESIS_ARRIVAL_TIME    TIMESTAMP_NTZ,
  LOADED_AT               TIMESTAMP_NTZ
);
