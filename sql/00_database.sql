-- Database and schema that hold every object of the pipeline.
--
-- Variables (substituted by `bootstrap`, see shared/src/bootstrap.rs):
--   ${DATABASE}  target database (default: $SNOWFLAKE_DATABASE)
--   ${SCHEMA}    target schema   (default: $SNOWFLAKE_SCHEMA)
--
-- Every statement in sql/ is idempotent, so `bootstrap` can be re-run at any time. Object names
-- are fully qualified (DATABASE.SCHEMA.NAME): the files do not depend on the session's context.

CREATE DATABASE IF NOT EXISTS ${DATABASE};

CREATE SCHEMA IF NOT EXISTS ${DATABASE}.${SCHEMA};
