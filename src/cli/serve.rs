//! `drplan serve`: a long-running engine on a data directory with the
//! local API (`drplan_engine::api`), so that the other commands, from any
//! terminal of the same user, reach the running engine instead of
//! fighting over the store.
//!
//! Security model (details in docs/api.md):
//! - the data directory is made 0700 and the socket `<dir>/drplan.sock` is
//!   0600; the server also checks each peer's uid (`SO_PEERCRED`) and
//!   refuses other users, root included;
//! - TCP is optional (`--listen`), loopback only unless `--allow-remote`,
//!   and always with a random token written to a 0600 `--token-file`; every
//!   request must carry it. The token lives in memory and in that file
//!   only: never in the environment, so scripts cannot see it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use drplan_engine::api::server::{self, Server, ServerConfig};
use drplan_engine::api::{PROTOCOL_VERSION, SOCKET_FILE};
use drplan_engine::fabric::FaultSet;
use drplan_engine::plan::model::Inventory;
use drplan_engine::store::StoreError;
use drplan_engine::store::sled_store::{SledStore, lock_holder};

use super::engine_host::{self, Host, SimOptions, SimWorld};
use super::{Exit, emit};

const SERVE_HELP: &str = "\
Examples:
  drplan serve --fabric plans/fabric.yaml &
  drplan run plans/three-tier.yaml --failover test     # runs in the server
  drplan serve --listen 127.0.0.1:7070 --token-file ~/.drplan-token

Other commands on the same data directory talk to the server through
<data-dir>/drplan.sock (mode 0600, this user only). Stop it with Ctrl-C or
SIGTERM: unfinished jobs resume when a server or a command starts again.

Exit codes:
  0  stopped by SIGINT or SIGTERM, with --exit-when-idle when no job was
     unfinished for that long, or because its data directory was deleted
  2  could not run: bad arguments, the data directory in use, no inventory,
     the socket or TCP address cannot be bound";

pub const HELP: &str = SERVE_HELP;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The data directory (default: $DRPLAN_DATA_DIR, else the user's data
    /// directory + `/drplan`).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Inventory file for the simulated fabric (default: the one the newest
    /// job's plan names).
    #[arg(long, value_name = "FILE")]
    pub fabric: Option<PathBuf>,
    /// Simulated fabric speed: 1.0 = realistic latencies, 0.01 = a hundred
    /// times faster.
    #[arg(long, value_name = "X", default_value_t = 0.01)]
    pub time_scale: f64,
    /// Also listen on TCP (loopback only unless --allow-remote); needs
    /// --token-file.
    #[arg(long, value_name = "ADDR", requires = "token_file")]
    pub listen: Option<SocketAddr>,
    /// Where to write the random token TCP clients must send (mode 0600).
    #[arg(long, value_name = "FILE", requires = "listen")]
    pub token_file: Option<PathBuf>,
    /// Allow --listen on a non-loopback address (the token still applies;
    /// the traffic is not encrypted).
    #[arg(long, requires = "listen")]
    pub allow_remote: bool,
    /// Stop once no job is unfinished for this long (e.g. 60s). `run
    /// --detach` starts its background server with it, so a server nobody
    /// asked for never outlives its work. Without it the server runs until
    /// SIGINT or SIGTERM. Any server stops when its data directory is
    /// deleted.
    #[arg(long, value_name = "DURATION", value_parser = super::estimate::parse_duration)]
    pub exit_when_idle: Option<std::time::Duration>,
}

pub fn run(args: &ServeArgs) -> Exit {
    match run_inner(args) {
        Ok(e) | Err(e) => e,
    }
}

/// Create the data directory 0700, or tighten an existing one of ours: the
/// socket and the store are this user's only.
fn private_dir(dir: &Path) -> Result<(), Exit> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let fail = |what: &str, e: std::io::Error| {
        eprintln!("drplan: cannot {what} `{}`: {e}", dir.display());
        Exit::CouldNotRun
    };
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| fail("create", e))?;
    }
    let meta = std::fs::metadata(dir).map_err(|e| fail("read", e))?;
    if meta.uid() != server::current_uid() {
        eprintln!(
            "drplan: the data directory `{}` belongs to user id {}, not to this user ({})",
            dir.display(),
            meta.uid(),
            server::current_uid()
        );
        return Err(Exit::CouldNotRun);
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| fail("restrict the permissions of", e))?;
        eprintln!(
            "drplan: note: `{}` was readable by others; it is now 0700",
            dir.display()
        );
    }
    Ok(())
}

