//! One retry loop for every Snowflake call (the SQL API client, Snowpipe Streaming, and the
//! loader's Snowpipe REST calls): run an
//! attempt, let it say what its outcome means ([`Attempt`], decided by the error's own
//! classification), back off with full jitter, never past the caller's deadline.

use std::future::Future;
use std::time::{Duration, Instant};

use super::config::RetryPolicy;

/// What one attempt came to, as the caller classified it (cf. Vector's `RetryAction`). An
/// attempt that fails for good returns `Err` instead.
pub enum Attempt<T, E> {
    /// It succeeded: the call returns this.
    Done(T),
    /// It failed transiently: try again after a backoff. This error ends the call when the
    /// backoff would reach the deadline.
    Retry(E),
    /// Try again at once, without a backoff (a token renewed after a 401).
    Resend,
}

/// Runs `attempt` until it is done or fails for good, sleeping a full-jitter backoff before each
/// [`Attempt::Retry`]. `attempt` is given the number of backoffs so far (0 first), which is also
/// the exponent of the next one; a [`Attempt::Resend`] does not count.
pub async fn retry_until<T, E, Fut>(
    deadline: Instant,
    policy: &RetryPolicy,
    mut attempt: impl FnMut(u32) -> Fut,
) -> Result<T, E>
where
    Fut: Future<Output = Result<Attempt<T, E>, E>>,
{
    let mut backoffs = 0u32;
    loop {
        match attempt(backoffs).await? {
            Attempt::Done(value) => return Ok(value),
            Attempt::Resend => {}
            Attempt::Retry(give_up) => {
                let delay = backoff_delay(policy, backoffs, rand::random::<f64>());
                backoffs += 1;
                if !sleep_before(delay, deadline).await {
                    return Err(give_up);
                }
            }
        }
    }
}

/// Full-jitter exponential backoff: a duration in `[0, min(max, base * 2^attempt)]`, `unit` being a
/// random number in `[0, 1)`.
pub(crate) fn backoff_delay(policy: &RetryPolicy, attempt: u32, unit: f64) -> Duration {
    let ceiling = policy
        .base
        .saturating_mul(1u32 << attempt.min(20))
        .min(policy.max);
    ceiling.mul_f64(unit.clamp(0.0, 1.0))
}

/// Sleeps `delay` unless that would reach `deadline`; false (without sleeping) in that case.
pub(crate) async fn sleep_before(delay: Duration, deadline: Instant) -> bool {
    if Instant::now() + delay >= deadline {
        return false;
    }
    tokio::time::sleep(delay).await;
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn backoff_is_full_jitter_and_capped() {
        let p = RetryPolicy::default();
        assert_eq!(backoff_delay(&p, 0, 0.0), Duration::ZERO);
        assert_eq!(backoff_delay(&p, 0, 1.0), Duration::from_millis(100));
        assert_eq!(backoff_delay(&p, 3, 1.0), Duration::from_millis(800));
        assert_eq!(backoff_delay(&p, 10, 1.0), Duration::from_secs(5));
        assert_eq!(
            backoff_delay(&p, 500, 0.999),
            Duration::from_secs(5).mul_f64(0.999)
        );
        assert!(backoff_delay(&p, 4, 0.5) <= Duration::from_millis(800));
    }

    #[tokio::test]
    async fn sleep_never_reaches_the_deadline() {
        let deadline = Instant::now() + Duration::from_millis(50);
        let t0 = Instant::now();
        assert!(!sleep_before(Duration::from_secs(5), deadline).await);
        assert!(
            t0.elapsed() < Duration::from_millis(20),
            "returned without sleeping"
        );
        assert!(sleep_before(Duration::from_millis(5), deadline).await);
    }

    fn quick() -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_millis(1),
            max: Duration::from_millis(2),
            ..RetryPolicy::default()
        }
    }

    #[tokio::test]
    async fn retries_until_done_and_resends_do_not_count() {
        let calls = AtomicU32::new(0);
        let seen: std::sync::Mutex<Vec<u32>> = Default::default();
        let deadline = Instant::now() + Duration::from_secs(5);
        let out: Result<&str, &str> = retry_until(deadline, &quick(), |backoffs| {
            let (calls, seen) = (&calls, &seen);
            async move {
                seen.lock().unwrap().push(backoffs);
                Ok(match calls.fetch_add(1, Ordering::Relaxed) {
                    0 | 2 => Attempt::Retry("transient"),
                    1 => Attempt::Resend,
                    _ => Attempt::Done("ok"),
                })
            }
        })
        .await;
        assert_eq!(out, Ok("ok"));
        assert_eq!(*seen.lock().unwrap(), [0, 1, 1, 2]);
    }

    #[tokio::test]
    async fn stops_on_an_error_and_at_the_deadline() {
        let deadline = Instant::now() + Duration::from_secs(5);
        let out: Result<(), &str> =
            retry_until(deadline, &quick(), |_| async { Err("permanent") }).await;
        assert_eq!(out, Err("permanent"));
        let out: Result<(), &str> = retry_until(Instant::now(), &quick(), |_| async {
            Ok(Attempt::Retry("given up"))
        })
        .await;
        assert_eq!(out, Err("given up"));
    }
}
