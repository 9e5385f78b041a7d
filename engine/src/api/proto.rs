//! The wire protocol of the local API, version [`PROTOCOL_VERSION`].
//!
//! Newline-delimited JSON over a stream (a Unix socket or TCP): every line
//! is one message, UTF-8, at most [`MAX_LINE`] bytes (server default).
//!
//! A request:
//! ```json
//! {"v":1,"id":7,"op":"status","args":{"job":3}}
//! ```
//! - `v`: the protocol version the client speaks (only 1 exists);
//! - `id`: the client's request id (an unsigned integer), echoed in every
//!   message that answers it;
//! - `op`: the operation ([`Op`], snake_case), `args` its arguments (an
//!   object; may be left out when the operation takes none);
//! - `token`: over TCP, the server's token (every request carries it).
//!
//! Unknown top-level fields and unknown arguments are refused, never
//! ignored: a typo must not silently change what a request does.
//!
//! Answers:
//! ```json
//! {"v":1,"id":7,"ok":{"status":"running"}}
//! {"v":1,"id":7,"error":{"code":"unknown_job","message":"job 3 does not exist"}}
//! ```
//! A `subscribe` request is answered with `ok` and then streams
//! `{"v":1,"id":N,"update":{...}}` lines ([`UpdateFrame`]) until the
//! subscription ends with `{"v":1,"id":N,"end":{"reason":...}}`
//! (`lagged`: the client read too slowly and missed updates — query the
//! state and subscribe again; `shutdown`: the server stops).
//!
//! These types are the compatibility promise of the API: add optional
//! fields freely, anything else needs a new protocol version.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::core::{IdemKey, JobEvent, JobStatus, Millis};
use crate::plan::compile::{Operation, StepId};
use crate::plan::model::Plan;
use crate::runtime::{JobUpdate, Update};
use crate::store::JobId;

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// The default longest line a server accepts (a submission carries the
/// validated plan and its text: the generated 1,000-VM plan is well under
/// 1 MiB).
pub const MAX_LINE: usize = 4 << 20;

/// A step named by its id or by its key (`web/post/update-dns`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StepRef {
    Id(StepId),
    Key(String),
}

/// Every operation of protocol version 1.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(
    tag = "op",
    content = "args",
    rename_all = "snake_case",
    deny_unknown_fields
)]
pub enum Op {
    /// Who the server is: answers [`Hello`].
    Hello {},
    /// Submit a job; answers `{"job": N}`.
    Submit {
        plan: Box<Plan>,
        plan_text: String,
        operation: Operation,
        by: String,
        #[serde(default)]
        start_at: Option<Millis>,
        /// Replace the faults in force on a simulated fabric (fault
        /// strings as `drplan run --inject` takes them); absent: keep them.
        #[serde(default)]
        faults: Option<Vec<String>>,
    },
    /// Answer a manual step.
    Answer {
        job: JobId,
        step: StepRef,
        done: bool,
        by: String,
        #[serde(default)]
        note: Option<String>,
    },
    Retry {
        job: JobId,
        step: StepRef,
        by: String,
    },
    Skip {
        job: JobId,
        step: StepRef,
        by: String,
    },
    Cancel {
        job: JobId,
        by: String,
    },
    /// Close an open test failover.
    CompleteTest {
        job: JobId,
        notes: String,
        by: String,
    },
    /// Start a scheduled job now.
    StartNow {
        job: JobId,
        by: String,
    },
    /// `{"status": "running" | null}`.
    Status {
        job: JobId,
    },
    /// `{"state": JobState | null}`.
    Job {
        job: JobId,
    },
    /// `{"jobs": [JobMeta]}`, oldest first.
    Jobs {},
    /// `{"meta": JobMeta | null}`.
    Meta {
        job: JobId,
    },
    /// `{"events": [JobEvent]}`: the job's history.
    Events {
        job: JobId,
    },
    /// `{"plan": Plan, "plan_text": "...", "operation": Operation}` (from
    /// which a client compiles the job's steps), or `null`.
    Plan {
        job: JobId,
    },
    /// Stream the updates of one job (or every job) from now on.
    Subscribe {
        #[serde(default)]
        job: Option<JobId>,
    },
}

