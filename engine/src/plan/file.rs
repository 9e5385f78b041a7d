//! Serde types that mirror the plan file (format v1) one to one.
//!
//! These are a compatibility promise to plan authors, not the domain: they
//! keep the author's spelling, carry source locations (`Spanned`) for
//! diagnostics and derive the JSON Schema that editors use. Validation turns
//! them into [`crate::plan::model::Plan`], which is what the engine runs.
//!
//! Every key is `snake_case`; unknown keys are errors (`deny_unknown_fields`)
//! so a typo never silently disables a setting.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

/// What a duration looks like (humantime: numbers with units, e.g. `10m`,
/// `1h 30m`, `1.5h`). For editors only: validation parses the value and
/// explains what is wrong with it, so this need not be (and is not) tighter
/// than the parser.
pub(crate) const DURATION_PATTERN: &str = r"^\s*([0-9]+(\.[0-9]+)?\s*(nanos|nsec|ns|usec|us|µs|millis|msec|ms|seconds|second|secs|sec|s|minutes|minute|mins|min|m|hours|hour|hrs|hr|h|days|day|d|weeks|week|wks|wk|w|months|month|M|years|year|yrs|yr|y)\s*)+$";

/// `site/cloud` (or `site/network`): two non-empty parts without surrounding
/// blanks, one `/`. For editors; validation checks the same and says why.
pub(crate) const SITE_CLOUD_PATTERN: &str = r"^[^/\s]([^/]*[^/\s])?/[^/\s]([^/]*[^/\s])?$";

/// The plan file format version this build reads and writes.
pub const PLAN_FORMAT_VERSION: u32 = 1;

/// A recovery plan: groups of VMs in dependency order, with scripts and
/// manual steps before and after each group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "drplan recovery plan (format v1)")]
pub struct PlanFile {
    /// Plan format version. Must be `1`.
    // Not `const: 1`: the shape check would then answer `drplan: one` with
    // "must be one of `1`" instead of "must be a whole number", and a newer
    // version deserves validation's VERSION diagnostic.
    #[schemars(with = "u32", extend("examples" = [1]))]
    pub drplan: Spanned<u32>,
    /// Plan name: letters, digits, `-`, `_` and `.`, starting with a letter or digit.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// Free text shown in reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Where the VMs run today, as `site/cloud`.
    #[schemars(with = "String", extend("pattern" = SITE_CLOUD_PATTERN, "examples" = ["primary-vmm/gold"]))]
    pub source: Spanned<String>,
    /// Where they fail over to, as `site/cloud`.
    #[schemars(with = "String", extend("pattern" = SITE_CLOUD_PATTERN, "examples" = ["secondary-vmm/gold-dr"]))]
    pub target: Spanned<String>,
    /// Path of the fabric inventory file, relative to this plan file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub fabric: Option<Spanned<String>>,
    /// Defaults for every step of the plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<DefaultsFile>,
    /// Test failover (drill) settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<TestFile>,
    /// What happens after a planned or unplanned failover finishes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<CommitFile>,
    /// The groups, in file order. A group without `after` starts after the
    /// group before it.
    #[schemars(with = "Vec<GroupFile>")]
    pub groups: Spanned<Vec<GroupFile>>,
}

/// Defaults applied to steps that do not set their own values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DefaultsFile {
    /// Script timeout (default `10m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>", extend("pattern" = DURATION_PATTERN, "examples" = ["10m", "1h 30m"]))]
    pub script_timeout: Option<Spanned<String>>,
    /// Manual step timeout (default: none, an operator may take as long as needed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>", extend("pattern" = DURATION_PATTERN, "examples" = ["4h", "30m"]))]
    pub manual_timeout: Option<Spanned<String>>,
    /// Retries of a failed script (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// Delay between script attempts (default `10s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>", extend("pattern" = DURATION_PATTERN, "examples" = ["10s", "1m"]))]
    pub retry_delay: Option<Spanned<String>>,
}

/// Test failover settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// Target-site VM network that test VMs attach to. Omit it to attach
    /// test VMs to no network at all (fully isolated drill).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub network: Option<Spanned<String>>,
    /// How long a test may stay open before it is forcibly ended and cleaned
    /// up (default and maximum `14d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>", extend("pattern" = DURATION_PATTERN, "examples" = ["14d", "3d 12h"]))]
    pub max_duration: Option<Spanned<String>>,
    /// Steps run when the test is completed (after test VMs are deleted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cleanup: Vec<StepFile>,
}

/// Commit policy after a planned or unplanned failover.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommitFile {
    /// `none` (the operator commits), `auto-commit` or `auto-rollback`.
    #[schemars(with = "CommitPolicyName")]
    pub policy: Spanned<CommitPolicyName>,
    /// How long after the failover finished the policy acts (required unless
    /// the policy is `none`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>", extend("pattern" = DURATION_PATTERN, "examples" = ["24h", "2d"]))]
    pub after: Option<Spanned<String>>,
}

