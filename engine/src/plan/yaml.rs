//! Reading YAML safely: limits, syntax errors, and the shape checked against
//! the JSON Schema so every unknown key, wrong type and missing field is
//! reported at once. (Being written: see issue 2.)

use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use super::diag::{Diagnostic, Pos, codes};

/// The largest plan or inventory file drplan reads (16 MiB).
pub const MAX_FILE_BYTES: usize = 16 << 20;

/// Parse `bytes` (named `file` in diagnostics) into `T`.
pub fn parse<T: DeserializeOwned + JsonSchema>(
    file: &str,
    bytes: &[u8],
) -> Result<T, Vec<Diagnostic>> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        vec![Diagnostic::error(
            codes::NOT_UTF8,
            file,
            Pos::UNKNOWN,
            format!("not UTF-8 text: {e}"),
        )]
    })?;
    serde_saphyr::from_str(text).map_err(|e| {
        vec![Diagnostic::error(
            codes::SYNTAX,
            file,
            Pos::UNKNOWN,
            e.to_string(),
        )]
    })
}