impl Op {
    /// The operation names of this protocol version (for error messages).
    pub const NAMES: &'static [&'static str] = &[
        "hello",
        "submit",
        "answer",
        "retry",
        "skip",
        "cancel",
        "complete_test",
        "start_now",
        "status",
        "job",
        "jobs",
        "meta",
        "events",
        "plan",
        "subscribe",
    ];
}

/// A request as a client sends it.
#[derive(Debug, Clone, Serialize)]
pub struct Request {
    pub v: u32,
    pub id: u64,
    #[serde(flatten)]
    pub op: Op,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// What the server answers `hello` with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Always `drplan`.
    pub server: String,
    /// The drplan version of the server.
    pub version: String,
    pub protocol: u32,
    pub pid: u32,
    pub data_dir: Option<String>,
}

/// A job's plan as the `plan` operation returns it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobPlan {
    pub plan: Plan,
    pub plan_text: String,
    pub operation: Operation,
}

/// Error codes (stable: clients match on them).
pub mod codes {
    /// The line is not JSON, or not an object.
    pub const BAD_JSON: &str = "bad_json";
    /// The line is longer than the server accepts.
    pub const LINE_TOO_LONG: &str = "line_too_long";
    /// `v` missing or a version the server does not speak.
    pub const UNSUPPORTED_VERSION: &str = "unsupported_version";
    /// A field of the envelope or of `args` is missing, unknown or of the
    /// wrong type.
    pub const BAD_REQUEST: &str = "bad_request";
    pub const UNKNOWN_OP: &str = "unknown_op";
    /// Missing or wrong token (TCP), or a peer of another user (socket).
    pub const UNAUTHORIZED: &str = "unauthorized";
    pub const UNKNOWN_JOB: &str = "unknown_job";
    pub const UNKNOWN_STEP: &str = "unknown_step";
    /// The engine (the core) refused the action or the submission: VMs
    /// busy or not ready, a step that does not wait, a finished job.
    pub const REFUSED: &str = "refused";
    /// The server is stopping; it takes no new work.
    pub const SHUTTING_DOWN: &str = "shutting_down";
    /// Too many connections or subscriptions at once.
    pub const BUSY: &str = "busy";
    /// Something failed inside the server (the store, a task).
    pub const INTERNAL: &str = "internal";
}

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    pub code: String,
    pub message: String,
}

/// Why a subscription ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct End {
    /// `lagged` or `shutdown`.
    pub reason: String,
    /// Updates missed (lagged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missed: Option<u64>,
}

/// Every line a server sends.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Response {
    pub v: u32,
    /// `None` when the request's id could not be read.
    pub id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<WireError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<UpdateFrame>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<End>,
}

impl Response {
    fn empty(id: Option<u64>) -> Response {
        Response {
            v: PROTOCOL_VERSION,
            id,
            ok: None,
            error: None,
            update: None,
            end: None,
        }
    }

    pub fn ok(id: u64, value: Value) -> Response {
        Response {
            ok: Some(value),
            ..Response::empty(Some(id))
        }
    }

    pub fn error(id: Option<u64>, code: &str, message: impl Into<String>) -> Response {
        Response {
            error: Some(WireError {
                code: code.to_string(),
                message: message.into(),
            }),
            ..Response::empty(id)
        }
    }

    pub fn update(id: u64, frame: UpdateFrame) -> Response {
        Response {
            update: Some(frame),
            ..Response::empty(Some(id))
        }
    }

    pub fn end(id: u64, reason: &str, missed: Option<u64>) -> Response {
        Response {
            end: Some(End {
                reason: reason.to_string(),
                missed,
            }),
            ..Response::empty(Some(id))
        }
    }

