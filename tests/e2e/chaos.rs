//! One chaos run through the upsert, in both write modes at once: 20,000 records on a two-shard
//! stream, read by the local event source mapping (`tools::esm`) as Lambda would, while
//! invocations lose their answers, crash before they run, a container restarts with an empty
//! channel map, batches exhaust their retries (and are replayed), the Snowpipe Streaming referee
//! commits late and at random, invalidates channels (discarding what they held), answers
//! 408/409/429/503 and drops connections before and after applying an append, and records for a
//! table not yet mapped are quarantined (and redriven after the fix is deployed).
//!
//! At the end, checked against a model computed from the generated records:
//! - the merge target equals the model, and the latest-state Dynamic Table equals the merge
//!   target row for row;
//! - every record is in exactly one place: each mapped record once in its change table (by
//!   shard, sequence number and operation), nothing left in either quarantine bucket, nothing left
//!   on either on-failure queue;
//! - no invocation reported a reconciliation mismatch, and the quarantine counters equal the
//!   records quarantined.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tools::esm::{self, Counters, KinesisInvoke, KinesisSettings, KinesisSource};
use upsert::Upsert;

use crate::streaming::target_and_latest;
use crate::support::{self, rows};
use crate::upsert::{upsert_config, upsert_for};

const RECORDS: usize = 20_000;
const ORDER_KEYS: u64 = 1_500;
/// Records from here on are never deletes: the batches holding them are the ones made to
/// exhaust their retries, and a merge target keeps no tombstones, so replaying an older change
/// after a delete of its key would re-create the key (the README says so).
const TAIL: usize = RECORDS - 400;

const ORDERS: &str = r#""orders":{"table":"ORDERS","keys":["order_id"],"columns":[
    {"name":"order_id","path":"/order_id","type":"NUMBER"},
    {"name":"status","path":"/status","type":"TEXT"},
    {"name":"amount","path":"/amount","type":"NUMBER(12,2)"},
    {"name":"customer","path":"/customer","type":"TEXT"},
    {"name":"updated_at","path":"/updated_at","type":"TIMESTAMP_NTZ"}],
    "version":"updated_at","delete":{"path":"/op","value":"d"}}"#;
const RETURNS: &str = r#""returns":{"table":"RETURNS","keys":["return_id"],"columns":[
    {"name":"return_id","path":"/return_id","type":"NUMBER"},
    {"name":"order_id","path":"/order_id","type":"NUMBER"},
    {"name":"reason","path":"/reason","type":"TEXT"},
    {"name":"updated_at","path":"/updated_at","type":"TIMESTAMP_NTZ"}],
    "version":"updated_at"}"#;

