//! The console's routes and handlers: each reads what it shows through `view` (the CLI's
//! functions), renders it with `pages`, and answers HTML. Every answer carries a strict
//! Content-Security-Policy (scripts and styles from this server only), no caching of
//! pages, and no framing.
//!
//! `GET /` jobs · `GET /fragment/jobs` the jobs table alone (polled while a run is in
//! flight) · `GET /jobs/{id}` a job · `GET /jobs/{id}/live` its runs alone (polled) ·
//! `POST /jobs/{id}/run` run now · `GET /jobs/{id}/rewind?to=` what a rewind would do ·
//! `POST /jobs/{id}/rewind` do it · `GET /lake` tables and the query box · `GET|POST
//! /login`, `POST /logout` · `GET /assets/…` · `GET /health`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query as UrlQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;

use super::Console;
use super::auth::{self, Viewer};
use super::html::{escape, page};
use super::pages::{self, home, job, lake};
use super::view;
use crate::serve::refusal::Refusal;

/// The page's policy: nothing from elsewhere, no inline script or style.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub fn router(console: Arc<Console>) -> Router {
    let body_limit = crate::serve::http::body_limit(console.service.limits());
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/assets/{file}", get(asset))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/", get(home_page))
        .route("/fragment/jobs", get(jobs_fragment))
        .route("/jobs/{id}", get(job_page))
        .route("/jobs/{id}/live", get(job_live))
        .route("/jobs/{id}/run", post(run_now))
        .route("/jobs/{id}/rewind", get(rewind_preview).post(rewind))
        .route("/lake", get(lake_page))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::map_response(secure))
        .with_state(console)
}

