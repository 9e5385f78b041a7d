//! Fault injection for the simulated fabric: a small language, the same on
//! the command line (`--inject fail:start-replica:web-01`) and in a file
//! (`faults: [...]`, YAML or JSON).
//!
//! | fault | effect |
//! | --- | --- |
//! | `fail:OP:VM` | every attempt of OP on VM fails (not retryable) |
//! | `fail-once:OP:VM` | the first attempt fails (retryable); later attempts succeed |
//! | `slow:OP:VM:DURATION` | OP on VM takes DURATION longer (real time, not scaled) |
//! | `site-down:SITE` | nothing at SITE can be reached |
//! | `host-down:HOST` | nothing on HOST can be reached |
//!
//! OP is an operation name (`start-replica`, see [`OpKind`]) or `*`; VM is a
//! VM name or `*`. Faults are deterministic: no probabilities, so a failing
//! test fails the same way every run.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_saphyr::Spanned;

use super::OpKind;
use crate::plan::model::Inventory;

/// The fault kinds, as written.
pub const KINDS: [&str; 5] = ["fail", "fail-once", "slow", "site-down", "host-down"];

/// One injected fault.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Fault {
    Fail {
        op: Option<OpKind>,
        vm: Option<String>,
    },
    FailOnce {
        op: Option<OpKind>,
        vm: Option<String>,
    },
    Slow {
        op: Option<OpKind>,
        vm: Option<String>,
        extra: Duration,
    },
    SiteDown {
        site: String,
    },
    HostDown {
        host: String,
    },
}

fn star<T: fmt::Display>(v: &Option<T>) -> String {
    v.as_ref().map_or("*".to_string(), |v| v.to_string())
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Fail { op, vm } => write!(f, "fail:{}:{}", star(op), star(vm)),
            Fault::FailOnce { op, vm } => write!(f, "fail-once:{}:{}", star(op), star(vm)),
            Fault::Slow { op, vm, extra } => write!(
                f,
                "slow:{}:{}:{}",
                star(op),
                star(vm),
                humantime::format_duration(*extra)
            ),
            Fault::SiteDown { site } => write!(f, "site-down:{site}"),
            Fault::HostDown { host } => write!(f, "host-down:{host}"),
        }
    }
}

/// Why a fault string is wrong (without saying where it came from; see
/// [`FaultError`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultSyntax(pub String);

fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| format!("; did you mean `{c}`?"))
        .unwrap_or_default()
}

fn parse_op(s: &str) -> Result<Option<OpKind>, FaultSyntax> {
    if s == "*" {
        return Ok(None);
    }
    OpKind::parse(s).map(Some).ok_or_else(|| {
        FaultSyntax(format!(
            "unknown operation `{s}`{}; expected `*` or one of {}",
            did_you_mean(s, OpKind::ALL.iter().map(|k| k.as_str())),
            OpKind::ALL.map(|k| k.as_str()).join(", ")
        ))
    })
}

fn parse_name(what: &str, s: &str, star_ok: bool) -> Result<Option<String>, FaultSyntax> {
    if star_ok && s == "*" {
        return Ok(None);
    }
    if s.is_empty() {
        return Err(FaultSyntax(format!("the {what} name is empty")));
    }
    if s.chars().any(|c| c.is_whitespace() || c == '*') {
        return Err(FaultSyntax(format!(
            "`{s}` is not a {what} name{}",
            if star_ok {
                " (use `*` alone for every one)"
            } else {
                ""
            }
        )));
    }
    Ok(Some(s.to_string()))
}

impl FromStr for Fault {
    type Err = FaultSyntax;

