//! Every price the cost model uses, each a parameter with the public page it comes from
//! (us-east-1, list prices, no free tier, no discounts; read on the date in the README).

/// A price and where it is published.
#[derive(Debug, Clone, Copy)]
pub struct Price {
    /// The value, in the unit below.
    pub value: f64,
    /// What one unit is, e.g. `USD per GB-second`.
    pub unit: &'static str,
    /// The public pricing page the value is read from.
    pub source: &'static str,
}

const fn price(value: f64, unit: &'static str, source: &'static str) -> Price {
    Price {
        value,
        unit,
        source,
    }
}

const LAMBDA: &str = "https://aws.amazon.com/lambda/pricing/";
const S3: &str = "https://aws.amazon.com/s3/pricing/";
const SQS: &str = "https://aws.amazon.com/sqs/pricing/";
const KINESIS: &str = "https://aws.amazon.com/kinesis/data-streams/pricing/";
const FIREHOSE: &str = "https://aws.amazon.com/firehose/pricing/";
const SNOWFLAKE_PRICING: &str = "https://www.snowflake.com/en/pricing-options/";
const CREDIT_TABLE: &str = "https://www.snowflake.com/legal-files/CreditConsumptionTable.pdf";

/// The prices of every service a path uses.
#[derive(Debug, Clone)]
pub struct Prices {
    /// Lambda duration on arm64 (Graviton), first tier.
    pub lambda_gb_second: Price,
    /// Lambda requests (invocations).
    pub lambda_request: Price,
    /// S3 Standard PUT, COPY, POST, LIST requests.
    pub s3_put: Price,
    /// S3 Standard GET, SELECT and other requests.
    pub s3_get: Price,
    /// SQS standard queue requests (each 64 KB chunk of a payload is one request).
    pub sqs_request: Price,
    /// Kinesis Data Streams, provisioned mode: one shard for an hour (1 MB/s or 1,000 records/s in).
    pub kinesis_shard_hour: Price,
    /// Kinesis Data Streams, provisioned mode: PUT payload units of 25 KB.
    pub kinesis_put_unit: Price,
    /// Amazon Data Firehose ingestion (Direct PUT), per GB, each record rounded up to 5 KB.
    pub firehose_gb: Price,
    /// What one Snowflake credit costs (Standard edition, AWS us-east-1, on demand).
    pub snowflake_credit: Price,
    /// Credits an X-Small warehouse bills per hour running (each size up doubles it).
    pub warehouse_xs_credits_hour: Price,
    /// Snowpipe (file loading), credits per GB loaded, no per-file charge.
    pub snowpipe_credits_gb: Price,
    /// Snowpipe Streaming, credits per uncompressed GB ingested.
    pub streaming_credits_gb: Price,
}

impl Default for Prices {
    fn default() -> Self {
        Self {
            lambda_gb_second: price(0.000_013_333_4, "USD per GB-second (arm64)", LAMBDA),
            lambda_request: price(0.20e-6, "USD per request", LAMBDA),
            s3_put: price(0.005e-3, "USD per PUT/LIST request", S3),
            s3_get: price(0.0004e-3, "USD per GET request", S3),
            sqs_request: price(0.40e-6, "USD per request (standard queue)", SQS),
            kinesis_shard_hour: price(0.015, "USD per shard-hour (provisioned)", KINESIS),
            kinesis_put_unit: price(0.014e-6, "USD per 25 KB PUT payload unit", KINESIS),
            firehose_gb: price(
                0.029,
                "USD per GB ingested, records in 5 KB steps",
                FIREHOSE,
            ),
            snowflake_credit: price(
                2.00,
                "USD per credit (Standard, AWS us-east-1)",
                SNOWFLAKE_PRICING,
            ),
            warehouse_xs_credits_hour: price(1.0, "credits per hour, X-Small", CREDIT_TABLE),
            snowpipe_credits_gb: price(0.0037, "credits per GB loaded (Snowpipe)", CREDIT_TABLE),
            streaming_credits_gb: price(
                0.0037,
                "credits per uncompressed GB (Snowpipe Streaming)",
                CREDIT_TABLE,
            ),
        }
    }
}

impl Prices {
    /// Every price with its name, for the README's table and `cost --prices`.
    pub fn all(&self) -> [(&'static str, Price); 12] {
        self.clone().named().map(|(name, price)| (name, *price))
    }

    /// Sets the price called `name` (as [`Prices::all`] names it) to `value`.
    pub fn set(&mut self, name: &str, value: f64) -> Result<(), String> {
        let (_, price) = self
            .named()
            .into_iter()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| format!("--price {name}: no such price (cost --prices lists them)"))?;
        price.value = value;
        Ok(())
    }

    fn named(&mut self) -> [(&'static str, &mut Price); 12] {
        [
            ("lambda_gb_second", &mut self.lambda_gb_second),
            ("lambda_request", &mut self.lambda_request),
            ("s3_put", &mut self.s3_put),
            ("s3_get", &mut self.s3_get),
            ("sqs_request", &mut self.sqs_request),
            ("kinesis_shard_hour", &mut self.kinesis_shard_hour),
            ("kinesis_put_unit", &mut self.kinesis_put_unit),
            ("firehose_gb", &mut self.firehose_gb),
            ("snowflake_credit", &mut self.snowflake_credit),
            (
                "warehouse_xs_credits_hour",
                &mut self.warehouse_xs_credits_hour,
            ),
            ("snowpipe_credits_gb", &mut self.snowpipe_credits_gb),
            ("streaming_credits_gb", &mut self.streaming_credits_gb),
        ]
    }
}
