//! Progress of a long recovery run. In a terminal, a status line (done/total, rate, time left)
//! stays at the bottom and is redrawn as each item finishes; elsewhere (a log file, CI) only the
//! plain per-item lines are printed, as they always were.

use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

/// Counts finished items and shows how far a run is.
pub struct Progress {
    total: Option<usize>,
    done: usize,
    started: Instant,
    terminal: bool,
}

impl Progress {
    /// A run of `total` items (unknown for a queue); the status line only when standard error
    /// is a terminal.
    pub fn new(total: Option<usize>) -> Self {
        Self {
            total,
            done: 0,
            started: Instant::now(),
            terminal: std::io::stderr().is_terminal(),
        }
    }

    /// Prints a line about the run above the status line.
    pub fn println(&self, line: &str) {
        if self.terminal {
            eprint!("\r\x1b[2K");
        }
        println!("{line}");
        self.draw();
    }

    /// Counts one finished item and redraws the status line.
    pub fn item_done(&mut self) {
        self.done += 1;
        self.draw();
    }

    /// Ends the status line, so what follows starts on a line of its own.
    pub fn finish(&self) {
        if self.terminal {
            eprintln!();
        }
    }

    fn draw(&self) {
        if self.terminal {
            eprint!(
                "\r\x1b[2K{}",
                status(self.done, self.total, self.started.elapsed())
            );
            let _ = std::io::stderr().flush();
        }
    }
}

/// `12/40 done, 3.1/s, about 9 s left` (without a total: `12 done, 3.1/s`).
fn status(done: usize, total: Option<usize>, elapsed: Duration) -> String {
    let rate = done as f64 / elapsed.as_secs_f64().max(0.001);
    match total {
        Some(total) if done > 0 && done < total => {
            let left = (total - done) as f64 / rate;
            format!("{done}/{total} done, {rate:.1}/s, about {left:.0} s left")
        }
        Some(total) => format!("{done}/{total} done, {rate:.1}/s"),
        None => format!("{done} done, {rate:.1}/s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_says_done_rate_and_time_left() {
        assert_eq!(
            status(10, Some(40), Duration::from_secs(5)),
            "10/40 done, 2.0/s, about 15 s left"
        );
        assert_eq!(
            status(40, Some(40), Duration::from_secs(8)),
            "40/40 done, 5.0/s"
        );
        assert_eq!(status(0, Some(3), Duration::ZERO), "0/3 done, 0.0/s");
        assert_eq!(status(7, None, Duration::from_secs(2)), "7 done, 3.5/s");
    }
}
