//! The local API: one engine, many clients.
//!
//! A long-running process (`drplan serve`, or a control plane) owns the
//! data directory's store and its [`Engine`]; other processes reach it
//! through [`server::Server`] with [`client::Client`]. The protocol
//! (newline-delimited JSON, versioned) is in [`proto`]; the security model
//! and examples in `docs/api.md`.
//!
//! [`Control`] is what a front end needs from an engine — submit, operator
//! actions, queries, a stream of updates — implemented both by the
//! in-process [`Engine`] and by the remote [`client::Client`], so the same
//! follower or renderer works over either.

pub mod client;
pub mod proto;
pub mod server;

use std::sync::Arc;

use async_trait::async_trait;
use thiserror::Error;

use crate::core::{JobContext, JobEvent, JobState, JobStatus};
use crate::journal::{JobMeta, JournalError, PlanRecord};
use crate::plan::compile::StepId;
use crate::runtime::{Engine, EngineError, JobUpdate, JobUpdates, Submission};
use crate::store::{JobId, codec};

pub use proto::{JobPlan, PROTOCOL_VERSION, codes};

/// The file name of the Unix socket inside a data directory.
pub const SOCKET_FILE: &str = "drplan.sock";

/// What an API call fails with: a coded error (from the engine or the
/// server) or a broken connection.
#[derive(Debug, Clone, Error)]
pub enum ApiError {
    /// The engine or the server answered with an error ([`codes`]).
    #[error("{message}")]
    Refused { code: String, message: String },
    /// The connection failed, timed out or carried something that is not
    /// this protocol.
    #[error("{0}")]
    Connection(String),
}

impl ApiError {
    pub fn refused(code: &str, message: impl Into<String>) -> ApiError {
        ApiError::Refused {
            code: code.to_string(),
            message: message.into(),
        }
    }

    /// The error code ([`codes`]); `connection` for a broken connection.
    pub fn code(&self) -> &str {
        match self {
            ApiError::Refused { code, .. } => code,
            ApiError::Connection(_) => "connection",
        }
    }

    /// The core or the engine said no to a well-formed request (a problem
    /// of the job, not of the caller or the connection).
    pub fn is_refusal(&self) -> bool {
        matches!(self.code(), codes::REFUSED | codes::UNKNOWN_JOB)
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        let code = match &e {
            EngineError::UnknownJob(_) | EngineError::Journal(JournalError::UnknownJob(_)) => {
                codes::UNKNOWN_JOB
            }
            EngineError::Journal(
                JournalError::VmBusy { .. }
                | JournalError::NotReady(_)
                | JournalError::Rejected(_)
                | JournalError::Finished { .. },
            ) => codes::REFUSED,
            EngineError::ShuttingDown => codes::SHUTTING_DOWN,
            _ => codes::INTERNAL,
        };
        ApiError::refused(code, e.to_string())
    }
}

/// A stream of job updates, from an in-process engine or a server.
pub enum Updates {
    Local(JobUpdates),
    Remote(client::RemoteUpdates),
}

impl Updates {
    /// The next update; `None` once the engine (or the connection to it)
    /// is gone.
    pub async fn next(&mut self) -> Option<JobUpdate> {
        match self {
            Updates::Local(u) => u.next().await,
            Updates::Remote(u) => u.next().await,
        }
    }
}

/// What a front end needs from an engine, local or remote.
#[async_trait]
pub trait Control: Send + Sync {
    /// Submit a job. `faults`: on a simulated fabric, replace the faults in
    /// force first (`None` keeps them). An in-process [`Engine`] takes no
    /// faults: its owner configures its fabric.
    async fn submit(&self, sub: Submission, faults: Option<Vec<String>>)
    -> Result<JobId, ApiError>;
    async fn answer_manual(
        &self,
        job: JobId,
        step: StepId,
        done: bool,
        by: &str,
        note: Option<String>,
    ) -> Result<(), ApiError>;
    async fn retry(&self, job: JobId, step: StepId, by: &str) -> Result<(), ApiError>;
    async fn skip(&self, job: JobId, step: StepId, by: &str) -> Result<(), ApiError>;
    async fn cancel(&self, job: JobId, by: &str) -> Result<(), ApiError>;
    async fn complete_test(&self, job: JobId, notes: &str, by: &str) -> Result<(), ApiError>;
    async fn start_now(&self, job: JobId, by: &str) -> Result<(), ApiError>;
    async fn status(&self, job: JobId) -> Result<Option<JobStatus>, ApiError>;
    /// Why the engine stopped issuing work (its store could not write:
    /// [`Engine::halted`]); `None` while healthy, and through the API (a
    /// server's halt reaches its clients as refusals).
    fn halted(&self) -> Option<String> {
        None
    }
    async fn job(&self, job: JobId) -> Result<Option<JobState>, ApiError>;
    /// Every job's summary, oldest first.
    async fn jobs(&self) -> Result<Vec<JobMeta>, ApiError>;
    async fn meta(&self, job: JobId) -> Result<Option<JobMeta>, ApiError>;
    async fn events(&self, job: JobId) -> Result<Vec<JobEvent>, ApiError>;
    /// The validated plan a job runs, its text and operation.
    async fn plan(&self, job: JobId) -> Result<Option<JobPlan>, ApiError>;
    /// The job's compiled steps (to name them by key).
    async fn context(&self, job: JobId) -> Result<Arc<JobContext>, ApiError>;
    /// Updates of one job (`Some`) or of every job from now on. Subscribe
    /// before acting on a job, so no update falls in between.
    async fn subscribe(&self, job: Option<JobId>) -> Result<Updates, ApiError>;
}

