//! Fuzzing configuration parsing with proptest (issue 10, item 3; libFuzzer does not fit: the
//! config crate links libtorch and ALE through the crates whose settings it gathers). Each case
//! sets one real key of the configuration (taken from the defaults, so every section is reached)
//! to a hostile value — zero, negative, huge, NaN, infinite, wrong type, empty — or loads random
//! TOML text as a file. `Config::load` must return a valid config or a one-line error naming
//! what was wrong; never panic. A config that loads must survive `to_toml` and load again to the
//! same text (what a run folder's `config.toml` relies on).
//!
//! `PKRL_FUZZ_CASES` raises the number of cases (default 1000); `scripts/fuzz.sh` runs 1,000,000.

use pkrl_config::Config;
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("PKRL_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000)
}

/// Every leaf key of the default configuration, dotted (`replay.capacity_sequences`).
fn keys() -> &'static [String] {
    static KEYS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        let tree: toml::Table = toml::from_str(&Config::default().to_toml()).unwrap();
        let mut out = Vec::new();
        fn walk(prefix: &str, table: &toml::Table, out: &mut Vec<String>) {
            for (key, value) in table {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                match value {
                    toml::Value::Table(inner) => walk(&path, inner, out),
                    _ => out.push(path),
                }
            }
        }
        walk("", &tree, &mut out);
        out
    })
}

fn hostile_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0".to_owned()),
        Just("-1".to_owned()),
        Just("18446744073709551615".to_owned()),
        Just("99999999999999999999999".to_owned()),
        Just("1e308".to_owned()),
        Just("nan".to_owned()),
        Just("inf".to_owned()),
        Just("-inf".to_owned()),
        Just("0.0".to_owned()),
        Just("true".to_owned()),
        Just("\"\"".to_owned()),
        Just("\"http://\"".to_owned()),
        Just("[]".to_owned()),
        Just("[0, -1]".to_owned()),
        Just("{}".to_owned()),
        any::<i64>().prop_map(|v| v.to_string()),
        any::<f64>().prop_map(|v| format!("{v:?}")),
        "[a-z0-9_\\-\\[\\]{}\".,= ]{0,12}",
    ]
}

fn check(result: Result<Config, pkrl_config::ConfigError>) -> Result<(), TestCaseError> {
    match result {
        Ok(config) => {
            let text = config.to_toml();
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("config.toml");
            std::fs::write(&path, &text).unwrap();
            let again = Config::load(Some(&path), Vec::<(String, String)>::new(), &[]);
            prop_assert!(again.is_ok(), "a loaded config must load again from its TOML: {:?}\n{text}", again.err().map(|e| e.to_string()));
            prop_assert_eq!(again.unwrap().to_toml(), text);
        }
        Err(error) => {
            let message = error.to_string();
            prop_assert!(!message.is_empty() && !message.contains('\n'), "one-line error: {message:?}");
        }
    }
    Ok(())
}

#[test]
fn the_keys_cover_every_section() {
    let keys = keys();
    for section in ["env.", "permakey.", "replay.", "learner.", "train.", "keypoint_server.", "cluster."] {
        assert!(keys.iter().any(|k| k.starts_with(section)), "{section} missing from {} keys", keys.len());
    }
    // and the property's checks bite: a zero replay capacity is an error naming the key
    let err = Config::load(None, Vec::<(String, String)>::new(), &["replay.capacity_sequences=0".into()]).unwrap_err().to_string();
    assert!(err.contains("capacity_sequences"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn hostile_overrides_give_a_config_or_one_line(index in any::<usize>(), value in hostile_value()) {
        let key = &keys()[index % keys().len()];
        check(Config::load(None, Vec::<(String, String)>::new(), &[format!("{key}={value}")]))?;
    }

    #[test]
    fn random_toml_files_give_a_config_or_one_line(text in "(\\[[a-z_]{1,12}\\]\n|[a-z_]{1,16} = ([0-9\\-.e]{1,8}|\"[a-z]{0,6}\"|true|\\[\\])\n){0,8}") {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fuzz.toml");
        std::fs::write(&path, &text).unwrap();
        check(Config::load(Some(&path), Vec::<(String, String)>::new(), &[]))?;
    }
}
