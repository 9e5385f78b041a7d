//! Hosting the engine in a CLI process: open the data directory's store,
//! build the simulated fabric from the inventory, start the [`Engine`], and
//! shut it all down again when the command is done.
//!
//! The simulated world (the `SimFabric`) is persisted in the store itself:
//! the engine starts with [`Engine::start_persisting`], which restores the
//! world saved in the store (a full snapshot plus deltas) before any job
//! resumes, and writes each outcome's change to the world in the same atomic
//! batch as the outcome. So a planned failover halted by `run` and continued
//! by `drplan retry` in another process, or a process killed at any moment,
//! meets exactly the world its job log describes.
//!
//! The faults `run --inject` put in force are kept beside the store in
//! `sim-state.json` (with a best-effort copy of the world, used only when
//! the store holds no full snapshot yet: the engine's start then records
//! it in the store, since a killed process may have saved it ahead of the
//! store's deltas), so a `fail-once` still fires in the command that
//! reaches its step.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use drplan_engine::api::client::{Client, ConnectError, Timeouts};
use drplan_engine::api::server::{self, Server, ServerConfig};
use drplan_engine::api::{ApiError, Control, SOCKET_FILE, Updates};
use drplan_engine::fabric::{
    FabricState, FabricStateError, FaultSet, SimConfig, SimFabric, SimState,
};
use drplan_engine::journal::{JobMeta, PlanRecord};
use drplan_engine::plan::model::{Inventory, Plan};
use drplan_engine::runtime::{Engine, EngineConfig, FabricPersistence, SystemClock};
use drplan_engine::script::{RunnerConfig, ScriptRunner};
use drplan_engine::store::sled_store::{SledStore, default_data_dir, lock_holder};
use drplan_engine::store::{JobId, Store, StoreError, codec};

use super::Exit;

/// The snapshot of the simulated world, beside the store's own files.
const SIM_FILE: &str = "sim-state.json";
/// Per data directory: the shipped scripts keep their "already done for
/// this idempotency key" markers here, so job ids of another data
/// directory never collide with them.
const SCRIPTS_DIR: &str = "scripts";

/// A failure that ends the command: the message was already printed.
pub type Fail = Exit;

/// Resolve `--data-dir`, else `$DRPLAN_DATA_DIR`, else the default.
pub fn data_dir(given: Option<&Path>) -> Result<PathBuf, Fail> {
    match given {
        Some(d) => Ok(d.to_path_buf()),
        None => default_data_dir().map_err(|e| {
            eprintln!("drplan: {e}");
            Exit::CouldNotRun
        }),
    }
}

/// The summary record of a job, read straight from the store.
pub fn job_meta(store: &dyn Store, job: JobId) -> Result<Option<JobMeta>, Fail> {
    let bytes = store.job_meta(job).map_err(|e| {
        eprintln!("drplan: {e}");
        Exit::CouldNotRun
    })?;
    bytes
        .map(|b| {
            codec::decode::<JobMeta>(&b).map_err(|e| {
                eprintln!("drplan: job {job}: damaged record: {e}");
                Exit::CouldNotRun
            })
        })
        .transpose()
}

/// Every job of the store, oldest first.
pub fn all_jobs(store: &dyn Store) -> Result<Vec<JobMeta>, Fail> {
    let rows = store.jobs().map_err(|e| {
        eprintln!("drplan: {e}");
        Exit::CouldNotRun
    })?;
    let mut metas = Vec::new();
    for (id, bytes) in rows {
        match codec::decode::<JobMeta>(&bytes) {
            Ok(m) => metas.push(m),
            Err(e) => {
                eprintln!("drplan: job {id}: damaged record: {e}");
                return Err(Exit::CouldNotRun);
            }
        }
    }
    metas.sort_by_key(|m| m.id);
    Ok(metas)
}

/// The validated plan a job runs, as the store keeps it (plan files may
/// have changed or gone since).
pub fn job_plan(store: &dyn Store, meta: &JobMeta) -> Result<Plan, Fail> {
    let text = store
        .text(&meta.model_key)
        .map_err(|e| {
            eprintln!("drplan: {e}");
            Exit::CouldNotRun
        })?
        .ok_or_else(|| {
            eprintln!(
                "drplan: job {}: its plan model is missing from the store",
                meta.id
            );
            Exit::CouldNotRun
        })?;
    let plan = codec::decode::<PlanRecord>(text.as_bytes())
        .map(|r| r.plan)
        .map_err(|e| {
            eprintln!("drplan: job {}: damaged plan model: {e}", meta.id);
            Exit::CouldNotRun
        })?;
    // Compiling an inconsistent (damaged) model would panic.
    plan.check().map_err(|e| {
        eprintln!("drplan: job {}: damaged plan model: {e}", meta.id);
        Exit::CouldNotRun
    })?;
    Ok(plan)
}

