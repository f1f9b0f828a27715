//! Fuzzing checkpoint loading with proptest (issue 10, item 3; libFuzzer does not fit here: the
//! loader links libtorch). A real checkpoint (a linear layer and a batch norm, plus an optimiser
//! tensor) is saved once; each case damages a copy — the tensor file with its CRC-32 recomputed
//! in checkpoint.json (so the safetensors parser itself is reached), the tensor file alone, or
//! checkpoint.json's text — then loads and restores it. The outcome must be a clean `Ok` or a
//! one-line error; never a panic. The undamaged checkpoint must still load afterwards (damage to
//! a copy never reaches the original).
//!
//! `PKRL_FUZZ_CASES` raises the number of cases (default 300: each case writes files and parses
//! tensors); `scripts/fuzz.sh` runs 1,000,000.

use std::{collections::BTreeMap, fs, path::Path};

use permakey::checkpoint::{load, save};
use proptest::prelude::*;
use tch::{Device, Kind, Tensor, nn};

fn cases() -> u32 {
    std::env::var("PKRL_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(300)
}

fn model(vs: &nn::VarStore) {
    let p = vs.root();
    let _ = nn::linear(&p / "fc", 4, 3, Default::default());
    let _ = nn::batch_norm1d(&p / "bn", 3, Default::default());
}

fn original() -> &'static Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        model(&vs);
        let optimiser = BTreeMap::from([("adam.m.fc.weight".to_owned(), Tensor::ones([3, 4], (Kind::Float, Device::Cpu)))]);
        save(dir.path(), "step-1", "fuzz", &"cfg", &vs, &optimiser, 1, 0, serde_json::Value::Null).unwrap();
        dir
    })
    .path()
}

#[derive(Debug, Clone)]
enum Damage {
    /// Byte edits in model.safetensors, CRC-32 in checkpoint.json recomputed.
    TensorsFixedUp(Vec<(usize, u8)>),
    /// Byte edits in model.safetensors as they are (the CRC-32 catches them).
    Tensors(Vec<(usize, u8)>),
    /// Truncation of model.safetensors, CRC-32 recomputed.
    TruncatedTensors(usize),
    /// Byte edits in checkpoint.json.
    Meta(Vec<(usize, u8)>),
}

fn damage() -> impl Strategy<Value = Damage> {
    let edits = || proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6);
    prop_oneof![
        3 => edits().prop_map(Damage::TensorsFixedUp),
        1 => edits().prop_map(Damage::Tensors),
        1 => any::<usize>().prop_map(Damage::TruncatedTensors),
        2 => edits().prop_map(Damage::Meta),
    ]
}

fn edit(bytes: &mut [u8], edits: &[(usize, u8)]) {
    if bytes.is_empty() {
        return;
    }
    let len = bytes.len();
    for &(at, value) in edits {
        // half the edits land in the first 128 bytes: the safetensors header and JSON keys
        let at = if at % 2 == 0 { at % len.min(128) } else { at % len };
        bytes[at] = value;
    }
}

fn set_crc(meta: &Path, tensors: &[u8]) {
    let mut json: serde_json::Value = serde_json::from_str(&fs::read_to_string(meta).unwrap()).unwrap();
    json["crc32"] = crc32fast::hash(tensors).into();
    fs::write(meta, serde_json::to_string(&json).unwrap()).unwrap();
}

fn load_and_restore(dir: &Path) -> Result<(), String> {
    let loaded = load::<String>(dir, "fuzz").map_err(|e| e.to_string())?;
    let mut vs = nn::VarStore::new(Device::Cpu);
    model(&vs);
    loaded.restore(&mut vs).map_err(|e| e.to_string())
}

#[test]
fn the_undamaged_checkpoint_loads_and_restores() {
    load_and_restore(&original().join("step-1")).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn damaged_checkpoints_load_or_fail_with_one_line(damage in damage()) {
        let copy = tempfile::tempdir().unwrap();
        for file in ["checkpoint.json", "model.safetensors"] {
            fs::copy(original().join("step-1").join(file), copy.path().join(file)).unwrap();
        }
        let (meta, tensors_path) = (copy.path().join("checkpoint.json"), copy.path().join("model.safetensors"));
        let mut tensors = fs::read(&tensors_path).unwrap();
        match &damage {
            Damage::TensorsFixedUp(edits) => {
                edit(&mut tensors, edits);
                set_crc(&meta, &tensors);
            }
            Damage::Tensors(edits) => edit(&mut tensors, edits),
            Damage::TruncatedTensors(at) => {
                tensors.truncate(at % tensors.len());
                set_crc(&meta, &tensors);
            }
            Damage::Meta(edits) => {
                let mut text = fs::read(&meta).unwrap();
                edit(&mut text, edits);
                fs::write(&meta, text).unwrap();
            }
        }
        fs::write(&tensors_path, &tensors).unwrap();
        if let Err(message) = load_and_restore(copy.path()) {
            prop_assert!(!message.is_empty() && !message.contains('\n'), "one-line error: {message:?}");
        }
        prop_assert!(load_and_restore(&original().join("step-1")).is_ok());
    }
}