async fn secure(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // `same-origin`, not `no-referrer`: under `no-referrer` a browser sends `Origin: null`
    // with a form's POST, and the actions' origin check would refuse the console's own
    // forms. Other sites still get no referrer.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// A refusal as a page (the status is the refusal's).
struct Failure(Refusal);

impl From<Refusal> for Failure {
    fn from(r: Refusal) -> Self {
        Failure(r)
    }
}

impl From<crate::error::Error> for Failure {
    fn from(e: crate::error::Error) -> Self {
        match e.class {
            // A job already running, an action that would overlap a run: say so.
            crate::error::ErrorClass::Busy => {
                Failure(Refusal::new(StatusCode::CONFLICT, "busy", e.message))
            }
            _ => Failure(Refusal::from(e)),
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let r = self.0;
        let body = format!(
            "<p class=\"problem\" role=\"alert\">{}</p><p><a href=\"/\">Back to the jobs</a></p>",
            escape(&r.message)
        );
        let title = r.status.canonical_reason().unwrap_or("Refused").to_string();
        (r.status, html(page(&title, None, &body))).into_response()
    }
}

type Answer = Result<Response, Failure>;

fn html(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response()
}

/// The viewer, or the answer to give instead (boxed: a response is large): sign in (a
/// page) or 401 (a fragment or a wrong key).
fn viewer(console: &Console, headers: &HeaderMap, page: bool) -> Result<Viewer, Box<Response>> {
    match auth::viewer(&console.keys, &console.sessions, headers) {
        Ok(Some(viewer)) => Ok(viewer),
        Ok(None) if page => Err(Box::new(see_other("/login"))),
        Ok(None) => Err(Box::new(Refusal::unauthorized().into_response())),
        Err(refusal) => Err(Box::new(Failure(refusal).into_response())),
    }
}

macro_rules! signed_in {
    ($console:expr, $headers:expr, $page:expr) => {
        match viewer(&$console, &$headers, $page) {
            Ok(v) => v,
            Err(answer) => return Ok(*answer),
        }
    };
}

fn form(body: &Bytes) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

async fn asset(Path(file): Path<String>) -> Response {
    match super::assets::find(&format!("/assets/{file}")) {
        Some(asset) => (
            [
                (header::CONTENT_TYPE, asset.content_type),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            asset.bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

async fn login_page() -> Response {
    html(pages::login(None))
}

async fn login(State(console): State<Arc<Console>>, body: Bytes) -> Response {
    let form = form(&body);
    let Some(who) = form
        .get("key")
        .and_then(|k| console.keys.find(k.trim()))
        .cloned()
    else {
        let mut answer = html(pages::login(Some(
            "That key is not one of the console's keys.",
        )));
        *answer.status_mut() = StatusCode::UNAUTHORIZED;
        return answer;
    };
    tracing::info!(operator = %who.name, role = who.role.name(), "signed in to the console");
    let id = console.sessions.open(who);
    let cookie = format!(
        "{}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        auth::COOKIE,
        auth::SESSION_LIFE.as_secs(),
        if console.secure_cookie {
            "; Secure"
        } else {
            ""
        }
    );
    let mut answer = see_other("/");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        answer.headers_mut().insert(header::SET_COOKIE, value);
    }
    answer
}

async fn logout(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    if let Some(id) = auth::cookie(&headers, auth::COOKIE) {
        console.sessions.close(id);
    }
    let mut answer = see_other("/login");
    let expired = format!(
        "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
        auth::COOKIE
    );
    if let Ok(value) = HeaderValue::from_str(&expired) {
        answer.headers_mut().insert(header::SET_COOKIE, value);
    }
    answer
}

/// The jobs table, and whether a run is in flight.
async fn jobs_table(console: &Console) -> Result<(String, String), Failure> {
    let set = console.jobs.get().await?;
    let now = Utc::now();
    let lines = view::lines(&set, console.store.as_ref(), &console.schedules, now).await;
    let in_flight = lines.iter().any(|l| l.lease.is_some()) || console.runner.any_running();
    let mut problems = String::new();
    if !set.errors.is_empty() {
        problems.push_str(
            "<div class=\"problem\" role=\"alert\"><p>Problems outside any job row:</p><ul>",
        );
        for e in &set.errors {
            problems.push_str(&format!("<li>{}</li>", escape(&e.to_string())));
        }
        problems.push_str("</ul></div>");
    }
    Ok((problems, home::jobs_table(&lines, now, in_flight)))
}

async fn home_page(State(console): State<Arc<Console>>, headers: HeaderMap) -> Answer {
    let viewer = signed_in!(console, headers, true);
    let (problems, table) = jobs_table(&console).await?;
    Ok(html(page(
        "Jobs",
        Some(&viewer.who),
        &format!("{problems}{table}"),
    )))
}

async fn jobs_fragment(State(console): State<Arc<Console>>, headers: HeaderMap) -> Answer {
    let _viewer = signed_in!(console, headers, false);
    Ok(html(jobs_table(&console).await?.1))
}

fn not_found(id: &str) -> Failure {
    Failure(Refusal::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no job `{id}` in the job rows"),
    ))
}

async fn job_page(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    UrlQuery(query): UrlQuery<HashMap<String, String>>,
) -> Answer {
    let viewer = signed_in!(console, headers, true);
    let set = console.jobs.get().await?;
    let row = set.find(&id).ok_or_else(|| not_found(&id))?;
    let store = console.store.as_ref();
    let runs = store.runs(&id, 100).await?;
    let state = match store.load(&id).await {
        Ok(state) => Some(state.value),
        Err(e) => {
            tracing::warn!(job = %id, error = %e.report(), "could not read the job's state");
            None
        }
    };
    let lease = store.lease_holder(&id).await.unwrap_or(None);
    let now = Utc::now();
    let compiled = row.job.as_ref().ok();
    let health = super::health::judge(super::health::Facts {
        valid: compiled.is_some(),
        enabled: compiled.is_none_or(|j| j.enabled),
        last: runs.first(),
        data_age: view::data_age(&runs, now),
        freshness: compiled.and_then(|j| j.freshness),
    });
    let quarantine = match compiled {
        Some(job) => console.quarantine_sample(&viewer, &job.target.table).await,
        None => None,
    };
    let message = query.contains_key("started").then(|| {
        format!(
            "A run was started ({}); it appears below when it begins.",
            console.runner.describe()
        )
    });
    let body = job::render(&job::JobPage {
        viewer: &viewer,
        row,
        runs: &runs,
        state: state.as_ref(),
        lease,
        local: console.runner.local_run(&id),
        neighbours: compiled.map(|j| view::neighbours(&set, j, console.lake.url())),
        quarantine,
        health,
        message,
        now,
    });
    Ok(html(page(&format!("Job {id}"), Some(&viewer.who), &body)))
}

async fn job_live(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    let _viewer = signed_in!(console, headers, false);
    let set = console.jobs.get().await?;
    set.find(&id).ok_or_else(|| not_found(&id))?;
    let runs = console.store.runs(&id, 100).await?;
    let lease = console.store.lease_holder(&id).await.unwrap_or(None);
    let local = console.runner.local_run(&id);
    Ok(html(job::live(
        &id,
        &runs,
        lease.as_deref(),
        local.as_ref(),
        Utc::now(),
    )))
}

/// The viewer of an action: signed in, an operator, and on this console's own page.
fn actor(
    console: &Console,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<Viewer, Box<Response>> {
    let viewer = viewer(console, headers, false)?;
    auth::operator(&viewer).map_err(|r| Box::new(Failure(r).into_response()))?;
    auth::same_site(&viewer, form.get("csrf").map(String::as_str), headers)
        .map_err(|r| Box::new(Failure(r).into_response()))?;
    Ok(viewer)
}

async fn run_now(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Answer {
    let viewer = match actor(&console, &headers, &form(&body)) {
        Ok(v) => v,
        Err(answer) => return Ok(*answer),
    };
    let set = console.jobs.get().await?;
    let row = set.find(&id).ok_or_else(|| not_found(&id))?;
    row.job.as_ref().map_err(|p| crate::job::config_error(p))?;
    let said = console.runner.run_now(&id, &viewer.who.name).await?;
    tracing::info!(operator = %viewer.who.name, job = %id, "{said}");
    Ok(see_other(&format!(
        "/jobs/{}?started=1",
        super::html::path_segment(&id)
    )))
}

async fn rewind_preview(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    UrlQuery(query): UrlQuery<HashMap<String, String>>,
) -> Answer {
    let viewer = signed_in!(console, headers, true);
    auth::operator(&viewer)?;
    let to = query.get("to").map(|t| t.trim()).unwrap_or("");
    if to.is_empty() {
        return Err(Failure(Refusal::bad(
            "give the watermark to rewind to (`to`), or `start`",
        )));
    }
    let set = console.jobs.get().await?;
    let row = set.find(&id).ok_or_else(|| not_found(&id))?;
    let job = row.job.as_ref().map_err(|p| crate::job::config_error(p))?;
    let lines = super::actions::rewind(job, &console.context(), to, true).await?;
    let body = job::rewind_confirm(&viewer, &id, to, &lines);
    Ok(html(page(
        &format!("Rewind {id}?"),
        Some(&viewer.who),
        &body,
    )))
}

async fn rewind(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Answer {
    let form = form(&body);
    let viewer = match actor(&console, &headers, &form) {
        Ok(v) => v,
        Err(answer) => return Ok(*answer),
    };
    let to = form.get("to").map(|t| t.trim()).unwrap_or("");
    if form.get("confirm").map(String::as_str) != Some("yes") || to.is_empty() {
        return Err(Failure(Refusal::bad(
            "a rewind is confirmed from its confirmation page (GET /jobs/{id}/rewind?to=…)",
        )));
    }
    let set = console.jobs.get().await?;
    let row = set.find(&id).ok_or_else(|| not_found(&id))?;
    let job = row.job.as_ref().map_err(|p| crate::job::config_error(p))?;
    let lines = super::actions::rewind(job, &console.context(), to, false).await?;
    tracing::info!(operator = %viewer.who.name, job = %id, to, "rewound from the console");
    let mut body = String::from("<ul>");
    for line in &lines {
        body.push_str(&format!("<li>{}</li>", escape(line)));
    }
    body.push_str(&format!(
        "</ul><p><a href=\"/jobs/{}\">Back to the job</a></p>",
        super::html::path_segment(&id)
    ));
    Ok(html(page(
        &format!("Rewound {id}"),
        Some(&viewer.who),
        &body,
    )))
}

async fn lake_page(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    UrlQuery(query): UrlQuery<HashMap<String, String>>,
) -> Answer {
    let viewer = signed_in!(console, headers, true);
    let key = console.query_key(&viewer);
    let mut body = String::new();
    match console.service.tables(&key, None).await {
        Ok(tables) => {
            let mut listed = Vec::with_capacity(tables.len());
            for t in tables {
                let version = console.delta_version(&t.name).await;
                listed.push((t, version));
            }
            body.push_str(&lake::tables(&listed));
        }
        Err(refusal) => body.push_str(&format!(
            "<p class=\"problem\" role=\"alert\">{}</p>",
            escape(&refusal.message)
        )),
    }
    let sql = query.get("sql").map(String::as_str).unwrap_or("").trim();
    body.push_str(&lake::query_box(sql));
    if !sql.is_empty() {
        let asked = crate::serve::engine::Query {
            sql: sql.to_string(),
            params: None,
            as_of: None,
        };
        match console
            .service
            .page(&key, &asked, None, lake::QUERY_ROWS)
            .await
        {
            Ok(rows) => body.push_str(&lake::rows(&rows)),
            Err(refusal) => body.push_str(&format!(
                "<p class=\"problem\" role=\"alert\">{} ({})</p>",
                escape(&refusal.message),
                escape(refusal.code)
            )),
        }
    }
    Ok(html(page("Lake", Some(&viewer.who), &body)))
}
