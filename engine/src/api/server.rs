//! The server side of the local API: accepts connections on a Unix socket
//! (same user only) or on TCP (a token on every request), reads requests
//! line by line, answers each, and streams subscriptions.
//!
//! Isolation, the point of this module:
//! - the engine never waits for a client: updates reach subscribers
//!   through the engine's broadcast ring (a slow subscriber lags, the
//!   engine does not notice), a lagging subscription is ended with a
//!   `lagged` notice, and a connection whose peer stops reading is closed
//!   after [`ServerConfig::write_timeout`];
//! - each connection has its own bounded outgoing queue and reader; a bad
//!   request, an oversized line or a vanished client ends at most that
//!   request or that connection;
//! - every request is validated ([`proto::parse_request`]) before anything
//!   is done, and every step and job id is checked against the engine.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

use super::proto::{self, Hello, Op, Response, StepRef, UpdateFrame, codes};
use super::{ApiError, Control};
use crate::plan::compile::StepId;
use crate::plan::model::Plan;
use crate::runtime::{Engine, Submission};
use crate::store::JobId;

/// Applies the faults of a submission to a simulated fabric.
pub type FaultHook = Arc<dyn Fn(&[String]) -> Result<(), String> + Send + Sync>;
/// Admits or refuses a submitted plan before the engine sees it (e.g.
/// every VM must exist in the fabric the server runs).
pub type AdmitHook = Arc<dyn Fn(&Plan) -> Result<(), String> + Send + Sync>;

/// How a server behaves.
#[derive(Clone)]
pub struct ServerConfig {
    /// The longest request line accepted (bytes, without the newline).
    pub max_line: usize,
    /// Authenticated connections served at once (Unix peers of this user,
    /// TCP clients that sent the token). More wait in a queue, first come
    /// first served, for at most [`ServerConfig::queue_timeout`]; only a
    /// connection that waited that long, or one beyond
    /// [`ServerConfig::max_queued`], is answered `busy`.
    pub max_connections: usize,
    /// Connections waiting for a slot at once.
    pub max_queued: usize,
    /// How long a connection waits in the queue before `busy`.
    pub queue_timeout: Duration,
    /// TCP connections that have not yet proved the token, at once. They
    /// never take a slot of [`ServerConfig::max_connections`], so idle or
    /// slow strangers cannot lock the owner out; beyond this they are
    /// answered `busy` at once.
    pub max_unauthenticated: usize,
    /// A TCP connection must send its first request, with the token,
    /// within this; else it is answered `unauthorized` and closed.
    pub auth_timeout: Duration,
    /// Refuses `submit` with this reason (an engine hosted by a command
    /// that ends with its own job, not a `drplan serve`).
    pub refuse_submit: Option<String>,
    /// Subscriptions per connection.
    pub max_subscriptions: usize,
    /// Lines queued for one connection before its writers wait.
    pub outgoing_buffer: usize,
    /// A write that makes no progress for this long closes the connection
    /// (a client that stopped reading).
    pub write_timeout: Duration,
    /// Shown by `hello`.
    pub data_dir: Option<PathBuf>,
    /// Applies `submit`'s `faults`; without it such a submission is refused.
    pub faults: Option<FaultHook>,
    pub admit: Option<AdmitHook>,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            max_line: proto::MAX_LINE,
            max_connections: 512,
            max_queued: 4096,
            queue_timeout: Duration::from_secs(30),
            max_unauthenticated: 256,
            auth_timeout: Duration::from_secs(5),
            refuse_submit: None,
            max_subscriptions: 16,
            outgoing_buffer: 256,
            write_timeout: Duration::from_secs(10),
            data_dir: None,
            faults: None,
            admit: None,
        }
    }
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("max_line", &self.max_line)
            .field("max_connections", &self.max_connections)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

/// Who may talk to a listener.
#[derive(Clone)]
enum Auth {
    /// Unix socket: peers of this uid only.
    Uid(u32),
    /// TCP: every request carries this token.
    Token(Arc<str>),
}

/// A local API server over one engine.
pub struct Server {
    engine: Arc<Engine>,
    config: Arc<ServerConfig>,
    shutdown: watch::Sender<bool>,
    limits: Arc<Limits>,
}