/// Load an inventory file for the simulated fabric: `--fabric` when given,
/// else the one the job's plan names.
pub fn load_inventory(given: Option<&Path>, plan: &Plan) -> Result<Inventory, Fail> {
    let Some(path) = given.or(plan.fabric_path.as_deref()) else {
        eprintln!(
            "drplan: plan `{}` names no inventory; pass --fabric FILE (the one it ran with)",
            plan.name
        );
        return Err(Exit::CouldNotRun);
    };
    let (inv, _, diags) = drplan_engine::plan::load_fabric(path);
    match inv {
        Some(inv) => Ok(inv),
        None => {
            eprintln!("drplan: cannot use the inventory `{}`:", path.display());
            for d in diags {
                eprintln!("  {}:{}:{}: {}", d.file, d.line, d.column, d.message);
            }
            Err(Exit::Problems)
        }
    }
}

/// How to build the simulated fabric.
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub time_scale: f64,
    /// `Some`: the faults of a new `run` (replacing the saved ones); `None`:
    /// keep the faults in force (an operator command continuing a job).
    pub faults: Option<FaultSet>,
}

/// What the snapshot file holds: the world and the faults in force, so an
/// injected `fail-once` still fires in the command that reaches its step.
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedWorld {
    state: SimState,
    faults: FaultSet,
    /// The simulated replication link (`drplan protect --bandwidth`), kept
    /// so that a protect job resumed by a later command copies at the same
    /// speed. Absent in older files: the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bandwidth_mbps: Option<f64>,
}

/// The simulated world of a data directory and where it is saved.
pub struct SimWorld {
    pub fabric: Arc<SimFabric>,
    file: PathBuf,
}

impl SimWorld {
    /// The world saved in `dir`, or a fresh one from the inventory. A
    /// snapshot that no longer fits the inventory is an error rather than a
    /// silent fresh start (VMs failed over in it would be forgotten).
    pub fn load(dir: &Path, inventory: &Inventory, opts: &SimOptions) -> Result<SimWorld, Fail> {
        Self::load_with_bandwidth(dir, inventory, opts, None)
    }