/// `--fabric`, else the inventory the newest job's plan names.
fn inventory(given: Option<&Path>, store: &SledStore) -> Result<Inventory, Exit> {
    if let Some(path) = given {
        let (inv, _, diags) = drplan_engine::plan::load_fabric(path);
        return inv.ok_or_else(|| {
            eprintln!("drplan: cannot use the inventory `{}`:", path.display());
            for d in diags {
                eprintln!("  {}:{}:{}: {}", d.file, d.line, d.column, d.message);
            }
            Exit::CouldNotRun
        });
    }
    let jobs = engine_host::all_jobs(store)?;
    for meta in jobs.iter().rev() {
        let plan = engine_host::job_plan(store, meta)?;
        if plan.fabric_path.is_some() {
            return engine_host::load_inventory(None, &plan);
        }
    }
    eprintln!("drplan: no job names an inventory yet; pass --fabric FILE");
    Err(Exit::CouldNotRun)
}

fn run_inner(args: &ServeArgs) -> Result<Exit, Exit> {
    if !(args.time_scale.is_finite() && args.time_scale > 0.0) {
        eprintln!(
            "drplan: --time-scale must be a positive number, not {}",
            args.time_scale
        );
        return Err(Exit::CouldNotRun);
    }
    if let Some(addr) = args.listen
        && !addr.ip().is_loopback()
        && !args.allow_remote
    {
        eprintln!(
            "drplan: refusing to listen on {addr}: it is not a loopback address, so other \
             hosts could reach the API; pass --allow-remote to mean it (the token is still \
             required, and the traffic is not encrypted)"
        );
        return Err(Exit::CouldNotRun);
    }
    let dir = engine_host::data_dir(args.data_dir.as_deref())?;
    private_dir(&dir)?;
    let store = match SledStore::open(&dir) {
        Ok(s) => Arc::new(s),
        Err(StoreError::Locked { .. }) => {
            let who = lock_holder(&dir)
                .map(|h| format!(" ({h})"))
                .unwrap_or_default();
            eprintln!(
                "drplan: the data directory {} is in use by another drplan process{who}; \
                 one engine per data directory",
                dir.display()
            );
            return Err(Exit::CouldNotRun);
        }
        Err(e) => {
            eprintln!("drplan: {e}");
            return Err(Exit::CouldNotRun);
        }
    };
    let inventory = inventory(args.fabric.as_deref(), &store)?;
    let sim = SimOptions {
        time_scale: args.time_scale,
        faults: None,
    };
    let world = SimWorld::load(&dir, &inventory, &sim)?;
    let rt = engine_host::runtime()?;
    rt.block_on(serve(args, dir, store, inventory, world))
}

