//! The plan language: YAML plan and inventory files, validation with located
//! diagnostics, and compilation to an execution DAG.
//!
//! Pipeline: bytes → [`yaml::parse`] (size limits, YAML syntax, the shape
//! checked against the JSON Schema, all problems at once) → the serde mirror
//! types in [`file`](mod@file) / [`fabric_file`] → [`validate`] (names, references,
//! cycles, durations, scripts, the plan against the inventory) → the
//! validated [`model::Plan`] / [`model::Inventory`] → [`compile::compile`] →
//! [`compile::ExecPlan`].

pub mod compile;
pub mod diag;
pub mod fabric_file;
pub mod file;
pub mod generate;
pub mod model;
pub mod render;
pub mod validate;
pub mod yaml;

use std::path::{Path, PathBuf};

pub use compile::{
    ExecNode, ExecPlan, NodeKind, Operation, Phase, RecoveryPoint, Stage, StepId, VmOp, compile,
};
pub use diag::{Diagnostic, Severity};
pub use model::{Direction, FailoverKind, Inventory, Plan};

/// The outcome of loading a plan (and its inventory) from disk.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The validated plan, when it has no errors.
    pub plan: Option<Plan>,
    /// The validated inventory, when one was given and has no errors.
    pub inventory: Option<Inventory>,
    /// The plan file's exact text (what a job stores and hashes).
    pub plan_text: Option<String>,
    /// The inventory file's exact text.
    pub fabric_text: Option<String>,
    /// The inventory path used (from `--fabric` or the plan's `fabric:`).
    pub fabric_path: Option<PathBuf>,
    /// Every problem found, sorted by file and position.
    pub diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    /// True when there is an error (or any warning, with `deny_warnings`).
    pub fn failed(&self, deny_warnings: bool) -> bool {
        diag::has_failures(&self.diagnostics, deny_warnings) || self.plan.is_none()
    }
}

/// Read a file for parsing, refusing what is not a regular file or is over
/// [`yaml::MAX_FILE_BYTES`] before reading it all into memory.
pub fn read_source(path: &Path) -> Result<Vec<u8>, Diagnostic> {
    use std::io::Read;
    let name = path.display().to_string();
    let io_err = |e: std::io::Error| {
        Diagnostic::error(
            diag::codes::IO,
            &name,
            diag::Pos::UNKNOWN,
            format!("cannot read `{name}`: {e}"),
        )
    };
    let file = std::fs::File::open(path).map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    if meta.is_dir() {
        return Err(Diagnostic::error(
            diag::codes::IO,
            &name,
            diag::Pos::UNKNOWN,
            format!("`{name}` is a directory, not a file"),
        ));
    }
    let mut bytes = Vec::new();
    // Read at most one byte past the limit so a huge (or endless) file is
    // refused without reading it all.
    file.take(yaml::MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    if bytes.len() > yaml::MAX_FILE_BYTES {
        return Err(Diagnostic::error(
            diag::codes::TOO_LARGE,
            &name,
            diag::Pos::UNKNOWN,
            format!(
                "`{name}` is larger than {} MiB, the most drplan reads",
                yaml::MAX_FILE_BYTES >> 20
            ),
        )
        .with_hint("a plan of 10,000 VMs is about 1 MiB; is this the right file?"));
    }
    Ok(bytes)
}

/// Load, parse and validate a plan file, and its inventory: `fabric`
/// overrides the plan's own `fabric:` path.
pub fn load(plan_path: &Path, fabric: Option<&Path>) -> Loaded {
    let mut out = Loaded::default();
    let plan_name = plan_path.display().to_string();
    let bytes = match read_source(plan_path) {
        Ok(b) => b,
        Err(d) => {
            out.diagnostics.push(d);
            return out;
        }
    };
    let base_dir = plan_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let base_dir = if base_dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        base_dir
    };
    // Shape problems that can be set aside (unknown keys, bad optional
    // values) still let the semantic checks run, so the author sees every
    // problem at once; `shape_ok` keeps such a plan from ever being valid.
    let yaml::Lenient {
        value: file,
        diagnostics: shape_diags,
        set_aside,
    } = yaml::parse_lenient_regions::<file::PlanFile>(&plan_name, &bytes);
    let shape_ok = shape_diags.is_empty();
    out.diagnostics.extend(shape_diags);
    out.plan_text = String::from_utf8(bytes).ok();

    // The inventory: --fabric wins over the plan's own `fabric:` key.
    let fabric_path = fabric.map(Path::to_path_buf).or_else(|| {
        file.as_ref()
            .and_then(|f| f.fabric.as_ref())
            .map(|p| base_dir.join(&p.value))
    });
    if let Some(fp) = &fabric_path {
        let (inv, text, mut diags) = load_fabric(fp);
        // An inventory named by the plan that cannot be read at all is a
        // problem in the plan, at its `fabric:` line, not one at "line 0"
        // of a file that does not exist. (An unreadable override, such as
        // `--fabric FILE`, stays the caller's DP0101 about that file.)
        let named_at = match fabric {
            Some(_) => None,
            None => file.as_ref().and_then(|f| f.fabric.as_ref()),
        };
        if let Some(at) = named_at {
            for d in &mut diags {
                if matches!(d.code, diag::codes::IO | diag::codes::TOO_LARGE) {
                    *d = fabric_unreadable(d, &plan_name, at);
                }
            }
        }
        out.inventory = inv;
        out.fabric_text = text;
        out.diagnostics.extend(diags);
    }
    out.fabric_path = fabric_path;

    if let Some(f) = &file {
        let (plan, mut diags) =
            validate::validate_plan(&plan_name, f, &base_dir, out.inventory.as_ref());
        // A plan whose inventory was named but could not be loaded was
        // never checked against it: not a valid plan.
        let fabric_ok = out.fabric_path.is_none() || out.inventory.is_some();
        out.plan = plan.filter(|_| shape_ok && fabric_ok);
        yaml::drop_follow_ups(&mut diags, &set_aside);
        out.diagnostics.extend(diags);
    }
    diag::sort(&mut out.diagnostics);
    out
}

