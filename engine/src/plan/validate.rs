//! Semantic validation of plans and inventories. (Being written: see issue 2.)

use std::path::Path;

use super::diag::Diagnostic;
use super::fabric_file::FabricFile;
use super::file::PlanFile;
use super::model::{Inventory, Plan};

/// Validate a parsed plan; `inventory` enables the cross-checks.
pub fn validate_plan(
    _file: &str,
    _plan: &PlanFile,
    _base_dir: &Path,
    _inventory: Option<&Inventory>,
) -> (Option<Plan>, Vec<Diagnostic>) {
    (None, Vec::new())
}

/// Validate a parsed inventory.
pub fn validate_fabric(_file: &str, _fabric: &FabricFile) -> (Option<Inventory>, Vec<Diagnostic>) {
    (None, Vec::new())
}