/// The commit policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CommitPolicyName {
    /// The operator commits (or changes the recovery point) by hand.
    None,
    /// Commit automatically once the window has passed.
    AutoCommit,
    /// Roll back (cancel the failover) automatically once the window has passed
    /// unless the operator committed first.
    AutoRollback,
}

/// A group of VMs that fail over in parallel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupFile {
    /// Group name, unique in the plan.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// Groups that must finish before this one starts. Omitted: the previous
    /// group in the file. `[]`: start at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<Vec<String>>")]
    pub after: Option<Vec<Spanned<String>>>,
    /// The group's VMs: a name, or `{ name: ..., optional: true }`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<VmEntryFile>")]
    pub vms: Vec<Spanned<VmEntryFile>>,
    /// Steps run in order before the group's VMs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre: Vec<StepFile>,
    /// Steps run in order after all the group's VMs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post: Vec<StepFile>,
}

// `Deserialize` is written by hand (below): serde's derive for an untagged
// enum buffers every entry into an intermediate `Content` tree and then
// tries each variant on it, which for 10,000 VMs is a measurable share of
// reading a plan. The schema (derived, from the `untagged` attribute) is
// unchanged and the hand-written decoder accepts exactly what the derived
// one did: a string, a mapping with `name` (a string) and `optional` (a
// boolean), or those two as a list; numbers and booleans are not names.
// (A plain comment, not a doc comment: doc comments become the schema's
// descriptions, which editors show to plan authors.)
/// A VM of a group.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum VmEntryFile {
    /// Just the VM name.
    Name(String),
    /// A VM with options.
    Detailed(VmOptionsFile),
}

/// A VM with options.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VmOptionsFile {
    /// The VM name as the fabric knows it.
    pub name: String,
    /// An optional VM's failure does not fail its group.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

/// `fail` or `continue`, or null (an explicit "not set"). Not an `enum`
/// with `null` in it: the shape check would list `null` as a choice.
fn on_timeout_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "anyOf": [
            { "type": "string", "enum": ["fail", "continue"] },
            { "type": "null" }
        ]
    })
}

impl<'de> Deserialize<'de> for VmEntryFile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(VmEntryVisitor)
    }
}

impl<'de> Deserialize<'de> for VmOptionsFile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Not `deserialize_struct`: like the buffered untagged variant it
        // replaces, the mapping's values are taken as they are typed in the
        // file (`name: 123` is a number, not the name "123").
        match d.deserialize_any(VmEntryVisitor)? {
            VmEntryFile::Detailed(o) => Ok(o),
            VmEntryFile::Name(n) => Err(de::Error::invalid_type(
                de::Unexpected::Str(&n),
                &"a mapping with `name` and `optional`",
            )),
        }
    }
}

const VM_OPTION_FIELDS: &[&str] = &["name", "optional"];

struct VmEntryVisitor;

impl<'de> Visitor<'de> for VmEntryVisitor {
    type Value = VmEntryFile;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a VM name, or a mapping with `name` and `optional`")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<VmEntryFile, E> {
        Ok(VmEntryFile::Name(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<VmEntryFile, E> {
        Ok(VmEntryFile::Name(v))
    }

    /// `[name, optional]`: serde's derived structs also accept their fields
    /// in order as a list, and so did the derived untagged enum; keep
    /// accepting exactly that (one or two items, nothing more).
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<VmEntryFile, A::Error> {
        let name = match seq.next_element::<Exact<String>>()? {
            Some(n) => n.0,
            None => return Err(de::Error::invalid_length(0, &"a VM name and `optional`")),
        };
        let optional = seq.next_element::<Exact<bool>>()?.is_some_and(|o| o.0);
        if seq.next_element::<de::IgnoredAny>()?.is_some() {
            return Err(de::Error::invalid_length(
                3,
                &"at most a VM name and `optional`",
            ));
        }
        Ok(VmEntryFile::Detailed(VmOptionsFile { name, optional }))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<VmEntryFile, A::Error> {
        let mut name: Option<String> = None;
        let mut optional: Option<bool> = None;
        while let Some(key) = map.next_key::<VmOptionField>()? {
            match key {
                VmOptionField::Name if name.is_some() => {
                    return Err(de::Error::duplicate_field("name"));
                }
                VmOptionField::Name => name = Some(map.next_value::<Exact<String>>()?.0),
                VmOptionField::Optional if optional.is_some() => {
                    return Err(de::Error::duplicate_field("optional"));
                }
                VmOptionField::Optional => optional = Some(map.next_value::<Exact<bool>>()?.0),
            }
        }
        let name = name.ok_or_else(|| de::Error::missing_field("name"))?;
        Ok(VmEntryFile::Detailed(VmOptionsFile {
            name,
            optional: optional.unwrap_or(false),
        }))
    }
}

/// A key of [`VmOptionsFile`]; any other key is an error
/// (`deny_unknown_fields`).
enum VmOptionField {
    Name,
    Optional,
}

impl<'de> Deserialize<'de> for VmOptionField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = VmOptionField;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`name` or `optional`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<VmOptionField, E> {
                match v {
                    "name" => Ok(VmOptionField::Name),
                    "optional" => Ok(VmOptionField::Optional),
                    other => Err(de::Error::unknown_field(other, VM_OPTION_FIELDS)),
                }
            }
        }
        d.deserialize_identifier(V)
    }
}

