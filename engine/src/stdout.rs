//! What sluice prints on stdout (results, DDL, summaries, metric lines). When the reader
//! goes away (`sluice jobs schema | head -1`), the rest of the output is dropped quietly
//! and the command ends with its own exit code — 0 for a listing, a run's class for a run
//! (a summary nobody reads must not hide that the run failed) — where `println!` would
//! panic with a stack trace. Use [`out!`](crate::out) and [`outln!`](crate::outln)
//! instead of the std macros.

use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// Writes to stdout; see the module's documentation for a reader that has gone away.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::stdout::write(format_args!($($arg)*)) };
}

/// [`out!`](crate::out) with a newline.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => { $crate::stdout::write(format_args!("{}\n", format_args!($($arg)*))) };
}

/// Set once stdout's reader has gone: nothing more is written.
static READER_GONE: AtomicBool = AtomicBool::new(false);

#[doc(hidden)]
pub fn write(args: fmt::Arguments<'_>) {
    if READER_GONE.load(Ordering::Relaxed) {
        return;
    }
    let mut stdout = io::stdout().lock();
    match stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
            READER_GONE.store(true, Ordering::Relaxed);
        }
        Err(e) => {
            // A full disk or a closed descriptor: the output is lost, and that is the
            // process's fault to report, not a panic.
            eprintln!("error (internal): cannot write to stdout: {e}");
            std::process::exit(crate::error::ErrorClass::Internal.exit_code());
        }
    }
}