async fn serve(
    args: &ServeArgs,
    dir: PathBuf,
    store: Arc<SledStore>,
    inventory: Inventory,
    world: SimWorld,
) -> Result<Exit, Exit> {
    use tokio::signal::unix::{SignalKind, signal};
    // Signals first: a SIGTERM during start-up must still stop us cleanly.
    let (mut sigint, mut sigterm) = match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(i), Ok(t)) => (i, t),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("drplan: cannot handle signals: {e}");
            return Err(Exit::CouldNotRun);
        }
    };
    let fabric = world.fabric.clone();
    let checked_inventory = inventory.clone();
    let host = Host::start_bare(&dir, store, inventory, world).await?;
    let (engine, world) = host.into_parts();
    let world = Arc::new(world);

    let faults_world = world.clone();
    let faults_inventory = checked_inventory.clone();
    let config = ServerConfig {
        data_dir: Some(dir.clone()),
        // `run --inject`: the faults replace those in force, as in a run
        // hosted by the command itself, and are saved with the world.
        faults: Some(Arc::new(move |given: &[String]| {
            let set = FaultSet::from_cli(given).map_err(|errors| {
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            })?;
            let wrong = set.check(&faults_inventory);
            if !wrong.is_empty() {
                return Err(wrong
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "));
            }
            fabric.set_faults(set);
            faults_world.save();
            Ok(())
        })),
        // The server runs one simulated world: a plan whose VMs it does not
        // know would fail at its first operation; refuse it up front.
        admit: Some(Arc::new(move |plan| {
            let missing: Vec<&str> = plan
                .groups
                .iter()
                .flat_map(|g| &g.vms)
                .map(|v| v.name.as_str())
                .filter(|vm| checked_inventory.vm(vm).is_none())
                .collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "{} {} {} not in the inventory this server runs; start `drplan serve` \
                     with the plan's --fabric",
                    super::text::noun_for(missing.len(), "VM"),
                    missing.join(", "),
                    if missing.len() == 1 { "is" } else { "are" }
                ))
            }
        })),
        ..ServerConfig::default()
    };
    let server = Arc::new(Server::new(engine.clone(), config));

    let socket = dir.join(SOCKET_FILE);
    let unix = match server::bind_unix(&socket) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("drplan: cannot listen on `{}`: {e}", socket.display());
            stop(engine, &world).await;
            return Err(Exit::CouldNotRun);
        }
    };
    let mut tasks = Vec::new();
    let s = server.clone();
    tasks.push(tokio::spawn(async move { s.serve_unix(unix).await }));
    let mut lines = vec![format!(
        "drplan serve: pid {}, protocol {PROTOCOL_VERSION}, data directory {}",
        std::process::id(),
        dir.display()
    )];
    lines.push(format!("listening on unix:{}", socket.display()));
    if let (Some(addr), Some(token_file)) = (args.listen, &args.token_file) {
        let bound = async {
            let token = server::new_token().map_err(|e| format!("cannot make a token: {e}"))?;
            server::write_token_file(token_file, &token)
                .map_err(|e| format!("cannot write `{}`: {e}", token_file.display()))?;
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            Ok::<_, String>((l, token))
        }
        .await;
        match bound {
            Ok((listener, token)) => {
                let local = listener.local_addr().map_or(addr, |a| a);
                lines.push(format!(
                    "listening on tcp:{local} (token in {})",
                    token_file.display()
                ));
                let s = server.clone();
                tasks.push(tokio::spawn(
                    async move { s.serve_tcp(listener, token).await },
                ));
            }
            Err(e) => {
                eprintln!("drplan: {e}");
                server.shutdown();
                let _ = std::fs::remove_file(&socket);
                stop(engine, &world).await;
                return Err(Exit::CouldNotRun);
            }
        }
    }
    let _ = emit(&format!("{}\n", lines.join("\n")));

    let signal = tokio::select! {
        _ = sigint.recv() => "SIGINT",
        _ = sigterm.recv() => "SIGTERM",
        why = until_unneeded(&engine, &dir, args.exit_when_idle) => why,
    };
    eprintln!("drplan serve: {signal}: stopping (unfinished jobs resume at the next start)");
    server.shutdown();
    for t in tasks {
        let _ = t.await;
    }
    let _ = std::fs::remove_file(&socket);
    if let Some(f) = &args.token_file {
        // The token dies with the server.
        let _ = std::fs::remove_file(f);
    }
    drop(server);
    stop(engine, &world).await;
    Ok(Exit::Ok)
}

/// Returns once the server is not needed: its data directory was deleted
/// (nothing left to serve), or, with `--exit-when-idle`, no job has been
/// unfinished for that long. A job waiting for an operator or for its test
/// cleanup is unfinished: its timers (a test's deadline) need an engine.
async fn until_unneeded(
    engine: &drplan_engine::runtime::Engine,
    dir: &std::path::Path,
    idle_limit: Option<std::time::Duration>,
) -> &'static str {
    let mut idle_since: Option<tokio::time::Instant> = None;
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        if !dir.exists() {
            return "its data directory was deleted";
        }
        let Some(limit) = idle_limit else { continue };
        let busy = engine
            .jobs()
            .await
            .map(|jobs| jobs.iter().any(|m| !m.status.is_terminal()))
            .unwrap_or(true);
        if busy {
            idle_since = None;
            continue;
        }
        if idle_since
            .get_or_insert_with(tokio::time::Instant::now)
            .elapsed()
            >= limit
        {
            return "no unfinished job (--exit-when-idle)";
        }
    }
}

/// Stop the engine (bounded) and save the simulated world.
async fn stop(engine: Arc<drplan_engine::runtime::Engine>, world: &SimWorld) {
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), engine.shutdown()).await;
    world.save();
}
