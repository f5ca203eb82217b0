//! The Pipedrive API client: every call waits for its token's rate-limit slot and is charged to
//! the company's daily budget; 429 waits for the reset without spending an attempt; 5xx and
//! network failures back off exponentially with jitter; a 401 refreshes the credentials once.
//! Lists are streams of pages (constant memory), following v2's `next_cursor`.

use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;

use super::limits::{Budget, BudgetExhausted, Priority, TokenLimiter};
use super::{PipedriveError, short};
use crate::secrets::Secret;

/// How requests authenticate, and how they get fresh credentials after a 401.
pub trait Credentials: Send + Sync {
    /// The header to send now (`x-api-token` or a bearer token).
    fn current(&self) -> futures_util::future::BoxFuture<'_, Result<AuthHeader, PipedriveError>>;
    /// Called once after a 401 with what was refused; returns new credentials or `Unauthorized`.
    fn refresh<'a>(
        &'a self,
        refused: &'a AuthHeader,
    ) -> futures_util::future::BoxFuture<'a, Result<AuthHeader, PipedriveError>>;
}

#[derive(Clone, PartialEq, Eq)]
pub enum AuthHeader {
    ApiToken(Secret),
    Bearer(Secret),
}

/// A personal API token: nothing to refresh.
pub struct StaticToken(pub Secret);

impl Credentials for StaticToken {
    fn current(&self) -> futures_util::future::BoxFuture<'_, Result<AuthHeader, PipedriveError>> {
        Box::pin(async move { Ok(AuthHeader::ApiToken(self.0.clone())) })
    }
    fn refresh<'a>(
        &'a self,
        _: &'a AuthHeader,
    ) -> futures_util::future::BoxFuture<'a, Result<AuthHeader, PipedriveError>> {
        Box::pin(async { Err(PipedriveError::Unauthorized) })
    }
}

#[derive(Debug, Clone)]
pub struct RetrySettings {
    /// Attempts for 5xx and network failures.
    pub attempts: u32,
    pub base_delay: Duration,
    /// 429s in a row before giving up (each waits for the reset).
    pub max_rate_limited: u32,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self { attempts: 6, base_delay: Duration::from_millis(250), max_rate_limited: 30 }
    }
}

#[derive(Clone)]
pub struct PipedriveClient {
    http: reqwest::Client,
    base: String,
    credentials: Arc<dyn Credentials>,
    limiter: Arc<TokenLimiter>,
    budget: Arc<Budget>,
    priority: Priority,
    retry: RetrySettings,
    /// Tokens this client (and its clones) charged to the budget: what a sync run spent.
    spent: Arc<std::sync::atomic::AtomicU64>,
}

/// What a list request asks for (v2 list endpoints).
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub limit: Option<u32>,
    pub updated_since: Option<OffsetDateTime>,
    pub sort_by_update_time: bool,
    /// Extra parameters (filters, include_fields).
    pub extra: Vec<(String, String)>,
}

/// One page of a list.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct ListBody<T> {
    data: Vec<T>,
    #[serde(default)]
    additional_data: Option<Additional>,
}

#[derive(Deserialize)]
struct Additional {
    next_cursor: Option<String>,
}

impl PipedriveClient {
    /// `base` is the company's API base (`api_domain`); `limiter` and `budget` are shared by every
    /// client of the same token and company in this process.
    pub fn new(
        base: &str,
        credentials: Arc<dyn Credentials>,
        limiter: Arc<TokenLimiter>,
        budget: Arc<Budget>,
    ) -> Self {
        Self {
            http: super::http_client(),
            base: base.trim_end_matches('/').to_owned(),
            credentials,
            limiter,
            budget,
            priority: Priority::Background,
            retry: RetrySettings::default(),
            spent: Arc::default(),
        }
    }