    /// [`SimWorld::load`] with the replication link's bandwidth (Mbit/s):
    /// `Some` sets it (and it is saved with the world), `None` keeps the
    /// saved one, else the default.
    pub fn load_with_bandwidth(
        dir: &Path,
        inventory: &Inventory,
        opts: &SimOptions,
        bandwidth_mbps: Option<f64>,
    ) -> Result<SimWorld, Fail> {
        let file = dir.join(SIM_FILE);
        let mut config = SimConfig::default().with_time_scale(opts.time_scale);
        if let Some(b) = bandwidth_mbps {
            config.bandwidth_mbps = b;
        }
        let fabric = match std::fs::read(&file) {
            Ok(bytes) => {
                let saved: SavedWorld = serde_json::from_slice(&bytes).map_err(|e| {
                    eprintln!("drplan: damaged simulated fabric `{}`: {e}", file.display());
                    Exit::CouldNotRun
                })?;
                if let (None, Some(b)) = (bandwidth_mbps, saved.bandwidth_mbps) {
                    config.bandwidth_mbps = b;
                }
                let faults = opts.faults.clone().unwrap_or(saved.faults);
                SimFabric::restore(inventory, config, faults, saved.state).map_err(|e| {
                    eprintln!(
                        "drplan: the simulated fabric `{}` does not fit the inventory: {e}",
                        file.display()
                    );
                    Exit::CouldNotRun
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                SimFabric::new(inventory, config, opts.faults.clone().unwrap_or_default())
            }
            Err(e) => {
                eprintln!("drplan: cannot read `{}`: {e}", file.display());
                return Err(Exit::CouldNotRun);
            }
        };
        Ok(SimWorld {
            fabric: Arc::new(fabric),
            file,
        })
    }

    /// Write the world (temporary file + rename, so a reader never sees half
    /// a snapshot). Failures are reported, not fatal: the store holds the
    /// job's truth.
    pub fn save(&self) {
        let saved = SavedWorld {
            state: self.fabric.snapshot(),
            faults: self.fabric.faults(),
            bandwidth_mbps: Some(self.fabric.config().bandwidth_mbps),
        };
        let tmp = self.file.with_extension("json.tmp");
        let result = serde_json::to_vec(&saved)
            .map_err(std::io::Error::other)
            .and_then(|bytes| {
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                // Private from creation, like every file of the directory.
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&tmp)?
                    .write_all(&bytes)
            })
            .and_then(|()| std::fs::rename(&tmp, &self.file));
        match result {
            Ok(()) => {}
            // A full disk: the store failed too, and the command's last line
            // says what to free (`progress::store_failed_line`); the
            // simulator's injected faults are what is lost. `-v` shows it.
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => {
                let _ = std::fs::remove_file(&tmp);
                tracing::warn!(
                    target: drplan_engine::STORE_FAILED_TARGET,
                    file = %self.file.display(),
                    error = %e,
                    "cannot save the simulated fabric's injected faults"
                );
            }
            Err(e) => eprintln!(
                "drplan: warning: cannot save the simulated fabric to `{}`: {e}",
                self.file.display()
            ),
        }
    }
}

/// The environment variable that keeps the simulated fabric's operation-key
/// records of finished jobs (`1`): an audit of every key the fabric
/// executed and how often each was submitted, which the crash tests and the
/// crash soak read from the store after the run. Off by default: the
/// records of a finished job are never used again and pile up (four per VM
/// per failover).
pub const KEEP_OP_KEYS_ENV: &str = "DRPLAN_SIM_KEEP_OP_KEYS";

fn keep_op_keys() -> bool {
    std::env::var_os(KEEP_OP_KEYS_ENV).is_some_and(|v| v == "1")
}

/// The simulated fabric's persistence, except that finished jobs' key
/// records are kept (see [`KEEP_OP_KEYS_ENV`]).
struct KeepOpKeys(Arc<SimFabric>);

impl FabricState for KeepOpKeys {
    fn take_delta(&self) -> Option<Vec<u8>> {
        FabricState::take_delta(&*self.0)
    }

    fn full(&self) -> Vec<u8> {
        FabricState::full(&*self.0)
    }

    fn restore_from(
        &self,
        full: Option<Vec<u8>>,
        deltas: Vec<Vec<u8>>,
    ) -> Result<(), FabricStateError> {
        self.0.restore_from(full, deltas)
    }