    /// The line to send (with its newline).
    pub fn to_line(&self) -> String {
        let mut s = serde_json::to_string(self).unwrap_or_else(|e| {
            // Only a non-string map key could fail; answer with the reason.
            format!(
                r#"{{"v":{PROTOCOL_VERSION},"id":null,"error":{{"code":"internal","message":"cannot encode the answer: {}"}}}}"#,
                e.to_string().replace('"', "'")
            )
        });
        s.push('\n');
        s
    }
}

/// One update of a job, as streamed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateFrame {
    pub job: JobId,
    #[serde(flatten)]
    pub update: UpdateBody,
    /// The job's status after the update.
    pub status: Option<JobStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum UpdateBody {
    /// An event became durable.
    Recorded { event: JobEvent },
    /// An attempt of a step was handed to the fabric or the script runner.
    AttemptStarted {
        step: StepId,
        attempt: u32,
        key: IdemKey,
    },
    /// A step waits for an operator.
    AwaitingOperator { step: StepId },
}

impl From<&JobUpdate> for UpdateFrame {
    fn from(u: &JobUpdate) -> UpdateFrame {
        let update = match &u.update {
            Update::Recorded(ev) => UpdateBody::Recorded { event: ev.clone() },
            Update::AttemptStarted { step, attempt, key } => UpdateBody::AttemptStarted {
                step: *step,
                attempt: *attempt,
                key: key.clone(),
            },
            Update::AwaitingOperator { step } => UpdateBody::AwaitingOperator { step: *step },
        };
        UpdateFrame {
            job: u.job,
            update,
            status: u.status,
        }
    }
}

impl From<UpdateFrame> for JobUpdate {
    fn from(f: UpdateFrame) -> JobUpdate {
        let update = match f.update {
            UpdateBody::Recorded { event } => Update::Recorded(event),
            UpdateBody::AttemptStarted { step, attempt, key } => {
                Update::AttemptStarted { step, attempt, key }
            }
            UpdateBody::AwaitingOperator { step } => Update::AwaitingOperator { step },
        };
        JobUpdate {
            job: f.job,
            update,
            status: f.status,
        }
    }
}

/// A request the server accepted the shape of.
#[derive(Debug)]
pub struct Parsed {
    pub id: u64,
    pub op: Op,
    pub token: Option<String>,
}

/// Why a line is not a request: the error to answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The request id when it could be read.
    pub id: Option<u64>,
    pub code: &'static str,
    pub message: String,
}

const ENVELOPE: &[&str] = &["v", "id", "op", "args", "token"];

