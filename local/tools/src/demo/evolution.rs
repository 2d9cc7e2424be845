//! The demo's schema-evolution step: sensor readings gain two fields, and the upsert (with
//! `"schema_evolution": true` on its mapping) makes them columns of `SENSOR_READINGS` before the
//! MERGE that fills them.

use std::time::{Duration, Instant};

use shared::snowflake::{SnowflakeClient, Statement};

use super::{print_rows, step, upsert_config, Vars, SENSOR_TABLES};
use crate::events::{kinesis_event, KinesisRecordIn};

/// The sensor mapping with schema evolution turned on.
fn evolving_tables() -> String {
    SENSOR_TABLES.replacen(
        r#""table":"SENSOR_READINGS","#,
        r#""table":"SENSOR_READINGS","schema_evolution":true,"#,
        1,
    )
}

/// The columns of `SENSOR_READINGS`, in order.
async fn columns(snowflake: &SnowflakeClient) -> Result<Vec<String>, String> {
    let sql =
        "SELECT COLUMN_NAME FROM INFORMATION_SCHEMA.COLUMNS WHERE TABLE_NAME = 'SENSOR_READINGS' \
               AND TABLE_SCHEMA = CURRENT_SCHEMA() ORDER BY ORDINAL_POSITION";
    let result = snowflake
        .execute(
            &Statement::new(sql),
            Instant::now() + Duration::from_secs(30),
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(result
        .rows
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .collect())
}

/// Sends one batch of two readings of sensors 9001 and 9002 (far from the generated ones).
async fn send(upsert: &upsert::Upsert, first_sequence: u64, extra: &str) -> Result<(), String> {
    let data: Vec<String> = (0..2)
        .map(|i| {
            format!(
                r#"{{"sensorId":{},"currentTemperature":21.5,"status":"OK"{extra}}}"#,
                9001 + i
            )
        })
        .collect();
    let sequences: Vec<String> = (0..2).map(|i| (first_sequence + i).to_string()).collect();
    let records: Vec<KinesisRecordIn<'_>> = data
        .iter()
        .zip(&sequences)
        .map(|(d, s)| KinesisRecordIn {
            sequence_number: s,
            partition_key: "demo-evolution",
            data: d.as_bytes(),
            arrival_secs: 1_732_200_000.0,
        })
        .collect();
    let arn = "arn:aws:kinesis:us-east-1:000000000000:stream/demo-evolution";
    let event = kinesis_event("us-east-1", arn, "shardId-000000000000", &records);
    let (response, _) = upsert
        .handle_body(&event, Instant::now() + Duration::from_secs(60))
        .await
        .map_err(|e| e.to_string())?;
    if response.batch_item_failures.is_empty() {
        Ok(())
    } else {
        Err("the schema-evolution batch was not accepted".into())
    }
}

/// Runs the step; returns the columns the upsert added.
pub(crate) async fn show(
    snowflake: &SnowflakeClient,
    snowflake_vars: &Vars,
    bucket: &str,
    s3: &aws_sdk_s3::Client,
) -> Result<Vec<String>, String> {
    step("schema evolution: sensor readings gain `firmware` and `battery`");
    let tables = evolving_tables();
    let vars = [
        ("TABLE", "sensor_readings"),
        ("UPSERT_TABLES", tables.as_str()),
        ("ERROR_BUCKET", bucket),
    ];
    let config = upsert_config(snowflake_vars, &vars)?;
    let upsert = upsert::Upsert::new(config, snowflake.clone(), s3.clone());
    let before = columns(snowflake).await?;
    send(&upsert, 90_000_001, "").await?;
    send(&upsert, 90_000_003, r#","firmware":"2.1.0","battery":87.5"#).await?;
    let after = columns(snowflake).await?;
    let added: Vec<String> = after
        .iter()
        .filter(|c| !before.contains(c))
        .cloned()
        .collect();
    println!("SENSOR_READINGS columns before: {}", before.join(", "));
    println!("added by the upsert:            {}", added.join(", "));
    print_rows(
        snowflake,
        "SELECT SENSORID, CURRENTTEMPERATURE, STATUS, FIRMWARE, BATTERY FROM SENSOR_READINGS WHERE SENSORID > 9000 ORDER BY SENSORID",
    )
    .await?;
    if added != ["BATTERY", "FIRMWARE"] {
        return Err(format!(
            "schema evolution added {added:?}, not BATTERY and FIRMWARE"
        ));
    }
    Ok(added)
}