/// A value taken only as its own YAML type (through `deserialize_any`), the
/// way a buffered untagged enum sees it: a string for `String`, a boolean
/// for `bool`; no coercion of `123` into "123" or of `"true"` into `true`.
struct Exact<T>(T);

impl<'de> Deserialize<'de> for Exact<String> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = String;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
                Ok(v.to_owned())
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
                Ok(v)
            }
        }
        d.deserialize_any(V).map(Exact)
    }
}

impl<'de> Deserialize<'de> for Exact<bool> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = bool;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a boolean")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
                Ok(v)
            }
        }
        d.deserialize_any(V).map(Exact)
    }
}

/// One step: exactly one of `run`, `shell`, `manual` or `wait`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepFile {
    /// Step name, unique in its list.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// Script: program and arguments, run without a shell. A program with a
    /// `/` is a path relative to the plan file; otherwise it is looked up on PATH.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<Vec<String>>")]
    pub run: Option<Spanned<Vec<String>>>,
    /// Script in shell form, run with `/bin/sh -c`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub shell: Option<Spanned<String>>,
    /// Manual step: the instructions an operator follows and confirms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub manual: Option<Spanned<String>>,
    /// Wait step: a fixed delay, e.g. `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>", extend("pattern" = DURATION_PATTERN, "examples" = ["30s", "5m"]))]
    pub wait: Option<Spanned<String>>,
    /// Timeout of a script or manual step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>", extend("pattern" = DURATION_PATTERN, "examples" = ["10m", "2h"]))]
    pub timeout: Option<Spanned<String>>,
    /// Script retries after a failed attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<u32>")]
    pub retries: Option<Spanned<u32>>,
    /// Delay between script attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>", extend("pattern" = DURATION_PATTERN, "examples" = ["10s", "1m"]))]
    pub retry_delay: Option<Spanned<String>>,
    /// Extra environment variables for a script.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Failover kinds (`test`, `planned`, `unplanned`) and directions
    /// (`forward`, `reverse`) the step applies to. Omitted: always.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        with = "Option<Vec<String>>",
        extend("items" = { "type": "string", "enum": ["test", "planned", "unplanned", "forward", "reverse"] })
    )]
    pub when: Option<Vec<Spanned<String>>>,
    /// What a manual step's timeout does: `fail` (default) or `continue`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "on_timeout_schema")]
    pub on_timeout: Option<Spanned<String>>,
    /// An optional step's failure does not fail its group.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vms(text: &str) -> Result<Vec<Spanned<VmEntryFile>>, serde_saphyr::Error> {
        serde_saphyr::from_str(text)
    }

    #[test]
    fn vm_entries_decode_like_the_untagged_enum_did() {
        let v = vms("- web-1\n- { name: db-1, optional: true }\n- { name: db-2 }\n- [app-1, true]\n- [app-2]\n")
            .expect("valid entries");
        let got: Vec<&VmEntryFile> = v.iter().map(|s| &s.value).collect();
        let detailed = |name: &str, optional| {
            VmEntryFile::Detailed(VmOptionsFile {
                name: name.into(),
                optional,
            })
        };
        assert_eq!(
            got,
            vec![
                &VmEntryFile::Name("web-1".into()),
                &detailed("db-1", true),
                &detailed("db-2", false),
                &detailed("app-1", true),
                &detailed("app-2", false),
            ]
        );
        // Spans survive: each entry is located where it is written.
        let lines: Vec<u64> = v.iter().map(|s| s.referenced.line()).collect();
        assert_eq!(lines, vec![1, 2, 3, 4, 5]);
        assert_eq!(v[1].referenced.column(), 3);
    }

    #[test]
    fn vm_entries_reject_what_the_untagged_enum_rejected() {
        for bad in [
            "- 123\n",
            "- true\n",
            "- ~\n",
            "- { name: 123 }\n",
            "- { name: a, optional: \"true\" }\n",
            "- { name: a, optional: 1 }\n",
            "- { optional: true }\n",
            "- { name: a, colour: red }\n",
            "- { name: a, name: b }\n",
            "- []\n",
            "- [a, true, x]\n",
            "- [[a]]\n",
        ] {
            assert!(vms(bad).is_err(), "{bad:?} must be rejected");
        }
    }
}
