//! The demo's two servers, in this process: `sluice collect` taking a website's events,
//! and `sluice serve` answering a query over HTTP, each with the command and the curl to
//! do it again.

use std::path::Path;

use super::Rng;
use crate::error::{Error, Result};
use crate::sink::Lake;
use crate::{job, pipeline};

/// The pages of the demo's website.
const PAGES: [&str; 4] = ["/", "/pricing", "/track-a-shipment", "/contact"];

/// Starts `sluice collect` in this process on a free port, sends it a website's events as
/// its tracking library would (a few hundred page views and quote requests in batches, a
/// sign-up's alias and profile, one batch sent twice after a lost answer), stops it — it
/// loads what it took — and prints the command and the curl to do it again.
pub(super) async fn collect_events(
    dir: &Path,
    set: &job::JobSet,
    ctx: pipeline::Context,
    exe: &str,
) -> Result<()> {
    let key = uuid::Uuid::new_v4().simple().to_string();
    let hash = crate::keyfile::sha256_hex(&key);
    let keys_file = dir.join("collect-keys.yaml");
    std::fs::write(&keys_file, format!("- {{name: website, sha256: {hash}}}\n"))
        .map_err(|e| Error::user(format!("cannot write {}: {e}", keys_file.display())))?;
    let keys = crate::collect::keys::WriteKeys::load(&keys_file)?;
    let listener = crate::serve::bind(([127, 0, 0, 1], 0).into()).await?;
    let address = listener
        .local_addr()
        .map_err(|e| Error::internal(format!("the demo collector's address: {e}")))?;
    let args = crate::collect::CollectArgs {
        listen: address,
        keys: Some(keys_file.clone()),
        keys_secret: None,
        flush_size: 16 << 20,
        flush_interval: std::time::Duration::from_secs(60),
        max_buffer: 1 << 30,
        dedup_window: std::time::Duration::from_secs(86_400),
        dedup_capacity: 1_000_000,
        client_ip: crate::collect::http::ClientIp::Truncate,
        trust_forwarded_for: false,
        rate_limit: None,
        cors_origins: Vec::new(),
        load_memory_limit: 112 << 20,
        emf_namespace: None,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let places = vec![
        format!("--jobs={}", dir.join("jobs").display()),
        format!("--lake={}", dir.join("lake").display()),
        format!("--state={}", dir.join("state").display()),
    ];
    let collector = crate::collect::collect(set, ctx, places, keys, args, listener, async {
        let _ = stopped.await;
    });
    let client = async {
        let sent = send_events(&format!("http://{address}"), &key).await;
        let _ = stop.send(());
        sent
    };
    let (collected, sent) = tokio::join!(collector, client);
    collected?;
    let (accepted, duplicates) = sent?;
    crate::outln!(
        "   {accepted} events accepted, {duplicates} duplicates answered 200 and not kept (a batch sent twice)\n   {exe} --jobs {jobs} --lake {lake} collect --keys {keys} &\n   curl -s -u {key}: -H 'Content-Type: application/json' -d '{{\"userId\": \"u1\", \"event\": \"Quote Requested\", \"properties\": {{\"lanes\": 2}}}}' http://127.0.0.1:8080/track",
        jobs = dir.join("jobs").display(),
        lake = dir.join("lake").display(),
        keys = keys_file.display(),
    );
    Ok(())
}

/// Sends the demo website's events; returns the events accepted and the duplicates.
async fn send_events(base: &str, key: &str) -> Result<(u64, u64)> {
    let client = reqwest::Client::new();
    let mut rng = Rng(0xc011ec7);
    let mut batches = Vec::new();
    for b in 0..3 {
        let batch: Vec<serde_json::Value> = (0..100)
            .map(|i| {
                let visitor = format!("anon-{}", rng.below(60));
                let event = if i % 10 == 9 {
                    "Quote Requested"
                } else {
                    "Page Viewed"
                };
                serde_json::json!({
                    "type": "track",
                    "messageId": format!("demo-{b}-{i}"),
                    "anonymousId": visitor,
                    "event": event,
                    "properties": {"path": rng.pick(&PAGES)},
                })
            })
            .collect();
        batches.push(serde_json::json!({"batch": batch, "context": {"library": "sluice-demo"}}));
    }
    // A sign-up: the visitor's anonymous id becomes a user, with a profile.
    batches.push(serde_json::json!({"batch": [
        {"type": "alias", "previousId": "anon-7", "userId": "customer-42"},
        {"type": "profile", "userId": "customer-42", "traits": {"plan": "fleet", "company": "Rotterdam Freight BV"}},
        {"type": "track", "userId": "customer-42", "anonymousId": "anon-7", "event": "Signed Up"},
    ]}));
    // The first batch again, as a client does after a lost answer.
    batches.push(batches[0].clone());
    let (mut accepted, mut duplicates) = (0, 0);
    for batch in &batches {
        let reply = client
            .post(format!("{base}/batch"))
            .basic_auth(key, None::<&str>)
            .json(batch)
            .send()
            .await
            .map_err(|e| Error::external(format!("sending the demo's events: {e}")))?;
        let status = reply.status();
        let answer: serde_json::Value = reply
            .json()
            .await
            .map_err(|e| Error::external(format!("the collector's answer: {e}")))?;
        if !status.is_success() {
            return Err(Error::internal(format!(
                "the collector refused the demo's events ({status}): {answer}"
            )));
        }
        accepted += answer["accepted"].as_u64().unwrap_or(0);
        duplicates += answer["duplicates"].as_u64().unwrap_or(0);
    }
    Ok((accepted, duplicates))
}

/// What the demo asks `sluice serve`, with its parameter bound.
const HTTP_QUERY: &str = "SELECT status, count(*) AS orders FROM orders WHERE status <> $1 GROUP BY status ORDER BY status";

/// Starts `sluice serve` on a free port with a key made for the demo, asks it one query as
/// an HTTP client would, prints the answer and the commands to do it again, and stops it.
pub(super) async fn over_http(dir: &Path, lake: &Lake, exe: &str) -> Result<()> {
    let key = uuid::Uuid::new_v4().simple().to_string();
    let hash = crate::keyfile::sha256_hex(&key);
    let keys_file = dir.join("serve-keys.yaml");
    std::fs::write(
        &keys_file,
        format!("- {{name: demo, sha256: {hash}, tables: [\"*\"]}}\n"),
    )
    .map_err(|e| Error::user(format!("cannot write {}: {e}", keys_file.display())))?;
    let keys = crate::serve::keys::Keys::load(&keys_file)?;
    let listener = crate::serve::bind(([127, 0, 0, 1], 0).into()).await?;
    let address = listener
        .local_addr()
        .map_err(|e| Error::internal(format!("the demo server's address: {e}")))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let limits = crate::serve::Limits::default();
    let engine = crate::serve::engine::local::Local::new(
        lake.clone(),
        128 << 20,
        limits.page_bytes,
        std::time::Duration::from_secs(5),
    )?;
    let service = crate::serve::Service::new(Box::new(engine), keys, limits)?;
    let server = tokio::spawn(crate::serve::serve(
        service,
        crate::serve::http::Cors::default(),
        listener,
        None,
        async {
            let _ = stopped.await;
        },
    ));
    let body = serde_json::json!({"sql": HTTP_QUERY, "params": ["cancelled"]});
    let asked = reqwest::Client::new()
        .post(format!("http://{address}/v1/query"))
        .bearer_auth(&key)
        .json(&body)
        .send()
        .await;
    let answer = match asked {
        Ok(reply) => reply.text().await.unwrap_or_default(),
        Err(e) => format!("(no answer: {e})"),
    };
    let _ = stop.send(());
    server
        .await
        .map_err(|e| Error::internal(format!("the demo server: {e}")))??;
    crate::outln!(
        "   {exe} --lake {} serve --keys {} &\n   curl -s -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' -d '{body}' http://127.0.0.1:8080/v1/query\n   {answer}",
        dir.join("lake").display(),
        keys_file.display()
    );
    Ok(())
}

/// Starts `sluice console` on a free port for a moment with an operator key made for the
/// demo, asks its home page as a browser's script would, prints what it saw and the
/// command (and key) that opens it again, and stops it.
pub(super) async fn on_the_console(
    dir: &Path,
    lake: &Lake,
    store: std::sync::Arc<dyn crate::store::StateStore>,
    exe: &str,
) -> Result<()> {
    let key = uuid::Uuid::new_v4().simple().to_string();
    let keys_file = dir.join("console-keys.yaml");
    std::fs::write(
        &keys_file,
        format!(
            "- {{name: demo, sha256: {}, role: operator}}\n",
            crate::keyfile::sha256_hex(&key)
        ),
    )
    .map_err(|e| Error::user(format!("cannot write {}: {e}", keys_file.display())))?;
    let keys = crate::console::keys::ConsoleKeys::load(&keys_file)?;
    let places = [
        dir.join("jobs").display().to_string(),
        dir.join("lake").display().to_string(),
        dir.join("state").display().to_string(),
    ];
    let console = crate::console::Console::local(keys, places, lake.clone(), store, exe.into())?;
    let listener = crate::serve::bind(([127, 0, 0, 1], 0).into()).await?;
    let address = listener
        .local_addr()
        .map_err(|e| Error::internal(format!("the demo console's address: {e}")))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::console::serve(
        std::sync::Arc::new(console),
        listener,
        async {
            let _ = stopped.await;
        },
    ));
    let asked = reqwest::Client::new()
        .get(format!("http://{address}/"))
        .bearer_auth(&key)
        .send()
        .await;
    let seen = match asked {
        Ok(reply) => {
            let status = reply.status();
            let page = reply.text().await.unwrap_or_default();
            let healthy = page.matches("badge green").count();
            let jobs = page.matches("<tr id=\"job-").count();
            format!("{status}: {jobs} jobs, {healthy} healthy")
        }
        Err(e) => format!("(no answer: {e})"),
    };
    let _ = stop.send(());
    server
        .await
        .map_err(|e| Error::internal(format!("the demo console: {e}")))??;
    crate::outln!(
        "   http://{address}/ answered {seen}\n   Open it again (then sign in with the key {key}):\n   {exe} --jobs {} --lake {} --state {} console --keys {}\n   http://127.0.0.1:8090/",
        dir.join("jobs").display(),
        dir.join("lake").display(),
        dir.join("state").display(),
        keys_file.display()
    );
    Ok(())
}
