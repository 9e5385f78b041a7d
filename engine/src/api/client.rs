//! The client side of the local API: [`Client`] implements [`Control`]
//! over a Unix socket or TCP, with timeouts on connecting and on every
//! answer, so a stuck or vanished server is an error, never a hang.
//!
//! One connection carries the request/answer calls (one at a time); each
//! subscription gets a connection of its own, so reading updates and
//! querying state never wait for each other.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::Mutex;

use super::proto::{self, Hello, Op, Request, Response, StepRef, codes};
use super::server::read_line_limited;
use super::{ApiError, Control, JobPlan, Updates};
use crate::core::{JobContext, JobEvent, JobState, JobStatus};
use crate::journal::JobMeta;
use crate::plan::compile::StepId;
use crate::runtime::{JobUpdate, Submission};
use crate::store::JobId;

/// The longest answer line a client reads (a large job's history).
const MAX_ANSWER: usize = 1 << 30;

/// Where a server listens.
#[derive(Debug, Clone)]
pub enum Endpoint {
    Unix(PathBuf),
    Tcp { addr: String, token: String },
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "{}", p.display()),
            Endpoint::Tcp { addr, .. } => write!(f, "tcp://{addr}"),
        }
    }
}

/// Timeouts of a client.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Connecting and the `hello` exchange.
    pub connect: Duration,
    /// Waiting for the answer to a request.
    pub answer: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(3),
            answer: Duration::from_secs(60),
        }
    }
}

/// Why a connection could not be made.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectError {
    /// Nothing listens there: no socket file, or one left by a server that
    /// is gone (connection refused).
    #[error("no server listens on {0}")]
    NotListening(String),
    /// The server refused this client (another user, a wrong token).
    #[error("the server on {endpoint} refused this client: {message}")]
    Unauthorized { endpoint: String, message: String },
    /// The server serves as many connections as it takes and none freed
    /// in time (`busy`): worth trying again a little later.
    #[error("the server on {endpoint} is busy: {message}")]
    Busy { endpoint: String, message: String },
    /// Something listens but did not answer in time or spoke something else.
    #[error("the server on {endpoint} does not answer: {message}")]
    NoAnswer { endpoint: String, message: String },
}

type Reader = BufReader<Box<dyn AsyncRead + Send + Unpin>>;
type Writer = Box<dyn AsyncWrite + Send + Unpin>;

struct Conn {
    reader: Reader,
    writer: Writer,
    buf: Vec<u8>,
}

async fn open(endpoint: &Endpoint, timeout: Duration) -> Result<Conn, ConnectError> {
    let name = endpoint.to_string();
    let no_answer = |message: String| ConnectError::NoAnswer {
        endpoint: name.clone(),
        message,
    };
    let connected: std::io::Result<(Box<dyn AsyncRead + Send + Unpin>, Writer)> =
        match tokio::time::timeout(timeout, async {
            match endpoint {
                Endpoint::Unix(p) => UnixStream::connect(p).await.map(|s| {
                    let (r, w) = s.into_split();
                    (
                        Box::new(r) as Box<dyn AsyncRead + Send + Unpin>,
                        Box::new(w) as Writer,
                    )
                }),
                Endpoint::Tcp { addr, .. } => TcpStream::connect(addr.as_str()).await.map(|s| {
                    let _ = s.set_nodelay(true);
                    let (r, w) = s.into_split();
                    (
                        Box::new(r) as Box<dyn AsyncRead + Send + Unpin>,
                        Box::new(w) as Writer,
                    )
                }),
            }
        })
        .await
        {
            Ok(r) => r,
            Err(_) => return Err(no_answer(format!("connecting took over {timeout:?}"))),
        };
    match connected {
        Ok((r, w)) => Ok(Conn {
            reader: BufReader::new(r),
            writer: w,
            buf: Vec::new(),
        }),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            Err(ConnectError::NotListening(name))
        }
        Err(e) => Err(no_answer(e.to_string())),
    }
}

impl Conn {
    async fn send(&mut self, req: &Request) -> Result<(), ApiError> {
        let mut line = serde_json::to_string(req)
            .map_err(|e| ApiError::Connection(format!("cannot encode a request: {e}")))?;
        line.push('\n');
        self.writer
            .write_all(line.as_bytes())
            .await
            .map_err(|e| ApiError::Connection(format!("the server connection broke: {e}")))
    }

    /// The next line from the server, `None` at its end.
    async fn recv(&mut self) -> Result<Option<Response>, ApiError> {
        match read_line_limited(&mut self.reader, &mut self.buf, MAX_ANSWER).await {
            Ok(super::server::Line::Eof) => Ok(None),
            Ok(super::server::Line::TooLong) => Err(ApiError::Connection(
                "the server sent an answer too long to read".into(),
            )),
            Ok(super::server::Line::Full) => {
                serde_json::from_slice(&self.buf).map(Some).map_err(|e| {
                    ApiError::Connection(format!("the server sent something unexpected: {e}"))
                })
            }
            Err(e) => Err(ApiError::Connection(format!(
                "the server connection broke: {e}"
            ))),
        }
    }

