//! The environment a script runs with.
//!
//! Built from nothing (`env_clear`), in this order, later entries winning:
//! 1. the allowlisted variables of the engine's own environment
//!    ([`INHERITED`], `LC_*`), with a default `PATH` if the engine has none;
//! 2. the plan step's `env`;
//! 3. the `DRPLAN_*` context and published values, which the step's `env`
//!    cannot replace (a warning says so when it tries).
//!
//! Everything else in the engine's environment (API tokens, cloud
//! credentials, `SSH_AUTH_SOCK`, proxies with passwords in them) stays out:
//! a plan passes what its scripts need explicitly, in `env`, where a
//! reviewer can see it.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};

use super::{ScriptContext, values::is_valid_key};

/// Variables a script inherits from the engine, besides every `LC_*`.
///
/// They describe the machine and the account the script runs as, and carry
/// no secrets. Left out on purpose: `TERM` (a script's output goes to a
/// pipe and a log, never a terminal; an inherited `TERM` would only invite
/// colour codes into the log), `SHELL`, `PWD`/`OLDPWD` (the working
/// directory is the plan's folder, not the engine's), `DISPLAY`, and
/// anything with a credential in it.
pub const INHERITED: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR",
];

/// `PATH` for a script when the engine itself has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Whether the engine's variable `name` is passed to scripts.
pub fn is_inherited(name: &OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    INHERITED.contains(&name) || name.starts_with("LC_")
}

/// Keeps the allowlisted variables of `vars` (e.g. `std::env::vars_os()`).
pub fn inherited_from(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
) -> Vec<(OsString, OsString)> {
    let mut kept: Vec<_> = vars.into_iter().filter(|(k, _)| is_inherited(k)).collect();
    kept.sort();
    kept
}

/// Names the runner sets itself; a step's `env` cannot replace them.
const CONTEXT_VARS: &[&str] = &[
    "DRPLAN_JOB_ID",
    "DRPLAN_PLAN",
    "DRPLAN_FAILOVER_KIND",
    "DRPLAN_DIRECTION",
    "DRPLAN_GROUP",
    "DRPLAN_STEP",
    "DRPLAN_ATTEMPT",
    "DRPLAN_IDEMPOTENCY_KEY",
    "DRPLAN_VMS",
    "DRPLAN_OUTPUT",
    "DRPLAN_VALUES",
];

/// Prefix of the variables holding values published by earlier steps.
pub const VALUE_PREFIX: &str = "DRPLAN_VALUE_";

fn is_reserved(name: &str) -> bool {
    CONTEXT_VARS.contains(&name) || name.starts_with(VALUE_PREFIX)
}

/// The complete environment of one attempt.
pub(crate) fn build(
    inherited: &[(OsString, OsString)],
    step_env: &BTreeMap<String, String>,
    ctx: &ScriptContext,
    output_file: &OsStr,
    warnings: &mut Vec<String>,
) -> BTreeMap<OsString, OsString> {
    let mut env: BTreeMap<OsString, OsString> = inherited
        .iter()
        .filter(|(k, _)| is_inherited(k))
        .cloned()
        .collect();
    env.entry("PATH".into())
        .or_insert_with(|| DEFAULT_PATH.into());

    for (k, v) in step_env {
        if is_reserved(k) {
            warnings.push(format!(
                "the step's env sets {k}, which drplan sets itself; the step's value is ignored"
            ));
            continue;
        }
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            // The OS cannot represent it; `Command::env` would fail the spawn.
            warnings.push(format!(
                "the step's env entry `{}` cannot be an environment variable; ignored",
                k.escape_debug()
            ));
            continue;
        }
        env.insert(k.into(), v.into());
    }

    let mut set = |k: &str, v: &str| {
        env.insert(k.into(), v.into());
    };
    set("DRPLAN_JOB_ID", &ctx.job_id);
    set("DRPLAN_PLAN", &ctx.plan);
    set("DRPLAN_FAILOVER_KIND", ctx.kind.as_str());
    set("DRPLAN_DIRECTION", ctx.direction.as_str());
    set("DRPLAN_GROUP", ctx.group.as_deref().unwrap_or(""));
    set("DRPLAN_STEP", &ctx.step);
    set("DRPLAN_ATTEMPT", &ctx.attempt.to_string());
    set("DRPLAN_IDEMPOTENCY_KEY", &ctx.idempotency_key);
    let vms = serde_json::to_string(&ctx.vms).unwrap_or_else(|_| "[]".into());
    set("DRPLAN_VMS", &vms);

    let mut published = BTreeMap::new();
    for (k, v) in &ctx.values {
        // Values come from parse_values, which checks both; a runtime that
        // builds them some other way must not be able to break the spawn.
        if !is_valid_key(k) || v.contains('\0') {
            warnings.push(format!(
                "published value `{}` has an invalid key or value; not passed",
                k.escape_debug()
            ));
            continue;
        }
        set(&format!("{VALUE_PREFIX}{k}"), v);
        published.insert(k, v);
    }
    let values = serde_json::to_string(&published).unwrap_or_else(|_| "{}".into());
    set("DRPLAN_VALUES", &values);
    env.insert("DRPLAN_OUTPUT".into(), output_file.to_owned());
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist() {
        let vars = [
            ("PATH", "/bin"),
            ("HOME", "/home/x"),
            ("LC_ALL", "C"),
            ("LC_TIME", "C"),
            ("TERM", "xterm"),
            ("DRPLAN_API_TOKEN", "secret"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("SSH_AUTH_SOCK", "/tmp/agent"),
            ("PATHX", "no"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let kept: Vec<String> = inherited_from(vars)
            .into_iter()
            .map(|(k, _)| k.into_string().unwrap())
            .collect();
        assert_eq!(kept, ["HOME", "LC_ALL", "LC_TIME", "PATH"]);
    }
}