/// Parse and check one request line (without its newline). Every problem
/// is named: which field, what was expected.
pub fn parse_request(line: &[u8]) -> Result<Parsed, Invalid> {
    let bad = |id, code, message: String| Invalid { id, code, message };
    // An empty line is answered like any other bad request: a client that
    // sent one waits for an answer, and silence would hang it.
    if line.iter().all(u8::is_ascii_whitespace) {
        return Err(bad(
            None,
            codes::BAD_REQUEST,
            "empty request line: a request is a JSON object like {\"v\":1,\"id\":1,\"op\":\"jobs\"}"
                .into(),
        ));
    }
    let value: Value = serde_json::from_slice(line).map_err(|e| {
        bad(
            None,
            codes::BAD_JSON,
            format!("the request is not valid JSON: {e}"),
        )
    })?;
    let Value::Object(mut obj) = value else {
        return Err(bad(
            None,
            codes::BAD_JSON,
            "a request is a JSON object like {\"v\":1,\"id\":1,\"op\":\"jobs\"}".into(),
        ));
    };
    // The id first, so that every later error can be matched to it.
    let id = match obj.get("id") {
        Some(v) => Some(v.as_u64().ok_or_else(|| {
            bad(
                None,
                codes::BAD_REQUEST,
                format!("`id` must be an unsigned integer, not {v}"),
            )
        })?),
        None => None,
    };
    match obj.get("v") {
        Some(v) if v.as_u64() == Some(u64::from(PROTOCOL_VERSION)) => {}
        Some(v) => {
            return Err(bad(
                id,
                codes::UNSUPPORTED_VERSION,
                format!(
                    "protocol version {v} is not spoken here; this server speaks version {PROTOCOL_VERSION}"
                ),
            ));
        }
        None => {
            return Err(bad(
                id,
                codes::UNSUPPORTED_VERSION,
                format!("`v` (the protocol version, {PROTOCOL_VERSION}) is missing"),
            ));
        }
    }
    let Some(id) = id else {
        return Err(bad(None, codes::BAD_REQUEST, "`id` is missing".into()));
    };
    if let Some(unknown) = obj.keys().find(|k| !ENVELOPE.contains(&k.as_str())) {
        return Err(bad(
            Some(id),
            codes::BAD_REQUEST,
            format!(
                "unknown field `{unknown}`; a request has {}",
                ENVELOPE.join(", ")
            ),
        ));
    }
    let token = match obj.remove("token") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => {
            return Err(bad(
                Some(id),
                codes::BAD_REQUEST,
                format!("`token` must be a string, not {other}"),
            ));
        }
    };
    let op = match obj.remove("op") {
        Some(Value::String(s)) => s,
        Some(other) => {
            return Err(bad(
                Some(id),
                codes::BAD_REQUEST,
                format!("`op` must be a string, not {other}"),
            ));
        }
        None => {
            return Err(bad(
                Some(id),
                codes::BAD_REQUEST,
                "`op` is missing".to_string(),
            ));
        }
    };
    if !Op::NAMES.contains(&op.as_str()) {
        return Err(bad(
            Some(id),
            codes::UNKNOWN_OP,
            format!("unknown operation `{op}`; known: {}", Op::NAMES.join(", ")),
        ));
    }
    let args = match obj.remove("args") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(a @ Value::Object(_)) => a,
        Some(other) => {
            return Err(bad(
                Some(id),
                codes::BAD_REQUEST,
                format!("`args` must be an object, not {other}"),
            ));
        }
    };
    let mut tagged = Map::new();
    tagged.insert("op".into(), Value::String(op.clone()));
    tagged.insert("args".into(), args);
    let op: Op = serde_json::from_value(Value::Object(tagged)).map_err(|e| {
        bad(
            Some(id),
            codes::BAD_REQUEST,
            format!("bad arguments for `{op}`: {e}"),
        )
    })?;
    Ok(Parsed { id, op, token })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(line: &str) -> (&'static str, Option<u64>) {
        let e = parse_request(line.as_bytes()).expect_err(line);
        (e.code, e.id)
    }

    #[test]
    fn good_requests_parse() {
        let p = parse_request(br#"{"v":1,"id":4,"op":"status","args":{"job":3}}"#).unwrap();
        assert_eq!(p.id, 4);
        assert!(matches!(p.op, Op::Status { job: JobId(3) }));
        let p = parse_request(br#"{"v":1,"id":5,"op":"jobs"}"#).unwrap();
        assert!(matches!(p.op, Op::Jobs {}));
        let p = parse_request(
            br#"{"v":1,"id":6,"op":"retry","args":{"job":1,"step":"web/post/update-dns","by":"al"}}"#,
        )
        .unwrap();
        assert!(matches!(
            p.op,
            Op::Retry {
                step: StepRef::Key(_),
                ..
            }
        ));
        let p = parse_request(
            br#"{"v":1,"id":6,"op":"skip","args":{"job":1,"step":4,"by":"al"},"token":"t"}"#,
        )
        .unwrap();
        assert!(matches!(
            p.op,
            Op::Skip {
                step: StepRef::Id(4),
                ..
            }
        ));
        assert_eq!(p.token.as_deref(), Some("t"));
    }

    #[test]
    fn every_kind_of_bad_request_gets_its_code() {
        assert_eq!(code_of("{not json"), (codes::BAD_JSON, None));
        assert_eq!(code_of("[1,2]"), (codes::BAD_JSON, None));
        assert_eq!(
            code_of(r#"{"id":1,"op":"jobs"}"#),
            (codes::UNSUPPORTED_VERSION, Some(1))
        );
        assert_eq!(
            code_of(r#"{"v":2,"id":1,"op":"jobs"}"#),
            (codes::UNSUPPORTED_VERSION, Some(1))
        );
        assert_eq!(
            code_of(r#"{"v":1,"op":"jobs"}"#),
            (codes::BAD_REQUEST, None)
        );
        assert_eq!(
            code_of(r#"{"v":1,"id":-3,"op":"jobs"}"#),
            (codes::BAD_REQUEST, None)
        );
        assert_eq!(
            code_of(r#"{"v":1,"id":1,"op":"format_disk"}"#),
            (codes::UNKNOWN_OP, Some(1))
        );
        assert_eq!(
            code_of(r#"{"v":1,"id":1,"op":"jobs","extra":true}"#),
            (codes::BAD_REQUEST, Some(1))
        );
        assert_eq!(
            code_of(r#"{"v":1,"id":1,"op":"status","args":{"job":"three"}}"#),
            (codes::BAD_REQUEST, Some(1))
        );
        assert_eq!(
            code_of(r#"{"v":1,"id":1,"op":"status","args":{"job":1,"force":true}}"#),
            (codes::BAD_REQUEST, Some(1))
        );
        assert_eq!(
            code_of(r#"{"v":1,"id":1,"op":"status"}"#),
            (codes::BAD_REQUEST, Some(1))
        );
        assert_eq!(
            code_of(r#"{"v":1,"id":1,"op":"jobs","args":[]}"#),
            (codes::BAD_REQUEST, Some(1))
        );
    }

    use proptest::strategy::Strategy as _;

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(
            crate::proptest_cases(64)
        ))]

        /// Any bytes: an answer, never a panic; an error always has a code
        /// and a message.
        #[test]
        fn any_line_gets_an_answer(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            if let Err(e) = parse_request(&bytes) {
                proptest::prop_assert!(!e.code.is_empty() && !e.message.is_empty());
            }
        }

        /// A valid request with one field replaced by junk is refused with
        /// a located reason, or still valid; never a panic.
        #[test]
        fn damaged_requests_are_refused_cleanly(
            field in proptest::sample::select(vec!["v", "id", "op", "args", "token", "job", "step", "by"]),
            junk in proptest::prop_oneof![
                proptest::strategy::Just(Value::Null),
                proptest::num::i64::ANY.prop_map(Value::from),
                ".{0,20}".prop_map(Value::from),
                proptest::strategy::Just(serde_json::json!([1, {"a": null}])),
                proptest::strategy::Just(serde_json::json!({"nested": {"deep": [true]}})),
            ],
        ) {
            let mut v = serde_json::json!({
                "v": 1, "id": 3, "op": "retry",
                "args": {"job": 1, "step": "web/post/update-dns", "by": "al"},
            });
            if ["job", "step", "by"].contains(&field) {
                v["args"][field] = junk;
            } else {
                v[field] = junk;
            }
            let line = serde_json::to_vec(&v).unwrap();
            if let Err(e) = parse_request(&line) {
                proptest::prop_assert!(!e.message.is_empty());
            }
        }
    }

    #[test]
    fn requests_round_trip_through_the_parser() {
        let r = Request {
            v: PROTOCOL_VERSION,
            id: 9,
            op: Op::Cancel {
                job: JobId(2),
                by: "bob".into(),
            },
            token: Some("abc".into()),
        };
        let line = serde_json::to_string(&r).unwrap();
        let p = parse_request(line.as_bytes()).unwrap();
        assert_eq!(p.id, 9);
        assert_eq!(p.token.as_deref(), Some("abc"));
        assert!(matches!(p.op, Op::Cancel { job: JobId(2), .. }));
    }
}
