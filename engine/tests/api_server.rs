//! The local API end to end in one process: an engine on the shipped
//! three-tier plan behind a `Server`, reached with the `Client` and with raw
//! sockets (hostile input, stalled and vanished clients, tokens).
//! Real time (sockets), a fast simulated fabric.

mod runtime_support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use drplan_engine::api::client::{Client, ConnectError, Endpoint, Timeouts};
use drplan_engine::api::server::{Server, ServerConfig, bind_unix};
use drplan_engine::api::{ApiError, Control, codes};
use drplan_engine::core::JobStatus;
use drplan_engine::fabric::{FaultSet, SimConfig, SimFabric};
use drplan_engine::plan::model::{FailoverKind, StepAction};
use drplan_engine::runtime::{Engine, EngineConfig, SystemClock, Update};
use drplan_engine::store::JobId;
use runtime_support::{Shipped, mem, runner, submission, three_tier};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// Bounds every wait: a stuck engine fails the test instead of hanging it.
const LIMIT: Duration = Duration::from_secs(20);

struct Fixture {
    shipped: Shipped,
    server: Arc<Server>,
    socket: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

async fn fixture(config: ServerConfig) -> Fixture {
    let mut shipped = three_tier();
    // Real time here: the plan's one-minute `settle` wait becomes 10 ms
    // (as `drplan run` scales waits with the fabric).
    for step in shipped
        .plan
        .groups
        .iter_mut()
        .flat_map(|g| g.post.iter_mut())
    {
        if let StepAction::Wait { duration } = &mut step.action {
            *duration = Duration::from_millis(10);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let fabric = Arc::new(SimFabric::new(
        &shipped.inventory,
        SimConfig::default().with_time_scale(0.001),
        FaultSet::default(),
    ));
    let engine = Engine::start(EngineConfig {
        store: mem(),
        fabric,
        scripts: runner(dir.path()),
        clock: Arc::new(SystemClock),
        max_concurrent_vm_ops: 4,
        inventory: Some(shipped.inventory.clone()),
    })
    .await
    .expect("engine starts");
    let server = Arc::new(Server::new(Arc::new(engine), config));
    let socket = dir.path().join("drplan.sock");
    let listener = bind_unix(&socket).expect("bind");
    let s = server.clone();
    tokio::spawn(async move { s.serve_unix(listener).await });
    Fixture {
        shipped,
        server,
        socket,
        _dir: dir,
    }
}

async fn client(socket: &Path) -> Client {
    Client::connect(Endpoint::Unix(socket.to_path_buf()), Timeouts::default())
        .await
        .expect("client connects")
}

/// Waits (bounded) until the job's status satisfies `pred`, over the API.
async fn wait(c: &dyn Control, job: JobId, pred: impl Fn(JobStatus) -> bool) -> JobStatus {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let s = c.status(job).await.expect("status").expect("job exists");
        if pred(s) {
            return s;
        }
        if tokio::time::Instant::now() > deadline {
            let st = c.job(job).await.ok().flatten().expect("state");
            let ctx = c.context(job).await.expect("context");
            let running: Vec<String> = st
                .active
                .iter()
                .map(|&s| format!("{} {:?}", ctx.node(s).unwrap().key, st.steps[s].state))
                .collect();
            panic!("job {job} stuck at {s:?}: {running:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A raw line connection, for what the `Client` would never send.
struct Raw {
    read: BufReader<tokio::net::unix::OwnedReadHalf>,
    write: tokio::net::unix::OwnedWriteHalf,
}

impl Raw {
    async fn new(socket: &Path) -> Raw {
        let (r, w) = UnixStream::connect(socket).await.unwrap().into_split();
        Raw {
            read: BufReader::new(r),
            write: w,
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.write.write_all(bytes).await.unwrap();
    }

    async fn recv(&mut self) -> Option<Value> {
        let mut line = String::new();
        let n = tokio::time::timeout(LIMIT, self.read.read_line(&mut line))
            .await
            .expect("the server answers")
            .unwrap_or(0);
        (n > 0).then(|| serde_json::from_str(&line).expect("the server sends JSON"))
    }

    async fn ask(&mut self, line: &str) -> Value {
        self.send(format!("{line}\n").as_bytes()).await;
        self.recv().await.expect("an answer")
    }
}

fn error_code(v: &Value) -> &str {
    v["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error: {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_runs_end_to_end_through_the_client() {
    let f = fixture(ServerConfig::default()).await;
    let c = client(&f.socket).await;
    assert_eq!(c.hello().server, "drplan");
    assert_eq!(c.hello().protocol, 1);

    let mut updates = c.subscribe(None).await.expect("subscribed");
    let job = c
        .submit(submission(&f.shipped, FailoverKind::Test), None)
        .await
        .expect("submitted");
    wait(&c, job, |s| s == JobStatus::WaitingForOperator).await;
    // The stream carried the steps: a create-test-vm attempt and its outcome.
    let ctx = c.context(job).await.unwrap();
    let mut started = false;
    let mut finished = false;
    while !(started && finished) {
        let u = tokio::time::timeout(LIMIT, updates.next())
            .await
            .expect("updates flow")
            .expect("stream open");
        assert_eq!(u.job, job);
        match &u.update {
            Update::AttemptStarted { step, .. } => {
                started |= ctx.node(*step).unwrap().key.ends_with("create-test-vm");
            }
            Update::Recorded(drplan_engine::core::JobEvent::StepFinished { step, .. }) => {
                finished |= ctx.node(*step).unwrap().key.ends_with("create-test-vm");
            }
            _ => {}
        }
    }
    let manual = (0..ctx.len())
        .find(|&s| ctx.node(s).unwrap().key == "application/post/verify-health")
        .unwrap();
    c.answer_manual(job, manual, true, "bob", Some("healthy".into()))
        .await
        .expect("answered");
    wait(&c, job, |s| s == JobStatus::AwaitingCleanup).await;
    // A subscription to this one job sees its cleanup.
    let mut mine = c.subscribe(Some(job)).await.expect("subscribed to the job");
    // An action the core refuses comes back coded, not as a broken client.
    let again = c.answer_manual(job, manual, true, "bob", None).await;
    assert!(
        matches!(&again, Err(ApiError::Refused { code, .. }) if code == codes::REFUSED),
        "{again:?}"
    );
    c.complete_test(job, "all good", "bob")
        .await
        .expect("cleanup");
    wait(&c, job, |s| s == JobStatus::TestCompleted).await;
    let u = tokio::time::timeout(LIMIT, mine.next())
        .await
        .expect("the job's updates flow")
        .expect("stream open");
    assert_eq!(u.job, job);
    assert!(
        matches!(
            &u.update,
            Update::Recorded(drplan_engine::core::JobEvent::OperatorAction { by, .. }) if by == "bob"
        ),
        "{u:?}"
    );

    let jobs = c.jobs().await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].status, JobStatus::TestCompleted);
    let events = c.events(job).await.unwrap();
    assert!(events.len() > 10, "{events:?}");
    let plan = c.plan(job).await.unwrap().expect("plan");
    assert_eq!(plan.plan.name, "orders");
    assert!(plan.plan_text.contains("name: orders"));
    assert_eq!(c.status(JobId(99)).await.unwrap(), None);
    f.server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors_while_a_job_keeps_running() {
    let config = ServerConfig {
        max_line: 64 * 1024,
        ..ServerConfig::default()
    };
    let f = fixture(config).await;
    let c = client(&f.socket).await;
    let job = c
        .submit(submission(&f.shipped, FailoverKind::Test), None)
        .await
        .unwrap();

    let mut raw = Raw::new(&f.socket).await;
    // An empty line is answered, not skipped in silence (the client waits).
    for empty in ["", "   "] {
        let v = raw.ask(empty).await;
        assert_eq!(error_code(&v), codes::BAD_REQUEST, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("empty request line"),
            "{v}"
        );
    }
    let v = raw.ask("{this is not json").await;
    assert_eq!(error_code(&v), codes::BAD_JSON);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not valid JSON")
    );

    let huge = format!(
        "{{\"v\":1,\"id\":1,\"op\":\"jobs\",\"pad\":\"{}\"}}",
        "x".repeat(200_000)
    );
    let v = raw.ask(&huge).await;
    assert_eq!(error_code(&v), codes::LINE_TOO_LONG);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("65536 bytes"),
        "{v}"
    );

    let v = raw.ask(r#"{"v":1,"id":2,"op":"drop_tables"}"#).await;
    assert_eq!(error_code(&v), codes::UNKNOWN_OP);
    assert_eq!(v["id"], 2);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("drop_tables")
    );

    let v = raw
        .ask(r#"{"v":1,"id":3,"op":"status","args":{"job":"one"}}"#)
        .await;
    assert_eq!(error_code(&v), codes::BAD_REQUEST);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("status"),
        "{v}"
    );

    let v = raw
        .ask(r#"{"v":1,"id":4,"op":"cancel","args":{"job":1,"by":"x","force":1}}"#)
        .await;
    assert_eq!(error_code(&v), codes::BAD_REQUEST);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("force"),
        "{v}"
    );

    let v = raw
        .ask(r#"{"v":1,"id":5,"op":"cancel","args":{"job":4242,"by":"x"}}"#)
        .await;
    assert_eq!(error_code(&v), codes::UNKNOWN_JOB);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("4242"),
        "{v}"
    );

    let v = raw
        .ask(&format!(
            r#"{{"v":1,"id":6,"op":"retry","args":{{"job":{},"step":"web/nope","by":"x"}}}}"#,
            job.0
        ))
        .await;
    assert_eq!(error_code(&v), codes::UNKNOWN_STEP);
    let v = raw
        .ask(&format!(
            r#"{{"v":1,"id":7,"op":"skip","args":{{"job":{},"step":100000,"by":"x"}}}}"#,
            job.0
        ))
        .await;
    assert_eq!(error_code(&v), codes::UNKNOWN_STEP);

    let v = raw.ask(r#"{"v":9,"id":8,"op":"jobs"}"#).await;
    assert_eq!(error_code(&v), codes::UNSUPPORTED_VERSION);
    let v = raw.ask(r#"{"v":1,"id":9,"op":"jobs","extra":1}"#).await;
    assert_eq!(error_code(&v), codes::BAD_REQUEST);
    let v = raw.ask(r#"{"v":1,"id":10,"op":"submit","args":{"plan":{},"plan_text":"","operation":"commit","by":"x"}}"#).await;
    assert_eq!(error_code(&v), codes::BAD_REQUEST);
    let v = raw
        .ask(r#"{"v":1,"id":11,"op":"subscribe","args":{"job":777}}"#)
        .await;
    assert_eq!(error_code(&v), codes::UNKNOWN_JOB);

    // The same connection still works, and the job was never disturbed.
    let v = raw.ask(r#"{"v":1,"id":12,"op":"hello"}"#).await;
    assert_eq!(v["ok"]["server"], "drplan", "{v}");
    assert_eq!(v["id"], 12);
    wait(&c, job, |s| s == JobStatus::WaitingForOperator).await;
    let ctx = c.context(job).await.unwrap();
    let manual = (0..ctx.len())
        .find(|&s| ctx.node(s).unwrap().key == "application/post/verify-health")
        .unwrap();
    c.answer_manual(job, manual, true, "bob", None)
        .await
        .unwrap();
    wait(&c, job, |s| s == JobStatus::AwaitingCleanup).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_and_vanished_subscribers_never_hold_the_engine_back() {
    let config = ServerConfig {
        outgoing_buffer: 2,
        write_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    };
    let f = fixture(config).await;
    // A subscriber that never reads, with every subscription a connection
    // may hold: more than the socket's buffer will hold, so its writes
    // stall, then its connection is closed.
    let mut stalled = Raw::new(&f.socket).await;
    for id in 1..=16 {
        stalled
            .send(format!("{{\"v\":1,\"id\":{id},\"op\":\"subscribe\"}}\n").as_bytes())
            .await;
    }
    // A subscriber that goes away mid-stream.
    let mut gone = Raw::new(&f.socket).await;
    gone.send(b"{\"v\":1,\"id\":1,\"op\":\"subscribe\"}\n")
        .await;
    assert_eq!(gone.recv().await.unwrap()["ok"]["subscribed"], "all");
    drop(gone);

    let c = client(&f.socket).await;
    // Two drills, one after the other, each to its end: the engine never
    // waits for the subscribers.
    let mut jobs = Vec::new();
    for _ in 0..2 {
        let job = c
            .submit(submission(&f.shipped, FailoverKind::Test), None)
            .await
            .unwrap();
        jobs.push(job);
        wait(&c, job, |s| s == JobStatus::WaitingForOperator).await;
        let ctx = c.context(job).await.unwrap();
        let manual = (0..ctx.len())
            .find(|&s| ctx.node(s).unwrap().key == "application/post/verify-health")
            .unwrap();
        c.answer_manual(job, manual, true, "bob", None)
            .await
            .unwrap();
        wait(&c, job, |s| s == JobStatus::AwaitingCleanup).await;
        c.complete_test(job, "ok", "bob").await.unwrap();
        wait(&c, job, |s| s == JobStatus::TestCompleted).await;
    }

    // The stalled connection was closed by the server (it reads what was
    // buffered, then the end of the stream), never waited on.
    let drained = tokio::time::timeout(LIMIT, async {
        let mut lines = 0;
        while stalled.recv().await.is_some() {
            lines += 1;
        }
        lines
    })
    .await
    .expect("the stalled connection is closed by the server, not left open");
    assert!(drained >= 16, "at least the subscriptions' ok: {drained}");
    // And the server still serves.
    let again = client(&f.socket).await;
    assert_eq!(again.jobs().await.unwrap().len(), jobs.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_needs_the_token_on_every_request() {
    let f = fixture(ServerConfig::default()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let token = drplan_engine::api::server::new_token().unwrap();
    let s = f.server.clone();
    let t = token.clone();
    tokio::spawn(async move { s.serve_tcp(listener, t).await });

    // No token at all: refused, connection closed.
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    w.write_all(b"{\"v\":1,\"id\":1,\"op\":\"jobs\"}\n")
        .await
        .unwrap();
    let mut line = String::new();
    r.read_line(&mut line).await.unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(error_code(&v), codes::UNAUTHORIZED);
    line.clear();
    assert_eq!(
        r.read_line(&mut line).await.unwrap(),
        0,
        "closed after: {line}"
    );

    // A wrong token: the client's hello is refused.
    let wrong = Client::connect(
        Endpoint::Tcp {
            addr: addr.clone(),
            token: "0".repeat(64),
        },
        Timeouts::default(),
    )
    .await;
    assert!(
        matches!(&wrong, Err(ConnectError::Unauthorized { message, .. }) if message.contains("wrong token")),
        "{wrong:?}"
    );

    // The right one works.
    let c = Client::connect(Endpoint::Tcp { addr, token }, Timeouts::default())
        .await
        .expect("connects with the token");
    assert!(c.jobs().await.unwrap().is_empty());
    let job = c
        .submit(submission(&f.shipped, FailoverKind::Test), None)
        .await
        .unwrap();
    wait(&c, job, |s| s == JobStatus::WaitingForOperator).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_socket_is_replaced_and_a_missing_server_is_reported_fast() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("drplan.sock");
    // A socket file nobody listens on (a killed server's).
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let started = std::time::Instant::now();
    let r = Client::connect(Endpoint::Unix(socket.clone()), Timeouts::default()).await;
    assert!(matches!(r, Err(ConnectError::NotListening(_))), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // A server binds over it.
    let l = bind_unix(&socket).expect("stale socket replaced");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    drop(l);
    // Anything but a socket is left alone.
    std::fs::remove_file(&socket).unwrap();
    std::fs::write(&socket, "precious").unwrap();
    assert!(bind_unix(&socket).is_err());
    assert_eq!(std::fs::read_to_string(&socket).unwrap(), "precious");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_queue_and_only_then_are_told_busy() {
    let config = ServerConfig {
        max_connections: 1,
        max_queued: 1,
        queue_timeout: Duration::from_secs(2),
        ..ServerConfig::default()
    };
    let f = fixture(config).await;
    let patient = Timeouts {
        connect: Duration::from_secs(10),
        answer: Duration::from_secs(10),
    };
    let endpoint = Endpoint::Unix(f.socket.clone());
    // The one slot is taken.
    let first = client(&f.socket).await;
    assert!(first.jobs().await.unwrap().is_empty());
    // A second connection waits in the queue (not refused) and is served
    // as soon as the first one closes.
    let queued = tokio::spawn({
        let endpoint = endpoint.clone();
        async move { Client::connect(endpoint, patient).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !queued.is_finished(),
        "the second connection was not queued"
    );
    // A third finds the queue full: `busy`, with the server's reason.
    let third = Client::connect(endpoint.clone(), patient).await;
    match third {
        Err(ConnectError::Busy { message, .. }) => {
            assert!(message.contains("serves 1 connections"), "{message}")
        }
        other => panic!("expected busy, got {other:?}"),
    }
    drop(first);
    let second = tokio::time::timeout(LIMIT, queued)
        .await
        .expect("served in time")
        .unwrap()
        .expect("the queued connection is served");
    assert!(second.jobs().await.unwrap().is_empty());
    // Held past the queue's time limit: a waiting connection is told
    // `busy` (after the limit, not before).
    let started = tokio::time::Instant::now();
    let late = Client::connect(endpoint, patient).await;
    assert!(matches!(late, Err(ConnectError::Busy { .. })), "{late:?}");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    f.server.shutdown();
}
