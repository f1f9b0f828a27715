//! Checkpoints load in Python `safetensors` with the same names, shapes and values.

use std::{collections::BTreeMap, process::Command};

use permakey::{checkpoint, train::build, PermaKeyConfig};
use tch::{Device, Kind};

#[test]
fn permakey_checkpoint_loads_in_python_safetensors() {
    let venv = std::env::var("PERMAKEY_VENV").expect("PERMAKEY_VENV is set by .cargo/config.toml; run `make setup`");
    let python = std::path::Path::new(&venv).join("bin/python");
    assert!(python.exists(), "{} is missing; run `make setup`", python.display());
    let config = PermaKeyConfig { encoder_filters: [8, 16, 16, 16], lsp_hidden: [32, 16, 16], ..PermaKeyConfig::default() };
    let (vs, _model) = build(&config, Device::Cpu, 0).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let saved = checkpoint::save(dir.path(), "step-1", "permakey", &config, &vs, &BTreeMap::new(), 1, 0, serde_json::Value::Null).unwrap();
    let file = saved.join("model.safetensors");
    let script = "import sys, json\nfrom safetensors.numpy import load_file\nd = load_file(sys.argv[1])\nprint(json.dumps({k: [list(v.shape), float(v.astype('float64').sum())] for k, v in d.items()}))";
    let out = Command::new(&python).arg("-c").arg(script).arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let python_view: BTreeMap<String, (Vec<i64>, f64)> = serde_json::from_slice(&out.stdout).unwrap();
    let rust_view = vs.variables();
    assert_eq!(python_view.len(), rust_view.len(), "every variable, batch-norm statistics included");
    assert!(python_view.contains_key("vae.encoder.conv1.conv.weight"), "{:?}", python_view.keys().take(5).collect::<Vec<_>>());
    for (name, tensor) in rust_view {
        let (shape, sum) = &python_view[&name];
        assert_eq!(shape, &tensor.size(), "{name}");
        let expected = tensor.to_kind(Kind::Double).sum(Kind::Double).double_value(&[]);
        assert!((sum - expected).abs() <= 1e-6 * (1.0 + expected.abs()), "{name}: {sum} vs {expected}");
    }
}
