//! Snowflake SQL API v2 client.