/// A small deterministic generator (no dependency for a test's dice).
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One generated record: its partition key (a key's records stay in one shard) and bytes.
struct Generated {
    partition_key: String,
    data: Vec<u8>,
    is_return: bool,
}

/// The final state a correct run leaves, per order key and per return key.
#[derive(Default)]
struct Model {
    orders: BTreeMap<u64, (String, String, String)>,
    returns: BTreeMap<u64, (u64, String, String)>,
}

fn timestamp(i: usize) -> String {
    let (m, s) = (i / 60, i % 60);
    format!(
        "2024-11-{:02}T{:02}:{:02}:{s:02}",
        1 + m / 1440,
        (m / 60) % 24,
        m % 60
    )
}

/// 20,000 records: order creates, updates and deletes (a tenth of them without a version) on
/// 1,500 keys, every version newer than the key's last, and 3 % returns, a table the first
/// configuration does not route.
fn generate() -> (Vec<Generated>, Model) {
    let mut dice = Dice(20);
    let mut model = Model::default();
    let mut out = Vec::with_capacity(RECORDS);
    for i in 0..RECORDS {
        let at = timestamp(i);
        if dice.below(100) < 3 {
            let id = 1 + dice.below(200);
            let order = 1 + dice.below(ORDER_KEYS);
            let reason = format!("R{i}");
            let data = format!(
                r#"{{"kind":"return","return_id":{id},"order_id":{order},"reason":"{reason}","updated_at":"{at}"}}"#
            );
            model
                .returns
                .insert(id, (order, reason, at.replace('T', " ")));
            out.push(Generated {
                partition_key: format!("r{id}"),
                data: data.into_bytes(),
                is_return: true,
            });
            continue;
        }
        let key = 1 + dice.below(ORDER_KEYS);
        let exists = model.orders.contains_key(&key);
        let data = if exists && i < TAIL && dice.below(10) == 0 {
            model.orders.remove(&key);
            match dice.below(10) {
                0 => format!(r#"{{"kind":"order","op":"d","order_id":{key}}}"#),
                _ => format!(r#"{{"kind":"order","op":"d","order_id":{key},"updated_at":"{at}"}}"#),
            }
        } else {
            let status = format!("S{i}");
            let amount = format!("{}.{:02}", i % 1000, i % 100);
            let row = (status.clone(), amount.clone(), at.replace('T', " "));
            model.orders.insert(key, row);
            let op = if exists { "u" } else { "c" };
            format!(
                r#"{{"kind":"order","op":"{op}","order_id":{key},"status":"{status}","amount":{amount},"customer":"c{key}","updated_at":"{at}"}}"#
            )
        };
        out.push(Generated {
            partition_key: format!("o{key}"),
            data: data.into_bytes(),
            is_return: false,
        });
    }
    (out, model)
}

/// The function's environment before (`fixed` false: returns are not routed) and after the fix.
fn vars(mode: &str, fixed: bool) -> Vec<(String, String)> {
    let (route, tables) = if fixed {
        (
            r#"{"order":"orders","return":"returns"}"#.to_string(),
            format!("{{{ORDERS},{RETURNS}}}"),
        )
    } else {
        (r#"{"order":"orders"}"#.to_string(), format!("{{{ORDERS}}}"))
    };
    vec![
        ("ROUTE_FIELD".into(), "/kind".into()),
        ("ROUTE_MAP".into(), route),
        ("UPSERT_TABLES".into(), tables),
        ("WRITE_MODE".into(), mode.into()),
    ]
}

async fn function(db: &str, bucket: &str, mode: &str, fixed: bool) -> Upsert {
    let vars = vars(mode, fixed);
    let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    upsert_for(db, bucket, &pairs, None).await
}

/// One mode's function as the event source mapping invokes it, and what its invocations did.
struct Chaos {
    upsert: Mutex<Arc<Upsert>>,
    /// A fresh container, swapped in at invocation [`RESTART_AT`].
    spare: Mutex<Option<Upsert>>,
    /// Sequence numbers of the tail records: a batch holding one fails every attempt.
    doomed: HashSet<String>,
    invocations: AtomicU64,
    lost_answers: AtomicU64,
    crashes: AtomicU64,
    mismatches: AtomicU64,
    quarantined: AtomicU64,
}

const RESTART_AT: u64 = 15;

impl Chaos {
    /// One invocation: the batch's fate is decided by its number, as dice would.
    async fn invoke(
        &self,
        body: String,
    ) -> Result<aws_lambda_events::event::streams::KinesisEventResponse, String> {
        let n = self.invocations.fetch_add(1, Ordering::SeqCst);
        if n == RESTART_AT {
            if let Some(fresh) = self.spare.lock().unwrap().take() {
                *self.upsert.lock().unwrap() = Arc::new(fresh);
            }
        }
        if self.is_doomed(&body) {
            return Err("a timeout: this batch fails until its retries run out".into());
        }
        let fate = Dice(n.wrapping_mul(7919)).below(100);
        if fate < 5 {
            self.crashes.fetch_add(1, Ordering::SeqCst);
            return Err("the container crashed before the handler ran".into());
        }
        let upsert = self.upsert.lock().unwrap().clone();
        let deadline = Instant::now() + Duration::from_secs(20);
        let (response, outcome) = upsert
            .handle_body(&body, deadline)
            .await
            .map_err(|e| e.to_string())?;
        self.mismatches
            .fetch_add(outcome.mismatches as u64, Ordering::SeqCst);
        self.quarantined
            .fetch_add(outcome.quarantined as u64, Ordering::SeqCst);
        if fate < 10 {
            self.lost_answers.fetch_add(1, Ordering::SeqCst);
            return Err("the handler ran, its answer was lost".into());
        }
        Ok(response)
    }

    fn is_doomed(&self, body: &str) -> bool {
        let event: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        event["Records"].as_array().into_iter().flatten().any(|r| {
            r["kinesis"]["sequenceNumber"]
                .as_str()
                .is_some_and(|s| self.doomed.contains(s))
        })
    }
}

fn invoker(chaos: Arc<Chaos>) -> KinesisInvoke {
    Arc::new(move |body: String| {
        let chaos = chaos.clone();
        Box::pin(async move { chaos.invoke(body).await })
    })
}

/// Puts the records on the stream; returns the sequence number of each, in order.
async fn put_all(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    records: &[Generated],
) -> Vec<String> {
    let mut sequence_numbers = Vec::with_capacity(records.len());
    for chunk in records.chunks(500) {
        let entries = chunk.iter().map(|g| {
            aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                .partition_key(&g.partition_key)
                .data(aws_sdk_kinesis::primitives::Blob::new(g.data.clone()))
                .build()
                .unwrap()
        });
        let out = kinesis
            .put_records()
            .stream_name(stream)
            .set_records(Some(entries.collect()))
            .send()
            .await
            .unwrap();
        assert_eq!(out.failed_record_count(), Some(0));
        sequence_numbers.extend(
            out.records()
                .iter()
                .map(|r| r.sequence_number().unwrap().to_string()),
        );
    }
    sequence_numbers
}

/// Runs one mode's mapping over the whole stream under chaos; returns its counters.
async fn run_mode(
    source: KinesisSource,
    chaos: Arc<Chaos>,
    function: &str,
    queue: &str,
) -> Arc<Counters> {
    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mapping = tokio::spawn(esm::run_kinesis(
        source,
        KinesisSettings {
            function: function.into(),
            batch_size: 500,
            batching_window: Duration::from_millis(200),
            max_retries: 2,
            on_failure_queue: Some(queue.into()),
        },
        invoker(chaos),
        counters.clone(),
        stop.clone(),
    ));
    let give_up = Instant::now() + Duration::from_secs(600);
    while counters.done.load(Ordering::SeqCst) < RECORDS as u64 {
        assert!(Instant::now() < give_up, "{function}: {counters:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::SeqCst);
    mapping.await.unwrap().unwrap();
    counters
}

/// Arms one streaming fault on one of the stream's order channels every few hundred
/// milliseconds until `stop`: late commits come from the referee itself (a random delay per
/// append); these add invalidations that discard what a channel held, 408/409/429/503 answers,
/// and connections dropped before and after an append applied. Returns how many were armed.
async fn inject_streaming_faults(stream: String, stop: Arc<AtomicBool>) -> u64 {
    let channels =
        ["shardId-000000000000", "shardId-000000000001"].map(|s| format!("ORDERS_{stream}_{s}"));
    let mut dice = Dice(42);
    let mut armed = 0;
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(200 + dice.below(400))).await;
        let channel = &channels[dice.below(2) as usize];
        let fault = match dice.below(7) {
            0 => serde_json::json!({"invalidate_channel": channel}),
            1 => {
                serde_json::json!({"streaming_drop_connection": true, "count": 1, "after_apply": true, "channel": channel})
            }
            2 => {
                serde_json::json!({"streaming_drop_connection": true, "count": 1, "after_apply": false, "channel": channel})
            }
            n => {
                let status = [408, 409, 429, 503][n as usize - 3];
                serde_json::json!({"streaming_status": status, "count": 1, "channel": channel})
            }
        };
        support::snowflake_admin("/admin/faults", fault).await;
        armed += 1;
    }
    armed
}

/// The function a recovery tool runs after the fix: the fixed configuration and, in streaming
/// mode, channels of its own (a suffix no live channel has).
async fn recovery_function(db: &str, bucket: &str, mode: &str) -> tools::redrive::Target {
    let mut upsert = function(db, bucket, mode, true).await;
    upsert.for_recovery("_CHAOS_RECOVERY");
    tools::redrive::Target::Upsert(Box::new(upsert))
}

async fn chaos_for(db: &str, bucket: &str, mode: &str, doomed: HashSet<String>) -> Arc<Chaos> {
    Arc::new(Chaos {
        upsert: Mutex::new(Arc::new(function(db, bucket, mode, false).await)),
        spare: Mutex::new(Some(function(db, bucket, mode, false).await)),
        doomed,
        invocations: AtomicU64::new(0),
        lost_answers: AtomicU64::new(0),
        crashes: AtomicU64::new(0),
        mismatches: AtomicU64::new(0),
        quarantined: AtomicU64::new(0),
    })
}

/// Replays the mode's on-failure messages, then redrives its quarantine, with the fix deployed.
async fn recover(
    aws: &aws_config::SdkConfig,
    db: &str,
    bucket: &str,
    queue: &str,
    mode: &str,
    function_name: &str,
) {
    let target = recovery_function(db, bucket, mode).await;
    let (sqs, kinesis) = (
        aws_sdk_sqs::Client::new(aws),
        aws_sdk_kinesis::Client::new(aws),
    );
    let source = tools::replay::ReplaySource {
        sqs: &sqs,
        kinesis: &kinesis,
        queue_url: queue,
        region: "us-east-1",
    };
    let options = tools::replay::ReplayOptions {
        function_name,
        max: 100,
        dry_run: false,
    };
    let replayed = tools::replay::run(&source, &target, &options)
        .await
        .unwrap();
    assert!(
        replayed.batches_recovered > 0 && replayed.failed == 0 && replayed.expired == 0,
        "{mode}: {replayed:?}"
    );
    let s3 = support::s3().await;
    let redriven = tools::redrive::run(&s3, bucket, "errors/", &target, "us-east-1", false)
        .await
        .unwrap();
    assert!(redriven.objects > 0, "{mode}: {redriven:?}");
    assert_eq!(
        (
            redriven.still_quarantined,
            redriven.failed,
            redriven.deleted
        ),
        (0, 0, redriven.objects),
        "{mode}: {redriven:?}"
    );
    assert!(
        support::list_keys(&s3, bucket).await.is_empty(),
        "{mode}: quarantine emptied"
    );
    let again = tools::replay::run(&source, &target, &options)
        .await
        .unwrap();
    assert_eq!(again.messages, 0, "{mode}: the on-failure queue is empty");
}

fn expected_orders(model: &Model) -> Vec<Vec<Option<String>>> {
    model
        .orders
        .iter()
        .map(|(k, (status, amount, at))| {
            vec![
                Some(k.to_string()),
                Some(status.clone()),
                Some(amount.clone()),
                Some(at.clone()),
            ]
        })
        .collect()
}

#[tokio::test]
async fn twenty_thousand_records_under_chaos_land_exactly_once_in_both_modes() {
    let _g = support::snowflake_shared().await;
    let db = support::bootstrapped_database("CHAOS", "s3://unused/raw/").await;
    let client = support::snowflake_client(&db, "S").await;
    support::sql(
        &client,
        "CREATE TABLE RETURNS (RETURN_ID NUMBER(38,0), ORDER_ID NUMBER(38,0), REASON VARCHAR, UPDATED_AT TIMESTAMP_NTZ, \
         KINESIS_SHARD_ID VARCHAR, KINESIS_SEQUENCE_NUMBER VARCHAR, KINESIS_ARRIVAL_TIME TIMESTAMP_NTZ, LOADED_AT TIMESTAMP_NTZ)",
    )
    .await;
    let fixed_vars = vars("streaming", true);
    let pairs: Vec<(&str, &str)> = fixed_vars
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let fixed = upsert_config(&db, "unused", &pairs);
    support::streaming_objects(&client, &fixed).await;

    let aws = support::sdk_config().await;
    let kinesis = aws_sdk_kinesis::Client::new(&aws);
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let stream = support::unique("chaos");
    esm::ensure_stream(&kinesis, &stream, 2).await.unwrap();
    let (records, model) = generate();
    let sequence_numbers = put_all(&kinesis, &stream, &records).await;
    let doomed: HashSet<String> = sequence_numbers[TAIL..].iter().cloned().collect();
    let source = KinesisSource {
        kinesis: kinesis.clone(),
        sqs: sqs.clone(),
        region: "us-east-1".into(),
        stream: stream.clone(),
    };

    let mut runs = Vec::new();
    for mode in ["merge", "streaming"] {
        let bucket = support::unique(&format!("chaos-{mode}"));
        support::create_bucket(&support::s3().await, &bucket).await;
        let queue = esm::ensure_queue_with_dlq(&sqs, &format!("{stream}-{mode}"), 30, 5)
            .await
            .unwrap();
        let chaos = chaos_for(&db, &bucket, mode, doomed.clone()).await;
        let function_name = format!("upsert-{mode}");
        runs.push((mode, bucket, queue, chaos, function_name));
    }
    let stop_faults = Arc::new(AtomicBool::new(false));
    let faults = tokio::spawn(inject_streaming_faults(stream.clone(), stop_faults.clone()));
    let counters =
        futures_util::future::join_all(runs.iter().map(|(_, _, queue, chaos, name)| {
            run_mode(source.clone(), chaos.clone(), name, queue)
        }))
        .await;
    stop_faults.store(true, Ordering::SeqCst);
    let armed = faults.await.unwrap();
    // Faults armed but not met stay armed: clear them, so no other test meets them or sees them.
    for shard in ["shardId-000000000000", "shardId-000000000001"] {
        let channel = format!("ORDERS_{stream}_{shard}");
        let clear = serde_json::json!({"streaming_status": 503, "streaming_drop_connection": true, "count": 0, "channel": channel});
        support::snowflake_admin("/admin/faults", clear).await;
    }

    for ((mode, bucket, queue, chaos, name), counters) in runs.iter().zip(&counters) {
        eprintln!(
            "chaos {mode}: {counters:?}; lost answers {}, crashes {}, quarantined {}, streaming faults armed {armed}",
            chaos.lost_answers.load(Ordering::SeqCst),
            chaos.crashes.load(Ordering::SeqCst),
            chaos.quarantined.load(Ordering::SeqCst),
        );
        assert!(
            counters.discarded_batches.load(Ordering::SeqCst) > 0,
            "{mode}: a batch exhausted its retries"
        );
        assert!(
            chaos.lost_answers.load(Ordering::SeqCst) > 0
                && chaos.crashes.load(Ordering::SeqCst) > 0
        );
        assert_eq!(
            chaos.mismatches.load(Ordering::SeqCst),
            0,
            "{mode}: reconciliation"
        );
        // Not all of them: those in a doomed batch, or above a resend's starting point, are
        // quarantined by the replay or the resend; the end state below counts them all.
        assert!(
            chaos.quarantined.load(Ordering::SeqCst) > 0,
            "{mode}: unrouted returns quarantined"
        );
        recover(&aws, &db, bucket, queue, mode, name).await;
    }

    // Every mapped record once in its change table: the streaming mode's exactly once.
    let orders_records = records.iter().filter(|r| !r.is_return).count();
    let returns_records = records.len() - orders_records;
    for (table, expected) in [
        ("ORDERS_CHANGES", orders_records),
        ("RETURNS_CHANGES", returns_records),
    ] {
        let counts = rows(
            &client,
            &format!("SELECT COUNT(*), COUNT(DISTINCT KINESIS_SHARD_ID || ':' || KINESIS_SEQUENCE_NUMBER) FROM {table}"),
        )
        .await;
        let n = expected.to_string();
        assert_eq!(
            counts,
            vec![vec![Some(n.clone()), Some(n)]],
            "{table}: each record exactly once"
        );
    }

    // The merge target is the model; the latest state is the merge target, row for row.
    let merged = rows(
        &client,
        "SELECT ORDER_ID, STATUS, TO_VARCHAR(AMOUNT), TO_VARCHAR(UPDATED_AT, 'YYYY-MM-DD HH24:MI:SS') FROM ORDERS ORDER BY ORDER_ID",
    )
    .await;
    assert_eq!(merged.len(), model.orders.len());
    assert_eq!(merged, expected_orders(&model));
    for table in ["ORDERS", "RETURNS"] {
        let columns = if table == "ORDERS" {
            "ORDER_ID, STATUS, AMOUNT, CUSTOMER, UPDATED_AT, KINESIS_SHARD_ID, KINESIS_SEQUENCE_NUMBER"
        } else {
            "RETURN_ID, ORDER_ID, REASON, UPDATED_AT, KINESIS_SHARD_ID, KINESIS_SEQUENCE_NUMBER"
        };
        let key = columns.split(',').next().unwrap();
        let (target, latest) = target_and_latest(&client, table, columns, key).await;
        assert_eq!(latest, target, "{table}_LATEST equals {table}");
    }
    let returns = rows(&client, "SELECT COUNT(*) FROM RETURNS").await;
    assert_eq!(
        returns[0][0].as_deref(),
        Some(model.returns.len().to_string().as_str())
    );
}