/// DP0601 for an inventory named by the plan's `fabric:` (at `named_at`)
/// that cannot be read; `read` is the reading error.
fn fabric_unreadable(
    read: &Diagnostic,
    plan_name: &str,
    named_at: &serde_saphyr::Spanned<String>,
) -> Diagnostic {
    // read_source's messages are "cannot read `PATH`: REASON" or "`PATH` is ...".
    let reason = read
        .message
        .split_once("`: ")
        .map_or(read.message.as_str(), |(_, r)| r);
    Diagnostic::error(
        diag::codes::FABRIC_UNREADABLE,
        plan_name,
        diag::Pos::from(named_at.referenced),
        format!(
            "the inventory `{}` (`{}`) cannot be read: {reason}",
            named_at.value, read.file
        ),
    )
    .with_hint(
        "`fabric:` is relative to the plan file's folder; fix the path, or give the inventory \
         with `--fabric FILE`",
    )
}

/// Load, parse and validate an inventory file.
pub fn load_fabric(path: &Path) -> (Option<Inventory>, Option<String>, Vec<Diagnostic>) {
    let name = path.display().to_string();
    let bytes = match read_source(path) {
        Ok(b) => b,
        Err(d) => return (None, None, vec![d]),
    };
    let yaml::Lenient {
        value: parsed,
        diagnostics: mut diags,
        set_aside,
    } = yaml::parse_lenient_regions::<fabric_file::FabricFile>(&name, &bytes);
    let shape_ok = diags.is_empty();
    let text = String::from_utf8(bytes).ok();
    match parsed {
        Some(f) => {
            let (inv, mut more) = validate::validate_fabric(&name, &f);
            yaml::drop_follow_ups(&mut more, &set_aside);
            diags.extend(more);
            (inv.filter(|_| shape_ok), text, diags)
        }
        None => (None, text, diags),
    }
}

/// The JSON Schema of the plan file format.
pub fn plan_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(file::PlanFile)).expect("a schema is always JSON")
}

/// The JSON Schema of the fabric inventory format.
pub fn fabric_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(fabric_file::FabricFile))
        .expect("a schema is always JSON")
}
