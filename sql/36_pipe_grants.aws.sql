-- What the loader's role needs on the pipes of sql/35_pipes.sql for LOAD_MODE=snowpipe: OPERATE
-- to call insertFiles, MONITOR to read insertReport and loadHistoryScan (OPERATE alone does not
-- show a pipe's load history). The COPY itself runs with the pipe owner's privileges (the stage,
-- the file format and INSERT on the table).
-- https://docs.snowflake.com/en/user-guide/data-load-snowpipe-rest-gs#step-1-create-a-pipe
-- https://docs.snowflake.com/en/user-guide/security-access-control-privileges#pipe-privileges
--
-- Variables: ${DATABASE}, ${SCHEMA}, ${LOADER_ROLE} (default: $SNOWFLAKE_ROLE, the role the
-- loader's requests act as).

GRANT OPERATE, MONITOR ON PIPE ${DATABASE}.${SCHEMA}.SENSOR_READINGS_RAW_PIPE TO ROLE ${LOADER_ROLE};

GRANT OPERATE, MONITOR ON PIPE ${DATABASE}.${SCHEMA}.ORDER_EVENTS_RAW_PIPE TO ROLE ${LOADER_ROLE};
