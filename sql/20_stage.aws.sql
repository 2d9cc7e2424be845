-- Storage integration and external stage over the raw zone, real Snowflake
-- (`bootstrap --profile aws`).
--
-- Variables:
--   ${DATABASE}, ${SCHEMA}
--   ${STAGE}                stage name (default RAW_STAGE)
--   ${STAGE_URL}            the raw zone, e.g. s3://my-bucket/raw/ (default: $STAGE_URL)
--   ${STORAGE_INTEGRATION}  integration name (default: $STORAGE_INTEGRATION; no built-in default)
--   ${SNOWFLAKE_ROLE_ARN}   IAM role Snowflake assumes to read the bucket
--                           (default: $SNOWFLAKE_ROLE_ARN; no built-in default)
--
-- CREATE STORAGE INTEGRATION needs ACCOUNTADMIN (or the CREATE INTEGRATION privilege); the role
-- that runs bootstrap then needs USAGE on the integration to create the stage.
--
-- After the first run, finish the trust relationship once:
--   DESC INTEGRATION <STORAGE_INTEGRATION>;
-- and put STORAGE_AWS_IAM_USER_ARN (Principal.AWS) and STORAGE_AWS_EXTERNAL_ID
-- (Condition.StringEquals."sts:ExternalId") into the trust policy of SNOWFLAKE_ROLE_ARN. The role
-- needs s3:GetObject, s3:GetObjectVersion and s3:ListBucket on the raw zone only.
-- (IF NOT EXISTS keeps the external id stable across re-runs; CREATE OR REPLACE would rotate it
-- and break the trust policy.)

CREATE STORAGE INTEGRATION IF NOT EXISTS ${STORAGE_INTEGRATION}
  TYPE = EXTERNAL_STAGE
  STORAGE_PROVIDER = 'S3'
  ENABLED = TRUE
  STORAGE_AWS_ROLE_ARN = '${SNOWFLAKE_ROLE_ARN}'
  STORAGE_ALLOWED_LOCATIONS = ('${STAGE_URL}');

CREATE STAGE IF NOT EXISTS ${DATABASE}.${SCHEMA}.${STAGE}
  URL = '${STAGE_URL}'
  STORAGE_INTEGRATION = ${STORAGE_INTEGRATION};