    fn from_str(s: &str) -> Result<Fault, FaultSyntax> {
        let s = s.trim();
        if s.is_empty() {
            return Err(FaultSyntax(
                "empty fault; expected e.g. fail:start-replica:web-01".to_string(),
            ));
        }
        let parts: Vec<&str> = s.split(':').collect();
        let kind = parts[0];
        let args = &parts[1..];
        let want = |n: usize, form: &str| -> Result<(), FaultSyntax> {
            if args.len() == n {
                Ok(())
            } else {
                Err(FaultSyntax(format!(
                    "`{kind}` takes {} ({form}), got {}",
                    crate::text::count(n, "argument"),
                    args.len()
                )))
            }
        };
        match kind {
            "fail" => {
                want(2, "fail:OP:VM")?;
                Ok(Fault::Fail {
                    op: parse_op(args[0])?,
                    vm: parse_name("VM", args[1], true)?,
                })
            }
            "fail-once" => {
                want(2, "fail-once:OP:VM")?;
                Ok(Fault::FailOnce {
                    op: parse_op(args[0])?,
                    vm: parse_name("VM", args[1], true)?,
                })
            }
            "slow" => {
                want(3, "slow:OP:VM:DURATION, e.g. slow:start-replica:web-01:30s")?;
                let extra = humantime::parse_duration(args[2]).map_err(|e| {
                    FaultSyntax(format!(
                        "bad duration `{}`: {e} (write e.g. 500ms, 30s, 2m)",
                        args[2]
                    ))
                })?;
                Ok(Fault::Slow {
                    op: parse_op(args[0])?,
                    vm: parse_name("VM", args[1], true)?,
                    extra,
                })
            }
            "site-down" => {
                want(1, "site-down:SITE")?;
                Ok(Fault::SiteDown {
                    site: parse_name("site", args[0], false)?.unwrap_or_default(),
                })
            }
            "host-down" => {
                want(1, "host-down:HOST")?;
                Ok(Fault::HostDown {
                    host: parse_name("host", args[0], false)?.unwrap_or_default(),
                })
            }
            other => Err(FaultSyntax(format!(
                "unknown fault `{other}`; expected {}",
                KINDS.join(", ")
            ))),
        }
    }
}

impl Serialize for Fault {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Fault {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Fault, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map_err(|e: FaultSyntax| serde::de::Error::custom(e.0))
    }
}

/// A fault that could not be read, with where it came from: `--inject
/// \`fial:start-replica:web-01\`: unknown fault \`fial\`; expected ...` or
/// `faults.yaml:3:5: \`...\`: ...`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{place}: {message}")]
pub struct FaultError {
    pub place: String,
    pub message: String,
}

/// The faults in force.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FaultSet {
    pub faults: Vec<Fault>,
}

/// The fault file: `faults:` then a list of fault strings.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "drplan simulated-fabric faults")]
struct FaultFile {
    /// Faults, each as on the command line (`fail:start-replica:web-01`).
    #[schemars(with = "Vec<String>")]
    faults: Vec<Spanned<String>>,
}

fn matches<T: PartialEq>(sel: &Option<T>, v: &T) -> bool {
    sel.as_ref().is_none_or(|s| s == v)
}

impl FaultSet {
    pub fn new(faults: Vec<Fault>) -> FaultSet {
        FaultSet { faults }
    }

    pub fn is_empty(&self) -> bool {
        self.faults.is_empty()
    }

    /// Parse `--inject` values: every bad one is reported, not just the first.
    pub fn from_cli<S: AsRef<str>>(args: &[S]) -> Result<FaultSet, Vec<FaultError>> {
        let mut faults = Vec::new();
        let mut errors = Vec::new();
        for a in args {
            let a = a.as_ref();
            match a.parse() {
                Ok(f) => faults.push(f),
                Err(FaultSyntax(m)) => errors.push(FaultError {
                    place: format!("--inject `{a}`"),
                    message: m,
                }),
            }
        }
        if errors.is_empty() {
            Ok(FaultSet { faults })
        } else {
            Err(errors)
        }
    }

    /// Parse a fault file's text (YAML, or JSON which is YAML too); `name`
    /// is what errors call the file.
    pub fn from_text(name: &str, text: &str) -> Result<FaultSet, Vec<FaultError>> {
        let file: FaultFile = crate::plan::yaml::parse(name, text.as_bytes()).map_err(|ds| {
            ds.into_iter()
                .map(|d| FaultError {
                    place: format!("{}:{}:{}", d.file, d.line, d.column),
                    message: match &d.hint {
                        Some(h) => format!("{} ({h})", d.message),
                        None => d.message.clone(),
                    },
                })
                .collect::<Vec<_>>()
        })?;
        let mut faults = Vec::new();
        let mut errors = Vec::new();
        for entry in &file.faults {
            match entry.value.parse() {
                Ok(f) => faults.push(f),
                Err(FaultSyntax(m)) => errors.push(FaultError {
                    place: format!(
                        "{name}:{}:{}",
                        entry.referenced.line(),
                        entry.referenced.column()
                    ),
                    message: format!("`{}`: {m}", entry.value),
                }),
            }
        }
        if errors.is_empty() {
            Ok(FaultSet { faults })
        } else {
            Err(errors)
        }
    }