    fn forget_keys(&self, _prefix: &str) -> usize {
        0
    }
}

/// A running engine over a data directory.
pub struct Host {
    pub engine: Arc<Engine>,
    pub world: SimWorld,
    /// The local API this process offers while it holds the store (see
    /// [`Host::start`]); `None` for `drplan serve`, which runs its own.
    api: Option<LocalApi>,
}

/// The local API of a command that holds the data directory: other
/// terminals' `show`, `jobs`, `report`, `ack`, `cancel`, ... reach this
/// process's engine through `<dir>/drplan.sock` instead of being refused.
struct LocalApi {
    server: Arc<Server>,
    task: tokio::task::JoinHandle<()>,
    socket: PathBuf,
}

impl Drop for LocalApi {
    fn drop(&mut self) {
        self.server.shutdown();
        self.task.abort();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// How long a command that ends waits for other terminals' connections to
/// its local API to close.
const API_DRAIN: Duration = Duration::from_secs(10);

/// This process's command: `drplan run`.
fn this_subcommand() -> String {
    let sub = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_default();
    format!("`drplan {sub}`")
}

/// How this process names itself to other terminals: `drplan run` (pid N).
fn this_command() -> String {
    format!("{} (pid {})", this_subcommand(), std::process::id())
}

impl Host {
    /// Start the engine: it resumes every unfinished job of the store. While
    /// it runs, it offers the local API on `<dir>/drplan.sock` to the other
    /// commands of this user (queries and operator actions; a submission
    /// is refused with what to do instead, since this process ends with
    /// its own job and would leave a new one unexecuted until the next
    /// command).
    pub async fn start(
        dir: &Path,
        store: Arc<SledStore>,
        inventory: Inventory,
        world: SimWorld,
    ) -> Result<Host, Fail> {
        let mut host = Host::start_bare(dir, store, inventory, world).await?;
        let socket = dir.join(SOCKET_FILE);
        let config = ServerConfig {
            data_dir: Some(dir.to_path_buf()),
            refuse_submit: Some(format!(
                "the data directory is held by {}, which ends with its own job and takes no \
                 new one; wait for it to finish and run the command again (a `drplan serve` on \
                 the data directory takes jobs from every terminal)",
                this_command()
            )),
            ..ServerConfig::default()
        };
        match server::bind_unix(&socket) {
            Ok(listener) => {
                let server = Arc::new(Server::new(host.engine.clone(), config));
                let s = server.clone();
                let task = tokio::spawn(async move { s.serve_unix(listener).await });
                host.api = Some(LocalApi {
                    server,
                    task,
                    socket,
                });
            }
            // Not fatal: this command still does its work; other terminals
            // are told the store is in use.
            Err(e) => tracing::warn!(
                error = %e,
                socket = %socket.display(),
                "cannot offer the local API to other terminals"
            ),
        }
        Ok(host)
    }

    /// [`Host::start`] without the local API (`drplan serve` runs its own).
    pub async fn start_bare(
        dir: &Path,
        store: Arc<SledStore>,
        inventory: Inventory,
        world: SimWorld,
    ) -> Result<Host, Fail> {
        let scratch = dir.join(SCRIPTS_DIR);
        let private = {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&scratch)
        };
        if let Err(e) = private {
            eprintln!("drplan: cannot create `{}`: {e}", scratch.display());
            return Err(Exit::CouldNotRun);
        }
        let mut config = RunnerConfig::from_process_env();
        config.scratch_dir = scratch.clone();
        config.inherited_env.retain(|(k, _)| k != "TMPDIR");
        config
            .inherited_env
            .push(("TMPDIR".into(), scratch.into_os_string()));
        let state: Arc<dyn FabricState> = if keep_op_keys() {
            Arc::new(KeepOpKeys(world.fabric.clone()))
        } else {
            world.fabric.clone()
        };
        let engine = Engine::start_persisting(
            EngineConfig {
                store,
                fabric: world.fabric.clone(),
                scripts: ScriptRunner::new(config),
                clock: Arc::new(SystemClock),
                max_concurrent_vm_ops: 8,
                inventory: Some(inventory),
            },
            FabricPersistence::new(state),
        )
        .await
        .map_err(|e| {
            eprintln!("drplan: cannot start the engine: {e}");
            Exit::CouldNotRun
        })?;
        Ok(Host {
            engine: Arc::new(engine),
            world,
            api: None,
        })
    }

    /// The engine and the world, for a host that serves them its own way.
    pub fn into_parts(mut self) -> (Arc<Engine>, SimWorld) {
        drop(self.api.take());
        (self.engine, self.world)
    }

    /// Stop the engine (in-flight attempts are dropped and re-issued by the
    /// next command) and save the simulated world.
    pub async fn stop(mut self) {
        if let Some(api) = self.api.take() {
            // No new connections; those of other terminals still following
            // a job (a `cancel` of this command's job settles with it) are
            // answered until they close, for a bounded time, so they do not
            // lose the engine mid-answer.
            api.task.abort();
            let _ = std::fs::remove_file(&api.socket);
            let deadline = tokio::time::Instant::now() + API_DRAIN;
            while api.server.active_connections() > 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            api.server.shutdown();
        }
        // Bounded: a stuck script must not keep the prompt from returning.
        let _ = tokio::time::timeout(Duration::from_secs(10), self.engine.shutdown()).await;
        self.world.save();
    }
}

/// The async runtime of one command (two workers: scripts and VM
/// operations overlap, the machine is shared).
pub fn runtime() -> Result<tokio::runtime::Runtime, Fail> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("drplan: cannot start the async runtime: {e}");
            Exit::CouldNotRun
        })
}