#[async_trait]
impl Control for Engine {
    fn halted(&self) -> Option<String> {
        Engine::halted(self)
    }

    async fn submit(
        &self,
        sub: Submission,
        faults: Option<Vec<String>>,
    ) -> Result<JobId, ApiError> {
        if faults.is_some() {
            return Err(ApiError::refused(
                codes::BAD_REQUEST,
                "this engine takes no injected faults",
            ));
        }
        Ok(Engine::submit(self, sub).await?)
    }

    async fn answer_manual(
        &self,
        job: JobId,
        step: StepId,
        done: bool,
        by: &str,
        note: Option<String>,
    ) -> Result<(), ApiError> {
        Ok(Engine::answer_manual(self, job, step, done, by, note).await?)
    }

    async fn retry(&self, job: JobId, step: StepId, by: &str) -> Result<(), ApiError> {
        Ok(Engine::retry(self, job, step, by).await?)
    }

    async fn skip(&self, job: JobId, step: StepId, by: &str) -> Result<(), ApiError> {
        Ok(Engine::skip(self, job, step, by).await?)
    }

    async fn cancel(&self, job: JobId, by: &str) -> Result<(), ApiError> {
        Ok(Engine::cancel(self, job, by).await?)
    }

    async fn complete_test(&self, job: JobId, notes: &str, by: &str) -> Result<(), ApiError> {
        Ok(Engine::complete_test(self, job, notes, by).await?)
    }

    async fn start_now(&self, job: JobId, by: &str) -> Result<(), ApiError> {
        Ok(Engine::start_now(self, job, by).await?)
    }

    async fn status(&self, job: JobId) -> Result<Option<JobStatus>, ApiError> {
        Ok(Engine::status(self, job).await?)
    }

    async fn job(&self, job: JobId) -> Result<Option<JobState>, ApiError> {
        Ok(Engine::job(self, job).await?)
    }

    async fn jobs(&self) -> Result<Vec<JobMeta>, ApiError> {
        let mut metas = Engine::jobs(self).await?;
        metas.sort_by_key(|m| m.id);
        Ok(metas)
    }

    async fn meta(&self, job: JobId) -> Result<Option<JobMeta>, ApiError> {
        let store = self.journal().store().clone();
        let read = tokio::task::spawn_blocking(move || -> Result<Option<JobMeta>, ApiError> {
            let Some(bytes) = store.job_meta(job).map_err(internal)? else {
                return Ok(None);
            };
            codec::decode::<JobMeta>(&bytes)
                .map(Some)
                .map_err(|e| internal(format!("job {job}: damaged record: {e}")))
        });
        read.await.map_err(internal)?
    }

    async fn events(&self, job: JobId) -> Result<Vec<JobEvent>, ApiError> {
        Ok(Engine::events(self, job).await?)
    }

    async fn plan(&self, job: JobId) -> Result<Option<JobPlan>, ApiError> {
        let Some(meta) = Control::meta(self, job).await? else {
            return Ok(None);
        };
        let store = self.journal().store().clone();
        let read = tokio::task::spawn_blocking(move || -> Result<JobPlan, ApiError> {
            let model = store
                .text(&meta.model_key)
                .map_err(internal)?
                .ok_or_else(|| internal(format!("job {job}: its plan model is missing")))?;
            let record: PlanRecord = codec::decode(model.as_bytes())
                .map_err(|e| internal(format!("job {job}: damaged plan model: {e}")))?;
            let plan_text = store
                .text(&meta.plan_hash)
                .map_err(internal)?
                .unwrap_or_default();
            Ok(JobPlan {
                plan: record.plan,
                plan_text,
                operation: meta.operation,
            })
        });
        read.await.map_err(internal)?.map(Some)
    }

    async fn context(&self, job: JobId) -> Result<Arc<JobContext>, ApiError> {
        Ok(Engine::context(self, job).await?)
    }

    async fn subscribe(&self, job: Option<JobId>) -> Result<Updates, ApiError> {
        Ok(Updates::Local(match job {
            Some(j) => Engine::subscribe(self, j),
            None => Engine::subscribe_all(self),
        }))
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::refused(codes::INTERNAL, e.to_string())
}