    /// Read a fault file (size-limited like plan files).
    pub fn from_file(path: &Path) -> Result<FaultSet, Vec<FaultError>> {
        let name = path.display().to_string();
        let bytes = crate::plan::read_source(path).map_err(|d| {
            vec![FaultError {
                place: name.clone(),
                message: d.message,
            }]
        })?;
        let text = String::from_utf8(bytes).map_err(|_| {
            vec![FaultError {
                place: name.clone(),
                message: "the file is not UTF-8 text".to_string(),
            }]
        })?;
        FaultSet::from_text(&name, &text)
    }

    /// Faults naming a VM, site or host the inventory does not have (a typo
    /// would otherwise inject nothing, silently).
    pub fn check(&self, inv: &Inventory) -> Vec<FaultError> {
        let mut out = Vec::new();
        let hosts: Vec<&str> = inv
            .sites
            .iter()
            .flat_map(|s| s.clouds.iter())
            .flat_map(|c| c.hosts.iter())
            .map(|h| h.name.as_str())
            .collect();
        let sites: Vec<&str> = inv.sites.iter().map(|s| s.name.as_str()).collect();
        for f in &self.faults {
            let problem = match f {
                Fault::Fail { vm: Some(vm), .. }
                | Fault::FailOnce { vm: Some(vm), .. }
                | Fault::Slow { vm: Some(vm), .. }
                    if inv.vm(vm).is_none() =>
                {
                    Some(format!(
                        "VM `{vm}` is not in the inventory{}",
                        did_you_mean(vm, inv.vms.iter().map(|v| v.name.as_str()))
                    ))
                }
                Fault::SiteDown { site } if !sites.contains(&site.as_str()) => Some(format!(
                    "site `{site}` is not in the inventory{}",
                    did_you_mean(site, sites.iter().copied())
                )),
                Fault::HostDown { host } if !hosts.contains(&host.as_str()) => Some(format!(
                    "host `{host}` is not in the inventory{}",
                    did_you_mean(host, hosts.iter().copied())
                )),
                _ => None,
            };
            if let Some(message) = problem {
                out.push(FaultError {
                    place: format!("fault `{f}`"),
                    message,
                });
            }
        }
        out
    }

    pub fn site_down(&self, site: &str) -> bool {
        self.faults
            .iter()
            .any(|f| matches!(f, Fault::SiteDown { site: s } if s == site))
    }

    pub fn host_down(&self, host: &str) -> bool {
        self.faults
            .iter()
            .any(|f| matches!(f, Fault::HostDown { host: h } if h == host))
    }

    /// The `fail:` fault for OP on VM, if any.
    pub fn fail(&self, op: OpKind, vm: &str) -> Option<&Fault> {
        self.faults.iter().find(|f| {
            matches!(f, Fault::Fail { op: o, vm: v } if matches(o, &op) && matches(v, &vm.to_string()))
        })
    }

    /// The `fail-once:` faults for OP on VM.
    pub fn fail_once(&self, op: OpKind, vm: &str) -> impl Iterator<Item = &Fault> {
        let vm = vm.to_string();
        self.faults.iter().filter(move |f| {
            matches!(f, Fault::FailOnce { op: o, vm: v } if matches(o, &op) && matches(v, &vm))
        })
    }

    /// The extra delay of `slow:` faults for OP on VM (they add up).
    pub fn extra_delay(&self, op: OpKind, vm: &str) -> Duration {
        let vm = vm.to_string();
        self.faults
            .iter()
            .filter_map(|f| match f {
                Fault::Slow {
                    op: o,
                    vm: v,
                    extra,
                } if matches(o, &op) && matches(v, &vm) => Some(*extra),
                _ => None,
            })
            .sum()
    }
}
