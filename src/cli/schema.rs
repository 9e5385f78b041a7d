//! `drplan schema`: print the JSON Schema of a file format.

use clap::{Args, ValueEnum};

use super::{Exit, emit};

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Which file format.
    #[arg(value_enum, default_value_t = SchemaKind::Plan)]
    pub kind: SchemaKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaKind {
    /// A recovery plan (`plans/*.yaml`).
    Plan,
    /// A fabric inventory.
    Fabric,
}

/// The schema text exactly as committed under `plans/` (pretty JSON and a
/// trailing newline), so `drplan schema plan > plans/plan.schema.json`
/// regenerates the file.
pub fn schema_text(kind: SchemaKind) -> String {
    let value = match kind {
        SchemaKind::Plan => drplan_engine::plan::plan_schema(),
        SchemaKind::Fabric => drplan_engine::plan::fabric_schema(),
    };
    let mut text = serde_json::to_string_pretty(&value).expect("a JSON value always serialises");
    text.push('\n');
    text
}

pub fn run(args: &SchemaArgs) -> Exit {
    emit(&schema_text(args.kind))
}
