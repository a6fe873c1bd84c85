//! The progress line on a terminal: rows read, rate and time while a job runs. Log lines
//! are written above it (through [`LogWriter`]) so that the two never garble each other.
//! Off the terminal (an ECS task, a pipe) there is no bar, only the JSON log.

use std::io::Write;
use std::sync::OnceLock;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

static BARS: OnceLock<MultiProgress> = OnceLock::new();

/// Turns progress bars on, for a terminal with human logs.
pub fn enable() {
    let _ = BARS.set(MultiProgress::new());
}

/// A bar counting a run's rows, or `None` when bars are off.
pub fn rows(job: &str) -> Option<ProgressBar> {
    let bars = BARS.get()?;
    let style = ProgressStyle::with_template(
        "{spinner} {prefix}: {human_pos} rows read ({per_sec}) {elapsed}",
    )
    .ok()?;
    let bar = bars.add(ProgressBar::new_spinner().with_style(style));
    bar.set_prefix(job.to_string());
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    Some(bar)
}

/// Writes log lines to stderr, above the bars.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match BARS.get() {
            Some(bars) => bars.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
