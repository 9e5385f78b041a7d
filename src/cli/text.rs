//! Small pieces of wording every command shares, so that they read the
//! same everywhere: counted nouns ("1 VM", "2 VMs", from the engine's
//! [`drplan_engine::text`], which its own messages use too), the job-id argument
//! parser ("`abc` is not a job id") and step names as an operator types
//! them (a unique short name for a full step key).

pub use drplan_engine::text::{count, noun_for};

/// The value parser of every JOB argument: job ids are the numbers
/// `drplan jobs` lists, and anything else is refused (exit 2) with a
/// message that says so rather than clap's "invalid digit found in string".
pub fn parse_job_id(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t.strip_prefix('#').unwrap_or(t);
    t.parse::<u64>().map_err(|_| {
        format!("`{s}` is not a job id: job ids are numbers, as `drplan jobs` lists them")
    })
}

/// How a step name an operator typed matched a job's step keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepMatch {
    /// Exactly one step: its full key.
    One(String),
    /// Several steps end with that name: their keys, to choose from.
    Ambiguous(Vec<String>),
    /// No step has that key or ends with that name.
    None,
}

/// Resolve `wanted` against step keys: the full key
/// (`application/post/verify-health`), or a short name made of its last
/// `/`-separated parts (`verify-health`, `web-01/start-replica`) when
/// exactly one key ends with it.
pub fn match_step(wanted: &str, keys: &[String]) -> StepMatch {
    let wanted = wanted.trim().trim_matches('/');
    if let Some(k) = keys.iter().find(|k| k.as_str() == wanted) {
        return StepMatch::One(k.clone());
    }
    if wanted.is_empty() {
        return StepMatch::None;
    }
    let suffix = format!("/{wanted}");
    let found: Vec<String> = keys
        .iter()
        .filter(|k| k.ends_with(&suffix))
        .cloned()
        .collect();
    match found.len() {
        0 => StepMatch::None,
        1 => StepMatch::One(found.into_iter().next().unwrap_or_default()),
        _ => StepMatch::Ambiguous(found),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_are_numbers() {
        assert_eq!(parse_job_id("12"), Ok(12));
        assert_eq!(parse_job_id("#3"), Ok(3));
        let e = parse_job_id("abc").unwrap_err();
        assert!(e.contains("`abc` is not a job id"), "{e}");
        assert!(e.contains("drplan jobs"), "{e}");
        assert!(parse_job_id("-1").is_err());
        assert!(parse_job_id("").is_err());
    }

    #[test]
    fn short_step_names_resolve_when_unique() {
        let keys: Vec<String> = [
            "application/post/verify-health",
            "web/vm/web-01/start-replica",
            "web/vm/web-02/start-replica",
            "web/pre/notify",
        ]
        .map(String::from)
        .to_vec();
        let one = |k: &str| StepMatch::One(k.to_string());
        assert_eq!(
            match_step("verify-health", &keys),
            one("application/post/verify-health")
        );
        assert_eq!(
            match_step("application/post/verify-health", &keys),
            one("application/post/verify-health")
        );
        assert_eq!(
            match_step("web-02/start-replica", &keys),
            one("web/vm/web-02/start-replica")
        );
        assert_eq!(
            match_step("start-replica", &keys),
            StepMatch::Ambiguous(vec![
                "web/vm/web-01/start-replica".into(),
                "web/vm/web-02/start-replica".into()
            ])
        );
        // A partial word is not a name.
        assert_eq!(match_step("health", &keys), StepMatch::None);
        assert_eq!(match_step("", &keys), StepMatch::None);
    }
}