/// The server's connection slots (see [`ServerConfig`]).
struct Limits {
    /// Authenticated connections being served.
    served: Arc<Semaphore>,
    /// TCP connections still proving the token.
    unauthenticated: Arc<Semaphore>,
    /// Connections waiting for a `served` slot.
    queued: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The effective user id of this process.
pub fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Binds the Unix socket at `path` with mode 0600. A socket file left by a
/// server that died is replaced: the caller holds the data directory's
/// store lock, so no live server can own it. Anything else at that path
/// (a regular file, a directory) is refused rather than deleted.
pub fn bind_unix(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists and is not a socket; remove it if it is not needed",
                    path.display()
                ),
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    // The directory (0700) covers the moment between bind and chmod; the
    // peer uid check covers everything.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// A random token (32 bytes from the OS, hex): what a TCP client must send.
pub fn new_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes `token` to `path` readable by this user only (mode 0600 from
/// creation: the token is never readable by others, not even briefly).
pub fn write_token_file(path: &Path, token: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // An existing file keeps its mode on open: tighten it.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(token.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()
}

/// Compares without an early exit, so the time taken says nothing about
/// how much of a guessed token was right.
fn same_token(given: &str, expected: &str) -> bool {
    let (a, b) = (given.as_bytes(), expected.as_bytes());
    let mut diff = a.len() ^ b.len();
    for (i, &x) in b.iter().enumerate() {
        diff |= usize::from(x ^ a.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

impl Server {
    pub fn new(engine: Arc<Engine>, config: ServerConfig) -> Server {
        let (shutdown, _) = watch::channel(false);
        let limits = Arc::new(Limits {
            served: Arc::new(Semaphore::new(config.max_connections.max(1))),
            unauthenticated: Arc::new(Semaphore::new(config.max_unauthenticated.max(1))),
            queued: std::sync::atomic::AtomicUsize::new(0),
        });
        Server {
            engine,
            config: Arc::new(config),
            shutdown,
            limits,
        }
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Connections being served now (not counting those queued or still
    /// authenticating).
    pub fn active_connections(&self) -> usize {
        self.config
            .max_connections
            .max(1)
            .saturating_sub(self.limits.served.available_permits())
    }

    /// Stops accepting, ends every subscription with `shutdown` and closes
    /// every connection. The engine is left running (its owner stops it).
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Serves a Unix socket until [`Server::shutdown`]: peers of another
    /// user are refused.
    pub async fn serve_unix(&self, listener: UnixListener) {
        let auth = Auth::Uid(current_uid());
        let mut stop = self.shutdown.subscribe();
        loop {
            tokio::select! {
                _ = stopped(&mut stop) => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let peer = stream.peer_cred().map(|c| c.uid());
                        let auth = auth.clone();
                        let refusal = match (&auth, peer) {
                            (Auth::Uid(me), Ok(uid)) if uid == *me => None,
                            (_, Ok(uid)) => Some(format!(
                                "this server serves user id {} only; the connection comes from user id {uid}",
                                current_uid()
                            )),
                            (_, Err(e)) => Some(format!("cannot tell who connected: {e}")),
                        };
                        self.spawn_connection(stream, auth, refusal);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
    }

    /// Serves TCP until [`Server::shutdown`]: every request must carry
    /// `token`.
    pub async fn serve_tcp(&self, listener: TcpListener, token: String) {
        let auth = Auth::Token(token.into());
        let mut stop = self.shutdown.subscribe();
        loop {
            tokio::select! {
                _ = stopped(&mut stop) => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let _ = stream.set_nodelay(true);
                        self.spawn_connection(stream, auth.clone(), None);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
    }

    fn spawn_connection<S>(&self, stream: S, auth: Auth, refusal: Option<String>)
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let conn = Connection {
            engine: self.engine.clone(),
            config: self.config.clone(),
            auth,
            stop: self.shutdown.subscribe(),
        };
        let limits = self.limits.clone();
        let is_tcp = matches!(conn.auth, Auth::Token(_));
        tokio::spawn(async move {
            let (read, write) = tokio::io::split(stream);
            let mut read = BufReader::new(read);
            if let Some(r) = refusal {
                return refuse(read, write, &conn.config, codes::UNAUTHORIZED, r).await;
            }
            // TCP: the first request must come, with the token, within the
            // authentication deadline, on a slot of its own.
            let mut first = None;
            if is_tcp {
                // The deadline runs from the accept, for every connection
                // alike: the owner's first request is read at once however
                // many strangers sit idle; the cap only bounds the
                // descriptors they hold meanwhile.
                let waited = limits.unauthenticated.clone().try_acquire_owned().ok();
                let Some(slot) = waited else {
                    let message = format!(
                        "the server has {} connections waiting to authenticate; try again later",
                        conn.config.max_unauthenticated
                    );
                    return refuse(read, write, &conn.config, codes::BUSY, message).await;
                };
                let Auth::Token(expected) = &conn.auth else {
                    return;
                };
                match conn.authenticate(&mut read, expected).await {
                    Ok(line) => first = Some(line),
                    Err((id, code, message)) => {
                        tracing::warn!(code, %message, "TCP connection not authenticated");
                        return answer_and_close(write, id, code, message).await;
                    }
                }
                drop(slot);
            }
            // Queue (first come, first served) for a slot to be served.
            let slot = match limits.served.clone().try_acquire_owned() {
                Ok(slot) => slot,
                Err(_) => {
                    let waiting = limits.queued.fetch_add(1, Ordering::SeqCst);
                    let got = if waiting >= conn.config.max_queued {
                        None
                    } else {
                        tracing::info!(waiting, "all connection slots busy; queueing");
                        tokio::time::timeout(
                            conn.config.queue_timeout,
                            limits.served.clone().acquire_owned(),
                        )
                        .await
                        .ok()
                        .and_then(Result::ok)
                    };
                    limits.queued.fetch_sub(1, Ordering::SeqCst);
                    match got {
                        Some(slot) => slot,
                        None => {
                            let message = format!(
                                "the server serves {} connections at once and {} more are \
                                 waiting; none freed within {:?}",
                                conn.config.max_connections,
                                conn.config.max_queued.min(waiting),
                                conn.config.queue_timeout
                            );
                            return refuse(read, write, &conn.config, codes::BUSY, message).await;
                        }
                    }
                }
            };
            conn.run(read, write, first).await;
            drop(slot);
        });
    }
}

/// Answers a connection's first request with an error and closes it.
async fn refuse<R, W>(
    mut read: BufReader<R>,
    write: W,
    config: &ServerConfig,
    code: &'static str,
    message: String,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    tracing::warn!(code, %message, "connection refused");
    // Read the client's first request (bounded in size and time) before
    // answering: closing a socket with unread input resets it, and the
    // client would see a reset instead of the reason.
    let mut buf = Vec::new();
    let first = tokio::time::timeout(
        Duration::from_secs(1),
        read_line_limited(&mut read, &mut buf, config.max_line),
    )
    .await;
    let id = match first {
        Ok(Ok(Line::Full)) => proto::parse_request(&buf).ok().map(|p| p.id),
        _ => None,
    };
    answer_and_close(write, id, code, message).await;
}

async fn answer_and_close<W: AsyncWrite + Unpin>(
    mut write: W,
    id: Option<u64>,
    code: &'static str,
    message: String,
) {
    let line = Response::error(id, code, message).to_line();
    let _ = tokio::time::timeout(Duration::from_secs(1), write.write_all(line.as_bytes())).await;
    let _ = write.shutdown().await;
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

/// What reading one line gave.
pub(crate) enum Line {
    /// A complete line (or the last one, unterminated, at the end).
    Full,
    TooLong,
    Eof,
}

/// Reads one line into `buf` (without its `\n` or `\r\n`), keeping at most
/// `max` bytes: a longer line is consumed to its end and reported, never
/// buffered whole.
pub(crate) async fn read_line_limited<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Line> {
    buf.clear();
    let mut too_long = false;
    loop {
        let avail = r.fill_buf().await?;
        if avail.is_empty() {
            return Ok(if too_long {
                Line::TooLong
            } else if buf.is_empty() {
                Line::Eof
            } else {
                Line::Full
            });
        }
        let (chunk, found) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (&avail[..i], Some(i)),
            None => (avail, None),
        };
        if !too_long {
            if buf.len() + chunk.len() > max {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(chunk);
            }
        }
        let used = found.map_or(avail.len(), |i| i + 1);
        r.consume(used);
        if found.is_some() {
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            return Ok(if too_long { Line::TooLong } else { Line::Full });
        }
    }
}

struct Connection {
    engine: Arc<Engine>,
    config: Arc<ServerConfig>,
    auth: Auth,
    stop: watch::Receiver<bool>,
}

impl Connection {
    /// Reads a TCP connection's first request within the authentication
    /// deadline and checks its token: the line to serve, or the error to
    /// answer before closing.
    async fn authenticate<R: AsyncRead + Unpin>(
        &self,
        read: &mut BufReader<R>,
        expected: &str,
    ) -> Result<Vec<u8>, (Option<u64>, &'static str, String)> {
        let mut buf = Vec::new();
        let deadline = self.config.auth_timeout;
        let got = tokio::time::timeout(
            deadline,
            read_line_limited(read, &mut buf, self.config.max_line),
        )
        .await;
        match got {
            Err(_) => Err((
                None,
                codes::UNAUTHORIZED,
                format!("no request with the token within {deadline:?}; closing"),
            )),
            Ok(Err(_) | Ok(Line::Eof)) => Err((
                None,
                codes::UNAUTHORIZED,
                "the connection ended before its first request".into(),
            )),
            Ok(Ok(Line::TooLong)) => Err((
                None,
                codes::LINE_TOO_LONG,
                format!("the request is longer than {} bytes", self.config.max_line),
            )),
            Ok(Ok(Line::Full)) => match proto::parse_request(&buf) {
                Ok(req)
                    if req
                        .token
                        .as_deref()
                        .is_some_and(|t| same_token(t, expected)) =>
                {
                    Ok(buf)
                }
                Ok(req) => Err((
                    Some(req.id),
                    codes::UNAUTHORIZED,
                    if req.token.is_some() {
                        "wrong token".into()
                    } else {
                        "this server needs a token on every request (`token`)".into()
                    },
                )),
                Err(e) => Err((e.id, e.code, e.message)),
            },
        }
    }

    /// Serves the connection; `first` is a request line already read (the
    /// one that authenticated a TCP connection).
    async fn run<R, W>(mut self, mut read: BufReader<R>, write: W, first: Option<Vec<u8>>)
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        let (tx, rx) = mpsc::channel::<String>(self.config.outgoing_buffer.max(1));
        let writer = tokio::spawn(write_lines(write, rx, self.config.write_timeout));
        let mut subscriptions: Vec<JoinHandle<()>> = Vec::new();
        let mut buf = Vec::new();
        let mut first = first;
        loop {
            let got = if let Some(line) = first.take() {
                buf = line;
                Ok(Line::Full)
            } else {
                tokio::select! {
                    _ = stopped(&mut self.stop) => break,
                    // The writer ended: the peer stopped reading or went away.
                    _ = tx.closed() => break,
                    got = read_line_limited(&mut read, &mut buf, self.config.max_line) => got,
                }
            };
            let answer = match got {
                Err(_) | Ok(Line::Eof) => break,
                Ok(Line::TooLong) => Response::error(
                    None,
                    codes::LINE_TOO_LONG,
                    format!(
                        "the request is longer than {} bytes; it was skipped",
                        self.config.max_line
                    ),
                ),
                Ok(Line::Full) => match proto::parse_request(&buf) {
                    Err(e) => Response::error(e.id, e.code, e.message),
                    Ok(req) => {
                        if let Auth::Token(expected) = &self.auth
                            && !req
                                .token
                                .as_deref()
                                .is_some_and(|t| same_token(t, expected))
                        {
                            let why = if req.token.is_some() {
                                "wrong token"
                            } else {
                                "this server needs a token on every request (`token`)"
                            };
                            let line = Response::error(Some(req.id), codes::UNAUTHORIZED, why);
                            let _ = tx.send(line.to_line()).await;
                            // A client without the token has nothing more
                            // to say here.
                            break;
                        }
                        match req.op {
                            Op::Subscribe { job } => {
                                subscriptions.retain(|h| !h.is_finished());
                                match self.subscribe(req.id, job, &tx, subscriptions.len()).await {
                                    Ok(h) => {
                                        subscriptions.push(h);
                                        continue;
                                    }
                                    Err(e) => err_response(req.id, &e),
                                }
                            }
                            op => match handle(&self.engine, &self.config, op).await {
                                Ok(v) => Response::ok(req.id, v),
                                Err(e) => err_response(req.id, &e),
                            },
                        }
                    }
                },
            };
            if tx.send(answer.to_line()).await.is_err() {
                break;
            }
        }
        for s in &subscriptions {
            s.abort();
        }
        drop(tx);
        let _ = writer.await;
    }

    /// Starts streaming updates to the connection: answers `ok` first (in
    /// order, before any update), then forwards until the connection ends,
    /// the subscriber lags or the server stops.
    async fn subscribe(
        &self,
        id: u64,
        job: Option<JobId>,
        tx: &mpsc::Sender<String>,
        active: usize,
    ) -> Result<JoinHandle<()>, ApiError> {
        if active >= self.config.max_subscriptions {
            return Err(ApiError::refused(
                codes::BUSY,
                format!(
                    "at most {} subscriptions per connection",
                    self.config.max_subscriptions
                ),
            ));
        }
        // Subscribe before checking the job, so that nothing recorded in
        // between is missed.
        let mut updates = match job {
            Some(j) => self.engine.subscribe(j),
            None => self.engine.subscribe_all(),
        };
        if let Some(j) = job
            && Control::status(self.engine.as_ref(), j).await?.is_none()
        {
            return Err(ApiError::refused(
                codes::UNKNOWN_JOB,
                format!("job {j} does not exist"),
            ));
        }
        let ok = Response::ok(
            id,
            json!({"subscribed": job.map_or(json!("all"), |j| json!(j))}),
        );
        tx.send(ok.to_line())
            .await
            .map_err(|_| ApiError::Connection("the client went away".into()))?;
        let tx = tx.clone();
        let mut stop = self.stop.clone();
        Ok(tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    _ = stopped(&mut stop) => {
                        let _ = tx.try_send(Response::end(id, "shutdown", None).to_line());
                        return;
                    }
                    next = updates.next_or_lag() => next,
                };
                let line = match next {
                    Some(Ok(u)) => Response::update(id, UpdateFrame::from(&u)).to_line(),
                    Some(Err(missed)) => {
                        tracing::warn!(
                            missed,
                            "an API subscriber fell behind; ending its subscription"
                        );
                        let _ = tx.try_send(Response::end(id, "lagged", Some(missed)).to_line());
                        return;
                    }
                    None => {
                        let _ = tx.try_send(Response::end(id, "shutdown", None).to_line());
                        return;
                    }
                };
                // Waits only for this connection's queue; the engine's ring
                // keeps filling meanwhile and reports the lag.
                if tx.send(line).await.is_err() {
                    return;
                }
            }
        }))
    }
}

/// Resolves once the server stops (or its switch is gone). Returns
/// nothing: the watch guard must not live inside a `select!` output, which
/// would make the future `!Send`.
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

fn err_response(id: u64, e: &ApiError) -> Response {
    Response::error(Some(id), e.code(), e.to_string())
}

/// Writes queued lines; a write that stalls for `timeout` ends the
/// connection (the receiver is dropped, so every sender notices).
async fn write_lines<W: AsyncWrite + Unpin>(
    mut w: W,
    mut rx: mpsc::Receiver<String>,
    timeout: Duration,
) {
    while let Some(line) = rx.recv().await {
        match tokio::time::timeout(timeout, w.write_all(line.as_bytes())).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                tracing::warn!("an API client stopped reading; closing its connection");
                return;
            }
        }
    }
    let _ = w.shutdown().await;
}

/// The step id a request names, checked against the job.
async fn step_of(engine: &Engine, job: JobId, step: &StepRef) -> Result<StepId, ApiError> {
    let ctx = Control::context(engine, job).await?;
    match step {
        StepRef::Id(s) if *s < ctx.len() => Ok(*s),
        StepRef::Id(s) => Err(ApiError::refused(
            codes::UNKNOWN_STEP,
            format!("job {job} has no step {s} (it has {})", ctx.len()),
        )),
        StepRef::Key(k) => (0..ctx.len())
            .find(|&s| ctx.node(s).is_some_and(|n| &n.key == k))
            .ok_or_else(|| {
                ApiError::refused(codes::UNKNOWN_STEP, format!("job {job} has no step `{k}`"))
            }),
    }
}

fn to_value<T: serde::Serialize>(v: T) -> Result<Value, ApiError> {
    serde_json::to_value(v).map_err(|e| ApiError::refused(codes::INTERNAL, e.to_string()))
}

/// Performs one (non-streaming) operation.
async fn handle(engine: &Engine, config: &ServerConfig, op: Op) -> Result<Value, ApiError> {
    let done = || Ok(json!({}));
    match op {
        Op::Hello {} => to_value(Hello {
            server: "drplan".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            protocol: proto::PROTOCOL_VERSION,
            pid: std::process::id(),
            data_dir: config.data_dir.as_ref().map(|d| d.display().to_string()),
        }),
        Op::Submit {
            plan,
            plan_text,
            operation,
            by,
            start_at,
            faults,
        } => {
            if let Some(why) = &config.refuse_submit {
                return Err(ApiError::refused(codes::REFUSED, why.clone()));
            }
            if let Some(admit) = &config.admit {
                admit(&plan).map_err(|e| ApiError::refused(codes::REFUSED, e))?;
            }
            if let Some(faults) = faults {
                let hook = config.faults.as_ref().ok_or_else(|| {
                    ApiError::refused(
                        codes::BAD_REQUEST,
                        "this server's fabric takes no injected faults",
                    )
                })?;
                hook(&faults).map_err(|e| ApiError::refused(codes::BAD_REQUEST, e))?;
            }
            let sub = Submission {
                plan: *plan,
                plan_text,
                operation,
                requested_by: by,
                start_at,
            };
            let job = Control::submit(engine, sub, None).await?;
            Ok(json!({ "job": job }))
        }
        Op::Answer {
            job,
            step,
            done: d,
            by,
            note,
        } => {
            let s = step_of(engine, job, &step).await?;
            Control::answer_manual(engine, job, s, d, &by, note).await?;
            done()
        }
        Op::Retry { job, step, by } => {
            let s = step_of(engine, job, &step).await?;
            Control::retry(engine, job, s, &by).await?;
            done()
        }
        Op::Skip { job, step, by } => {
            let s = step_of(engine, job, &step).await?;
            Control::skip(engine, job, s, &by).await?;
            done()
        }
        Op::Cancel { job, by } => {
            Control::cancel(engine, job, &by).await?;
            done()
        }
        Op::CompleteTest { job, notes, by } => {
            Control::complete_test(engine, job, &notes, &by).await?;
            done()
        }
        Op::StartNow { job, by } => {
            Control::start_now(engine, job, &by).await?;
            done()
        }
        Op::Status { job } => Ok(json!({ "status": Control::status(engine, job).await? })),
        Op::Job { job } => Ok(json!({ "state": to_value(Control::job(engine, job).await?)? })),
        Op::Jobs {} => Ok(json!({ "jobs": to_value(Control::jobs(engine).await?)? })),
        Op::Meta { job } => Ok(json!({ "meta": to_value(Control::meta(engine, job).await?)? })),
        Op::Events { job } => {
            if Control::meta(engine, job).await?.is_none() {
                return Err(ApiError::refused(
                    codes::UNKNOWN_JOB,
                    format!("job {job} does not exist"),
                ));
            }
            Ok(json!({ "events": to_value(Control::events(engine, job).await?)? }))
        }
        Op::Plan { job } => to_value(Control::plan(engine, job).await?),
        // Streams are set up by the connection.
        Op::Subscribe { .. } => Err(ApiError::refused(codes::INTERNAL, "not here")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abd", "abc"));
        assert!(!same_token("ab", "abc"));
        assert!(!same_token("abcd", "abc"));
        assert!(!same_token("", "abc"));
    }

    #[tokio::test]
    async fn long_lines_are_skipped_and_the_next_one_read() {
        let input: &[u8] = b"0123456789\r\nabc\n\nxyz";
        let mut r = BufReader::with_capacity(4, input);
        let mut buf = Vec::new();
        assert!(matches!(
            read_line_limited(&mut r, &mut buf, 5).await.unwrap(),
            Line::TooLong
        ));
        assert!(matches!(
            read_line_limited(&mut r, &mut buf, 5).await.unwrap(),
            Line::Full
        ));
        assert_eq!(buf, b"abc");
        assert!(matches!(
            read_line_limited(&mut r, &mut buf, 5).await.unwrap(),
            Line::Full
        ));
        assert_eq!(buf, b"");
        assert!(matches!(
            read_line_limited(&mut r, &mut buf, 5).await.unwrap(),
            Line::Full
        ));
        assert_eq!(buf, b"xyz");
        assert!(matches!(
            read_line_limited(&mut r, &mut buf, 5).await.unwrap(),
            Line::Eof
        ));
    }

    #[test]
    fn tokens_are_long_and_random() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
