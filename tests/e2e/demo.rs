//! The embedded default: `sluice demo` from a clean folder.

use crate::common::Workspace;

#[test]
fn demo_runs_end_to_end_from_a_clean_folder() {
    let ws = Workspace::new();
    let run = ws.sluice(&["demo", "--dir", "demo"]);
    run.assert_code(0);
    let out = run.stdout();
    assert!(out.contains("orders: 30000 rows"), "{out}");
    assert!(
        out.contains("orders: 1200 rows"),
        "second run reads only the changes:\n{out}"
    );
    assert!(out.contains("gps_pings: 3000 rows"), "{out}");
    assert!(
        out.contains("| status     | orders | revenue_eur | days |"),
        "{out}"
    );
    assert!(out.contains("| delivered  |"), "{out}");
    assert!(ws.dir.path().join("demo/lake/orders").is_dir());
}
