//! Named points in a run where a crash test stops it: with `SLUICE_FAILPOINT=<name>`
//! the run logs that it reached the point and waits there to be killed; with
//! `SLUICE_FAILPOINT=<name>:<seconds>` it only pauses (a run slower than a timeout).
//! Unset, a point costs one environment lookup.
//!
//! Points: `received` (a feed received its first messages or page, nothing written), `written`
//! (files and manifests written, not committed), `committed` (committed, the feed not
//! acknowledged; change capture: the position saved, the slot not advanced); into a Delta table (`crate::table`'s delta module) also `prepared` (the
//! state the commit makes recorded, the Delta commit not made) and `delta-committed` (in
//! the log, the state not saved); `optimize-written` (an optimize's files written, not
//! committed).

use std::time::Duration;

pub async fn reached(name: &str) {
    let Ok(setting) = std::env::var("SLUICE_FAILPOINT") else {
        return;
    };
    let (point, pause) = match setting.split_once(':') {
        Some((point, seconds)) => (point, seconds.parse::<u64>().ok()),
        None => (setting.as_str(), None),
    };
    if point != name {
        return;
    }
    eprintln!("failpoint {name} reached");
    match pause {
        Some(seconds) => tokio::time::sleep(Duration::from_secs(seconds)).await,
        None => std::future::pending::<()>().await,
    }
}