/// Open the store of `dir` in this process, for the commands that need the
/// store or the simulated world itself (protection management, `vms`,
/// `recovery-points`, `estimate`). The local API does not carry them yet,
/// so while another process holds the data directory they exit 2 naming
/// the holder and exactly what to do: a command that ends by itself is
/// waited for; a `drplan serve` is stopped (its unfinished jobs resume at
/// the next start) and started again afterwards.
pub fn open_store(dir: &Path) -> Result<Arc<SledStore>, Fail> {
    SledStore::open(dir).map(Arc::new).map_err(|e| {
        match e {
            StoreError::Locked { .. } => {
                let holder = lock_holder(dir);
                let serving = holder.as_deref().is_some_and(held_by_serve);
                let who = holder.map(|h| format!(" ({h})")).unwrap_or_default();
                let this = this_subcommand();
                if serving {
                    eprintln!(
                        "drplan: the data directory {} is held by a `drplan serve`{who}; {this} \
                         does not go through it yet: stop the server (Ctrl-C or SIGTERM; its \
                         unfinished jobs resume when it starts again), run this command, then \
                         start the server again",
                        dir.display()
                    );
                } else {
                    eprintln!(
                        "drplan: the data directory {} is in use by another drplan process{who}; \
                         {this} needs the store itself: wait for that process to finish and try \
                         again",
                        dir.display()
                    );
                }
            }
            e => eprintln!("drplan: {e}"),
        }
        Exit::CouldNotRun
    })
}

/// The log of a `drplan serve` that `run --detach` started, in the data
/// directory.
pub const DETACHED_LOG: &str = "serve.log";
/// How long a server `run --detach` started stays up without an unfinished
/// job (`serve --exit-when-idle`).
pub const DETACHED_IDLE_EXIT: &str = "60s";
/// How long `run --detach` waits for the server it started to answer.
const DETACHED_START: Duration = Duration::from_secs(30);