    /// Tokens charged by this client and its clones so far.
    pub fn tokens_spent(&self) -> u64 {
        self.spent.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn with_priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    pub fn with_retry(mut self, retry: RetrySettings) -> Self {
        self.retry = retry;
        self
    }

    /// A GET with its token cost; the body on success.
    pub async fn get(
        &self,
        path: &str,
        query: &[(String, String)],
        cost: u32,
    ) -> Result<bytes::Bytes, PipedriveError> {
        self.request(reqwest::Method::GET, path, query, None, cost).await
    }

    /// A write (POST, PUT, PATCH, DELETE) with a JSON body and its token cost.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
        cost: u32,
    ) -> Result<bytes::Bytes, PipedriveError> {
        self.request(method, path, &[], body, cost).await
    }

    #[tracing::instrument(skip_all, fields(%method, path))]
    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(String, String)],
        body: Option<&serde_json::Value>,
        cost: u32,
    ) -> Result<bytes::Bytes, PipedriveError> {
        let search = path.contains("itemSearch") || path.ends_with("/search");
        let mut auth = self.credentials.current().await?;
        let mut refreshed = false;
        let mut failures = 0;
        let mut limited = 0;
        loop {
            let slots = self.limiter.acquire(search).await;
            self.budget.charge(cost, self.priority, OffsetDateTime::now_utc()).map_err(
                |BudgetExhausted { renews_at }| PipedriveError::BudgetExhausted { renews_at },
            )?;
            self.spent.fetch_add(u64::from(cost), std::sync::atomic::Ordering::Relaxed);
            let mut req =
                self.http.request(method.clone(), format!("{}{path}", self.base)).query(query);
            if let Some(b) = body {
                req = req.json(b);
            }
            let req = match &auth {
                AuthHeader::ApiToken(t) => req.header("x-api-token", t.expose()),
                AuthHeader::Bearer(t) => req.bearer_auth(t.expose()),
            };
            let sent = req.send().await;
            // The answer's head has come (or the request failed): the request reached Pipedrive
            // before now, and its slot counts from now.
            drop(slots);
            let res = match sent {
                Ok(r) => r,
                Err(e) => {
                    failures += 1;
                    if failures >= self.retry.attempts {
                        return Err(PipedriveError::Transient(short(&e)));
                    }
                    tokio::time::sleep(self.backoff(failures)).await;
                    continue;
                }
            };
            let status = res.status().as_u16();
            let header = |name: &str| {
                res.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
            };
            // (A search's answer reports the search limit.)
            if let Some(limit) = header("x-ratelimit-limit").filter(|_| !search) {
                self.limiter.adapt(limit as u32);
            }
            let reset = header("x-ratelimit-reset").unwrap_or(2);
            let html = res
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|c| c.starts_with("text/html"));
            match status {
                200..=299 => {
                    return res.bytes().await.map_err(|e| PipedriveError::Transient(short(&e)));
                }
                401 if !refreshed => {
                    refreshed = true;
                    auth = self.credentials.refresh(&auth).await?;
                }
                401 => return Err(PipedriveError::Unauthorized),
                429 => {
                    limited += 1;
                    if limited > self.retry.max_rate_limited {
                        return Err(PipedriveError::RateLimited { reset_secs: reset });
                    }
                    tracing::debug!(reset, "429: waiting for the window to reset");
                    tokio::time::sleep(Duration::from_secs(reset.max(1))).await;
                }
                // The abuse block is an HTML page: stop at once, hammering makes it last.
                403 if html => return Err(PipedriveError::Blocked),
                500..=599 => {
                    failures += 1;
                    // A POST that failed on the server may still have taken effect: the caller
                    // decides (e.g. lists webhooks before creating one again).
                    if failures >= self.retry.attempts || method == reqwest::Method::POST {
                        return Err(PipedriveError::Transient(format!("status {status}")));
                    }
                    tokio::time::sleep(self.backoff(failures)).await;
                }
                _ => {
                    let body = res.bytes().await.unwrap_or_default();
                    let message = serde_json::from_slice::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v["error"].as_str().map(str::to_owned))
                        .unwrap_or_default();
                    return Err(PipedriveError::Rejected { status, message });
                }
            }
        }
    }

    fn backoff(&self, failures: u32) -> Duration {
        use rand::Rng;
        let cap = self.retry.base_delay.as_secs_f64() * 2f64.powi(failures.min(8) as i32);
        Duration::from_secs_f64(rand::thread_rng().gen_range(cap / 2.0..=cap))
    }

    /// One page's body, and the cursor of the next page (read without decoding the records).
    async fn page_body(
        &self,
        path: &str,
        q: &ListQuery,
        cursor: Option<&str>,
    ) -> Result<(bytes::Bytes, Option<String>), PipedriveError> {
        let mut query: Vec<(String, String)> =
            vec![("limit".into(), q.limit.unwrap_or(500).to_string())];
        if let Some(since) = q.updated_since {
            let text =
                since.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
            query.push(("updated_since".into(), text));
        }
        if q.sort_by_update_time {
            query.push(("sort_by".into(), "update_time".into()));
        }
        query.extend(q.extra.iter().cloned());
        if let Some(c) = cursor {
            query.push(("cursor".into(), c.to_owned()));
        }
        let body = self.get(path, &query, list_cost(path)).await?;
        let list: ListBody<serde::de::IgnoredAny> = serde_json::from_slice(&body)
            .map_err(|e| PipedriveError::Decode { field: super::field_of(&e) })?;
        Ok((body, list.additional_data.and_then(|a| a.next_cursor)))
    }

    /// Every page of a v2 list (`/api/v2/persons`, ...), one at a time.
    pub fn list<T: DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
        query: ListQuery,
    ) -> impl Stream<Item = Result<Page<T>, PipedriveError>> + Send + 'static {
        self.list_from(path, query, None)
    }

    /// The pages of a list from `cursor` on (a checkpoint of an earlier run), or from the start.
    ///
    /// A task of its own fetches the pages, asking for the next one as soon as a body has come
    /// (its cursor is read without decoding the records); the stream decodes them. A cursor
    /// list can only be read one page after the other, so a page's decoding would otherwise
    /// add to every round trip — under load, more than the limiter's 26 ms between calls.
    pub fn list_from<T: DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
        query: ListQuery,
        cursor: Option<String>,
    ) -> impl Stream<Item = Result<Page<T>, PipedriveError>> + Send + 'static {
        let (tx, rx) =
            tokio::sync::mpsc::channel::<Result<(bytes::Bytes, Option<String>), PipedriveError>>(2);
        let (client, path) = (self.clone(), path.to_owned());
        let fetcher = tokio::spawn(async move {
            let mut cursor = Some(cursor);
            while let Some(at) = cursor.take() {
                let body = client.page_body(&path, &query, at.as_deref()).await;
                if let Ok((_, Some(next))) = &body {
                    cursor = Some(Some(next.clone()));
                }
                // The stream was dropped, or this was the last page (or a failure): done.
                if tx.send(body).await.is_err() {
                    return;
                }
            }
        });
        // The stream ends after its first failure; dropped, it stops the fetching (no page is
        // asked for, and paid for, that nobody reads).
        let fetching = crate::task::AbortOnDrop(fetcher);
        futures_util::stream::unfold(Some((rx, fetching)), |state| async move {
            let (mut rx, fetching) = state?;
            let decode = |(body, next_cursor): (bytes::Bytes, Option<String>)| {
                serde_json::from_slice::<ListBody<T>>(&body)
                    .map(|list| Page { items: list.data, next_cursor })
                    .map_err(|e| PipedriveError::Decode { field: super::field_of(&e) })
            };
            // A page is up to half a megabyte of JSON: decoded on a blocking thread, so the
            // runtime's workers stay free for the requests on their way.
            let page = match rx.recv().await? {
                Ok(fetched) => {
                    tokio::task::spawn_blocking(move || decode(fetched)).await.unwrap_or_else(|e| {
                        Err(PipedriveError::Transient(format!(
                            "decoding a page was interrupted: {e}"
                        )))
                    })
                }
                Err(e) => Err(e),
            };
            let more = page.is_ok().then_some((rx, fetching));
            Some((page, more))
        })
    }
}

/// Token cost of a v2 list call (`x-token-cost` in the spec).
fn list_cost(path: &str) -> u32 {
    match path {
        p if p.ends_with("/pipelines") || p.ends_with("/stages") => 5,
        p if p.contains("itemSearch") || p.ends_with("/search") => 20,
        _ => 10,
    }
}
