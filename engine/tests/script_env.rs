//! What a script's environment holds: the DRPLAN_* context, the plan's
//! `env`, an allowlist of the engine's variables, and nothing else. One test
//! in its own binary, because it changes the process environment.

mod script_support;

use std::collections::BTreeMap;

use drplan_engine::script::{RunnerConfig, ScriptOutcome, ScriptRunner};
use script_support::*;

fn parse_env(output: &str) -> BTreeMap<String, String> {
    // `env -0` separates entries with NUL, so multi-line values parse too.
    output
        .split('\0')
        .filter(|e| !e.is_empty())
        .map(|e| {
            let (k, v) = e.split_once('=').expect("NAME=value");
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[tokio::test]
async fn context_and_plan_env_are_present_and_engine_secrets_are_not() {
    let secret_name = format!("DRPLAN_TEST_SECRET_{}", std::process::id());
    // SAFETY: this binary has one test, so no other thread reads the
    // environment while it is changed (the runtime is current-thread).
    unsafe {
        std::env::set_var(&secret_name, "s3cret");
        std::env::set_var("DRPLAN_API_TOKEN", "token-of-the-engine");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "aws-secret");
        std::env::set_var("TERM", "xterm-256color");
        std::env::set_var("LC_TIME", "C.UTF-8");
        std::env::set_var("HOME", "/home/drplan-test");
    }
    let runner = ScriptRunner::new(RunnerConfig::from_process_env());
    let mut req = request(argv(&["env", "-0"]));
    req.env
        .insert("APP_URL".into(), "http://shop.example".into());
    // A plan may pass a secret on purpose; then the script gets it.
    req.env
        .insert("AWS_SECRET_ACCESS_KEY".into(), "from-the-plan".into());
    // It may not replace what drplan sets.
    req.env.insert("DRPLAN_OUTPUT".into(), "/etc/passwd".into());
    req.context
        .values
        .insert("dns_zone".into(), "shop.example".into());
    let r = runner.run(req, std::future::pending()).await;
    assert_eq!(r.outcome, ScriptOutcome::Succeeded, "{}", r.output);
    let env = parse_env(&r.output);

    // The DRPLAN_* context.
    assert_eq!(env["DRPLAN_JOB_ID"], "42");
    assert_eq!(env["DRPLAN_PLAN"], "shop");
    assert_eq!(env["DRPLAN_FAILOVER_KIND"], "planned");
    assert_eq!(env["DRPLAN_DIRECTION"], "forward");
    assert_eq!(env["DRPLAN_GROUP"], "web");
    assert_eq!(env["DRPLAN_STEP"], "update-dns");
    assert_eq!(env["DRPLAN_ATTEMPT"], "1");
    assert_eq!(env["DRPLAN_IDEMPOTENCY_KEY"], "42/web/post/update-dns/1");
    assert_eq!(env["DRPLAN_VALUE_dns_zone"], "shop.example");
    assert_eq!(env["DRPLAN_VALUES"], r#"{"dns_zone":"shop.example"}"#);
    let vms: serde_json::Value = serde_json::from_str(&env["DRPLAN_VMS"]).unwrap();
    assert_eq!(
        vms,
        serde_json::json!([
            {"name": "web-01", "nics": [{"source_network": "prod", "network": "prod-dr", "subnet": "web", "ip": "10.2.0.11"}]},
            {"name": "web-02", "nics": [{"source_network": "prod", "network": null, "subnet": null, "ip": null}]}
        ])
    );
    assert!(
        env["DRPLAN_OUTPUT"].contains("drplan-output-"),
        "{}",
        env["DRPLAN_OUTPUT"]
    );
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("the step's env sets DRPLAN_OUTPUT")),
        "{:?}",
        r.warnings
    );

    // The plan's env, including what it passes on purpose.
    assert_eq!(env["APP_URL"], "http://shop.example");
    assert_eq!(env["AWS_SECRET_ACCESS_KEY"], "from-the-plan");

    // The engine's allowlisted variables.
    assert_eq!(env["HOME"], "/home/drplan-test");
    assert_eq!(env["LC_TIME"], "C.UTF-8");
    assert!(env.contains_key("PATH"));

    // And nothing else of the engine's.
    assert!(!env.contains_key(&secret_name), "engine secret leaked");
    assert!(!env.contains_key("DRPLAN_API_TOKEN"), "engine token leaked");
    assert!(!env.contains_key("TERM"));
    let allowed = |k: &str| {
        k.starts_with("DRPLAN_")
            || k.starts_with("LC_")
            || [
                "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR",
            ]
            .contains(&k)
            || ["APP_URL", "AWS_SECRET_ACCESS_KEY"].contains(&k)
    };
    let extra: Vec<_> = env.keys().filter(|k| !allowed(k)).collect();
    assert!(extra.is_empty(), "unexpected variables: {extra:?}");
}