/// For `run --detach`: make sure an engine that outlives this command
/// holds `dir`. A process already answering on the socket is used as it is
/// (a `drplan serve` takes the job; a command hosting the engine refuses a
/// submission and says what to do). Otherwise a `drplan serve` is started
/// in the background (its own process group, so the terminal's Ctrl-C does
/// not stop it; output appended to `<dir>/serve.log`) and awaited until it
/// answers. If it cannot start (the store is in use by a command that
/// serves nothing, say), the caller's [`Session::open`] tells why.
pub async fn ensure_server(dir: &Path, fabric: &Path, time_scale: f64) -> Result<(), Fail> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    use std::os::unix::process::CommandExt;
    if dir.join(SOCKET_FILE).exists() && Client::connect_dir(dir, Timeouts::default()).await.is_ok()
    {
        return Ok(());
    }
    let fail = |what: String| {
        eprintln!("drplan: cannot start `drplan serve` for --detach: {what}");
        Exit::CouldNotRun
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| fail(format!("cannot create `{}`: {e}", dir.display())))?;
    let log_path = dir.join(DETACHED_LOG);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log_path)
        .map_err(|e| fail(format!("cannot open `{}`: {e}", log_path.display())))?;
    let exe = std::env::current_exe().map_err(|e| fail(e.to_string()))?;
    let err_log = log
        .try_clone()
        .map_err(|e| fail(format!("cannot open `{}`: {e}", log_path.display())))?;
    let mut child = std::process::Command::new(exe)
        .arg("serve")
        .arg("--data-dir")
        .arg(dir)
        .arg("--fabric")
        .arg(fabric)
        .arg("--time-scale")
        .arg(time_scale.to_string())
        // A server nobody asked for by name never outlives its work.
        .arg("--exit-when-idle")
        .arg(DETACHED_IDLE_EXIT)
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(err_log)
        .process_group(0)
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    let deadline = tokio::time::Instant::now() + DETACHED_START;
    loop {
        if dir.join(SOCKET_FILE).exists()
            && let Ok(c) = Client::connect_dir(dir, Timeouts::default()).await
        {
            eprintln!(
                "drplan: started `drplan serve` (pid {}) on {} to run the job; it keeps running                  (log: {}; stop it with `kill {}`)",
                c.hello().pid,
                dir.display(),
                log_path.display(),
                c.hello().pid
            );
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            // It could not start; what it said is in the log, and the
            // session's open says who holds the store.
            tracing::info!(%status, log = %log_path.display(), "the detached server ended at once");
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(fail(format!(
                "it did not answer within {} s (see {})",
                DETACHED_START.as_secs(),
                log_path.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether a lock holder's text names a `drplan serve`.
fn held_by_serve(holder: &str) -> bool {
    held_by_drplan(holder) && holder.split_whitespace().skip(3).any(|w| w == "serve")
}

/// How long a command waits for a holder that is starting (it holds the
/// store but has not bound its socket yet) before saying the store is busy.
const SERVER_START_GRACE: Duration = Duration::from_secs(3);
/// How long a command keeps trying a server that answers `busy`.
const BUSY_RETRY: Duration = Duration::from_secs(30);

/// Where a command's engine is: a `drplan serve` on the data directory
/// (reached through its socket), or this process with the store opened.
pub enum Session {
    Local(Arc<SledStore>),
    Remote(Box<Client>),
}

impl Session {
    /// Reach the process that holds the data directory (a `drplan serve`,
    /// or any command hosting the engine: each offers the local API while
    /// it runs), else open the store here. Never waits long: a socket that
    /// nobody answers on is stale (a killed holder); a busy server is tried
    /// again with back-off for at most [`BUSY_RETRY`], saying why; a store
    /// locked by a process that serves nothing is "in use" (exit 2, naming
    /// the holder and what to do).
    pub async fn open(dir: &Path) -> Result<Session, Fail> {
        Session::open_with(dir, SledStore::open).await
    }

    /// [`Session::open`] for the commands that only read (`show`, `jobs`,
    /// `report`, ...): a store that cannot be opened in place because its
    /// directory is read-only is read from a private copy
    /// ([`SledStore::open_for_reading`]).
    pub async fn open_reading(dir: &Path) -> Result<Session, Fail> {
        Session::open_with(dir, SledStore::open_for_reading).await
    }

    async fn open_with(
        dir: &Path,
        open: fn(&Path) -> Result<SledStore, StoreError>,
    ) -> Result<Session, Fail> {
        let deadline = tokio::time::Instant::now() + SERVER_START_GRACE;
        let mut busy_until = None;
        let mut backoff = Duration::from_millis(100);
        loop {
            if dir.join(SOCKET_FILE).exists() {
                match Client::connect_dir(dir, Timeouts::default()).await {
                    Ok(c) => {
                        tracing::info!(
                            pid = c.hello().pid,
                            "talking to the process that holds the data directory"
                        );
                        return Ok(Session::Remote(Box::new(c)));
                    }
                    Err(e @ ConnectError::Unauthorized { .. }) => {
                        eprintln!("drplan: {e}");
                        return Err(Exit::CouldNotRun);
                    }
                    Err(ConnectError::Busy { message, .. }) => {
                        let now = tokio::time::Instant::now();
                        let until = *busy_until.get_or_insert_with(|| {
                            eprintln!(
                                "drplan: the engine holding {} is busy ({message}); trying again \
                                 for up to {} s",
                                dir.display(),
                                BUSY_RETRY.as_secs()
                            );
                            now + BUSY_RETRY
                        });
                        if now >= until {
                            eprintln!(
                                "drplan: the engine holding {} is still busy after {} s \
                                 ({message}); try again when its load is lower",
                                dir.display(),
                                BUSY_RETRY.as_secs()
                            );
                            return Err(Exit::CouldNotRun);
                        }
                        tokio::time::sleep(backoff.min(until - now)).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                        continue;
                    }
                    // A socket left by a killed holder, or one that hangs:
                    // the store's lock says which.
                    Err(e) => tracing::info!(error = %e, "no holder answers; opening the store"),
                }
            }
            match open(dir) {
                Ok(s) => return Ok(Session::Local(Arc::new(s))),
                Err(StoreError::Locked { .. }) => {
                    let holder = lock_holder(dir);
                    let drplan = holder.as_deref().is_some_and(held_by_drplan);
                    if drplan && tokio::time::Instant::now() < deadline {
                        // A holder between taking the lock and binding its
                        // socket: give it a moment.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    let who = holder.map(|h| format!(" ({h})")).unwrap_or_default();
                    if dir.join(SOCKET_FILE).exists() {
                        eprintln!(
                            "drplan: the data directory {} is held by a drplan process{who} that \
                             does not answer on {}; wait for it (or stop it: unfinished jobs \
                             resume at the next command) and try again",
                            dir.display(),
                            dir.join(SOCKET_FILE).display()
                        );
                    } else {
                        eprintln!(
                            "drplan: the data directory {} is in use by another drplan process{who}, \
                             which does not serve other commands; wait for it to finish and try \
                             again",
                            dir.display()
                        );
                    }
                    return Err(Exit::CouldNotRun);
                }
                Err(e) if e.is_read_only() => {
                    eprintln!(
                        "drplan: {e}\ndrplan: the data directory {} cannot be written: this \
                         command changes jobs and needs it writable (`show`, `jobs`, `report`, \
                         `history`, `plans` and `store check` still read it)",
                        dir.display()
                    );
                    return Err(Exit::CouldNotRun);
                }
                Err(e) => {
                    eprintln!("drplan: {e}");
                    return Err(Exit::CouldNotRun);
                }
            }
        }
    }

    pub fn is_remote(&self) -> bool {
        matches!(self, Session::Remote(_))
    }

    /// The summary record of a job.
    pub async fn job_meta(&self, job: JobId) -> Result<Option<JobMeta>, Fail> {
        match self {
            Session::Local(store) => job_meta(store.as_ref(), job),
            Session::Remote(c) => c.meta(job).await.map_err(api_fail),
        }
    }

    /// Every job, oldest first.
    pub async fn all_jobs(&self) -> Result<Vec<JobMeta>, Fail> {
        match self {
            Session::Local(store) => all_jobs(store.as_ref()),
            Session::Remote(c) => c.jobs().await.map_err(api_fail),
        }
    }

    /// The validated plan a job runs and its text.
    pub async fn job_plan(&self, meta: &JobMeta) -> Result<(Plan, String), Fail> {
        match self {
            Session::Local(store) => {
                let plan = job_plan(store.as_ref(), meta)?;
                let text = store
                    .text(&meta.plan_hash)
                    .map_err(|e| {
                        eprintln!("drplan: {e}");
                        Exit::CouldNotRun
                    })?
                    .unwrap_or_default();
                Ok((plan, text))
            }
            Session::Remote(c) => match c.plan(meta.id).await.map_err(api_fail)? {
                Some(p) => Ok((p.plan, p.plan_text)),
                None => {
                    eprintln!("drplan: job {} does not exist", meta.id);
                    Err(Exit::CouldNotRun)
                }
            },
        }
    }

    /// The engine to act through: the server's, or one started here with
    /// the world `load` builds (called only when hosting locally).
    pub async fn engine(
        self,
        dir: &Path,
        load: impl FnOnce() -> Result<(Inventory, SimWorld), Fail>,
    ) -> Result<Running, Fail> {
        match self {
            Session::Remote(c) => Ok(Running::Remote(c)),
            Session::Local(store) => {
                let (inventory, world) = load()?;
                Ok(Running::Local(
                    Host::start(dir, store, inventory, world).await?,
                ))
            }
        }
    }
}

impl Session {
    /// The engine that continues a job of `plan`: the server's, or one
    /// hosted here on the simulated world of the plan's inventory with the
    /// faults already in force. Subscribed to every job's updates before
    /// anything is done, so nothing an action causes is missed.
    pub async fn follow_engine(
        self,
        dir: &Path,
        fabric: Option<&Path>,
        time_scale: f64,
        plan: &Plan,
    ) -> Result<(Running, Updates), Fail> {
        let running = self
            .engine(dir, || {
                let inventory = load_inventory(fabric, plan)?;
                let sim = SimOptions {
                    time_scale,
                    faults: None,
                };
                let world = SimWorld::load(dir, &inventory, &sim)?;
                Ok((inventory, world))
            })
            .await?;
        match running.api().subscribe(None).await {
            Ok(updates) => Ok((running, updates)),
            Err(e) => {
                eprintln!("drplan: {e}");
                running.stop().await;
                Err(Exit::CouldNotRun)
            }
        }
    }
}

/// Whether a lock holder's text (`pid N: /path/drplan [opts] serve ...`)
/// names a drplan process.
fn held_by_drplan(holder: &str) -> bool {
    let program = holder.split_whitespace().nth(2).unwrap_or_default();
    Path::new(program)
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("drplan"))
}

/// A failed API call: its message, and exit 2 (the caller maps refusals).
pub fn api_fail(e: ApiError) -> Fail {
    eprintln!("drplan: {e}");
    Exit::CouldNotRun
}

/// An engine a command acts through.
pub enum Running {
    Local(Host),
    Remote(Box<Client>),
}

impl Running {
    pub fn api(&self) -> &dyn Control {
        match self {
            Running::Local(h) => h.engine.as_ref(),
            Running::Remote(c) => c.as_ref(),
        }
    }

    /// Save the simulated world as it goes (a server saves its own).
    pub fn save_world(&self) {
        if let Running::Local(h) = self {
            h.world.save();
        }
    }

    pub async fn stop(self) {
        if let Running::Local(h) = self {
            h.stop().await;
        }
    }
}