    /// Sends `req` and waits (at most `timeout`) for its answer.
    async fn call(&mut self, req: &Request, timeout: Duration) -> Result<Value, ApiError> {
        self.send(req).await?;
        let wait = async {
            loop {
                let Some(r) = self.recv().await? else {
                    return Err(ApiError::Connection(
                        "the server closed the connection".into(),
                    ));
                };
                if let Some(e) = r.error {
                    // An error without an id refers to the connection (a
                    // refused peer, a line the server could not read).
                    if r.id == Some(req.id) || r.id.is_none() {
                        return Err(ApiError::Refused {
                            code: e.code,
                            message: e.message,
                        });
                    }
                } else if r.id == Some(req.id)
                    && let Some(v) = r.ok
                {
                    return Ok(v);
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.map_err(|_| {
            ApiError::Connection(format!("the server did not answer within {timeout:?}"))
        })?
    }
}

/// A connected client.
pub struct Client {
    endpoint: Endpoint,
    timeouts: Timeouts,
    conn: Mutex<Option<Conn>>,
    next_id: AtomicU64,
    hello: Hello,
    contexts: std::sync::Mutex<HashMap<JobId, Arc<JobContext>>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.endpoint)
            .field("hello", &self.hello)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to the server of a data directory (its `drplan.sock`).
    pub async fn connect_dir(dir: &Path, timeouts: Timeouts) -> Result<Client, ConnectError> {
        Client::connect(Endpoint::Unix(dir.join(super::SOCKET_FILE)), timeouts).await
    }

    /// Connects and says hello (both within `timeouts.connect`).
    pub async fn connect(endpoint: Endpoint, timeouts: Timeouts) -> Result<Client, ConnectError> {
        let mut conn = open(&endpoint, timeouts.connect).await?;
        let req = request(&endpoint, 0, Op::Hello {});
        let name = endpoint.to_string();
        let hello = match conn.call(&req, timeouts.connect).await {
            Ok(v) => serde_json::from_value::<Hello>(v).map_err(|e| ConnectError::NoAnswer {
                endpoint: name.clone(),
                message: format!("not a drplan server: {e}"),
            })?,
            Err(ApiError::Refused { code, message }) if code == codes::UNAUTHORIZED => {
                return Err(ConnectError::Unauthorized {
                    endpoint: name,
                    message,
                });
            }
            Err(ApiError::Refused { code, message }) if code == codes::BUSY => {
                return Err(ConnectError::Busy {
                    endpoint: name,
                    message,
                });
            }
            Err(e) => {
                return Err(ConnectError::NoAnswer {
                    endpoint: name,
                    message: e.to_string(),
                });
            }
        };
        Ok(Client {
            endpoint,
            timeouts,
            conn: Mutex::new(Some(conn)),
            next_id: AtomicU64::new(1),
            hello,
            contexts: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// What the server said about itself.
    pub fn hello(&self) -> &Hello {
        &self.hello
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Sends one operation and returns its `ok` value. A broken connection
    /// is reopened once for the next call.
    pub async fn call(&self, op: Op) -> Result<Value, ApiError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let req = request(&self.endpoint, id, op);
        let mut guard = self.conn.lock().await;
        if guard.is_none() {
            *guard = Some(
                open(&self.endpoint, self.timeouts.connect)
                    .await
                    .map_err(|e| ApiError::Connection(e.to_string()))?,
            );
        }
        let conn = guard.as_mut().expect("opened above");
        let result = conn.call(&req, self.timeouts.answer).await;
        if matches!(result, Err(ApiError::Connection(_))) {
            *guard = None;
        }
        result
    }

    async fn call_as<T: DeserializeOwned>(&self, op: Op, field: &str) -> Result<T, ApiError> {
        let mut v = self.call(op).await?;
        let inner = v.get_mut(field).map(Value::take).unwrap_or(Value::Null);
        serde_json::from_value(inner).map_err(|e| {
            ApiError::Connection(format!(
                "the server's `{field}` is not what this client reads: {e}"
            ))
        })
    }

    /// Subscribes on a connection of its own.
    pub async fn subscribe_updates(&self, job: Option<JobId>) -> Result<RemoteUpdates, ApiError> {
        RemoteUpdates::open(self.endpoint.clone(), self.timeouts, job).await
    }
}

fn request(endpoint: &Endpoint, id: u64, op: Op) -> Request {
    Request {
        v: proto::PROTOCOL_VERSION,
        id,
        op,
        token: match endpoint {
            Endpoint::Tcp { token, .. } => Some(token.clone()),
            Endpoint::Unix(_) => None,
        },
    }
}

/// The updates of a subscription, read from its own connection.
pub struct RemoteUpdates {
    endpoint: Endpoint,
    timeouts: Timeouts,
    job: Option<JobId>,
    conn: Conn,
    id: u64,
}

impl RemoteUpdates {
    async fn open(
        endpoint: Endpoint,
        timeouts: Timeouts,
        job: Option<JobId>,
    ) -> Result<RemoteUpdates, ApiError> {
        let mut conn = open(&endpoint, timeouts.connect)
            .await
            .map_err(|e| ApiError::Connection(e.to_string()))?;
        let id = 1;
        let req = request(&endpoint, id, Op::Subscribe { job });
        conn.call(&req, timeouts.connect).await?;
        Ok(RemoteUpdates {
            endpoint,
            timeouts,
            job,
            conn,
            id,
        })
    }

    /// The next update; `None` once the server stops or the connection
    /// breaks. A subscription the server ended because this client lagged
    /// is opened again (the updates in between are lost: the caller's
    /// queries of the job's state stay the truth).
    pub async fn next(&mut self) -> Option<JobUpdate> {
        loop {
            match self.conn.recv().await {
                Ok(Some(r)) if r.id == Some(self.id) => {
                    if let Some(f) = r.update {
                        return Some(f.into());
                    }
                    if let Some(end) = r.end {
                        if end.reason != "lagged" {
                            return None;
                        }
                        tracing::warn!(missed = ?end.missed, "the update stream lagged; subscribing again");
                        match RemoteUpdates::open(self.endpoint.clone(), self.timeouts, self.job)
                            .await
                        {
                            Ok(again) => *self = again,
                            Err(_) => return None,
                        }
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return None,
            }
        }
    }
}

fn step_ref(step: StepId) -> StepRef {
    StepRef::Id(step)
}

#[async_trait]
impl Control for Client {
    async fn submit(
        &self,
        sub: Submission,
        faults: Option<Vec<String>>,
    ) -> Result<JobId, ApiError> {
        self.call_as(
            Op::Submit {
                plan: Box::new(sub.plan),
                plan_text: sub.plan_text,
                operation: sub.operation,
                by: sub.requested_by,
                start_at: sub.start_at,
                faults,
            },
            "job",
        )
        .await
    }

    async fn answer_manual(
        &self,
        job: JobId,
        step: StepId,
        done: bool,
        by: &str,
        note: Option<String>,
    ) -> Result<(), ApiError> {
        self.call(Op::Answer {
            job,
            step: step_ref(step),
            done,
            by: by.into(),
            note,
        })
        .await
        .map(drop)
    }

    async fn retry(&self, job: JobId, step: StepId, by: &str) -> Result<(), ApiError> {
        self.call(Op::Retry {
            job,
            step: step_ref(step),
            by: by.into(),
        })
        .await
        .map(drop)
    }

    async fn skip(&self, job: JobId, step: StepId, by: &str) -> Result<(), ApiError> {
        self.call(Op::Skip {
            job,
            step: step_ref(step),
            by: by.into(),
        })
        .await
        .map(drop)
    }

    async fn cancel(&self, job: JobId, by: &str) -> Result<(), ApiError> {
        self.call(Op::Cancel { job, by: by.into() }).await.map(drop)
    }

    async fn complete_test(&self, job: JobId, notes: &str, by: &str) -> Result<(), ApiError> {
        self.call(Op::CompleteTest {
            job,
            notes: notes.into(),
            by: by.into(),
        })
        .await
        .map(drop)
    }

    async fn start_now(&self, job: JobId, by: &str) -> Result<(), ApiError> {
        self.call(Op::StartNow { job, by: by.into() })
            .await
            .map(drop)
    }

    async fn status(&self, job: JobId) -> Result<Option<JobStatus>, ApiError> {
        self.call_as(Op::Status { job }, "status").await
    }

    async fn job(&self, job: JobId) -> Result<Option<JobState>, ApiError> {
        self.call_as(Op::Job { job }, "state").await
    }

    async fn jobs(&self) -> Result<Vec<JobMeta>, ApiError> {
        self.call_as(Op::Jobs {}, "jobs").await
    }

    async fn meta(&self, job: JobId) -> Result<Option<JobMeta>, ApiError> {
        self.call_as(Op::Meta { job }, "meta").await
    }

    async fn events(&self, job: JobId) -> Result<Vec<JobEvent>, ApiError> {
        self.call_as(Op::Events { job }, "events").await
    }

    async fn plan(&self, job: JobId) -> Result<Option<JobPlan>, ApiError> {
        let v = self.call(Op::Plan { job }).await?;
        serde_json::from_value(v).map_err(|e| {
            ApiError::Connection(format!(
                "the server's plan is not what this client reads: {e}"
            ))
        })
    }

    /// Compiled here from the job's plan (compiling is deterministic, so
    /// the step ids are the server's).
    async fn context(&self, job: JobId) -> Result<Arc<JobContext>, ApiError> {
        if let Some(c) = self
            .contexts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&job)
        {
            return Ok(c.clone());
        }
        let Some(p) = Control::plan(self, job).await? else {
            return Err(ApiError::refused(
                codes::UNKNOWN_JOB,
                format!("job {job} does not exist"),
            ));
        };
        let ctx = Arc::new(JobContext::new(&p.plan, p.operation));
        self.contexts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(job, ctx.clone());
        Ok(ctx)
    }

    async fn subscribe(&self, job: Option<JobId>) -> Result<Updates, ApiError> {
        Ok(Updates::Remote(self.subscribe_updates(job).await?))
    }
}
