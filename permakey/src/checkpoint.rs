//! Checkpoints: one folder per save holding `model.safetensors` (every variable of the model's
//! `VarStore` under its tch name, e.g. `vae.encoder.conv1.conv.weight`, plus `adam.m.*`/`adam.v.*`
//! moments) and `checkpoint.json` (kind, model config, training step, CRC-32 of the tensor file).
//!
//! Writes are atomic: the folder is written as `<name>.tmp-<pid>`, synced, then renamed, and the
//! `latest` pointer file is replaced by rename; a crash leaves the previous checkpoint and pointer
//! intact. Loading checks the CRC and every name and shape, and says which file is wrong.

use std::{
    collections::BTreeMap,
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use tch::{nn, Tensor};

pub const FORMAT_VERSION: u32 = 1;
const TENSORS: &str = "model.safetensors";
const META: &str = "checkpoint.json";
const LATEST: &str = "latest";

/// Why a checkpoint could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot write checkpoint {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("no checkpoint at {0} (expected {META} and {TENSORS}, or a `latest` pointer)")]
    Missing(PathBuf),
    #[error("checkpoint {path} is corrupted: {reason}")]
    Corrupted { path: PathBuf, reason: String },
    #[error("checkpoint {path} does not fit this model: {reason}")]
    Mismatch { path: PathBuf, reason: String },
}

/// The JSON half of a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointMeta<C> {
    pub format_version: u32,
    /// `permakey` or `transporter`.
    pub kind: String,
    pub config: C,
    /// Training batches done.
    pub step: u64,
    pub epoch: u64,
    pub crc32: u32,
    /// Free-form training state (e.g. best validation loss), kept for resuming.
    pub extra: serde_json::Value,
}

fn crc_of(path: &Path) -> std::io::Result<u32> {
    Ok(crc32fast::hash(&fs::read(path)?))
}

fn write_err(path: &Path, e: impl std::fmt::Display) -> CheckpointError {
    CheckpointError::Write { path: path.to_owned(), reason: e.to_string() }
}

/// Saves `vs` (+ optional optimiser state) as `<dir>/<name>/` and points `<dir>/latest` at it.
pub fn save<C: Serialize>(
    dir: &Path,
    name: &str,
    kind: &str,
    config: &C,
    vs: &nn::VarStore,
    optimiser: &BTreeMap<String, Tensor>,
    step: u64,
    epoch: u64,
    extra: serde_json::Value,
) -> Result<PathBuf, CheckpointError> {
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    named.extend(optimiser.iter().map(|(k, t)| (k.clone(), t.shallow_clone())));
    save_named(dir, name, kind, config, named, step, epoch, extra, |_| Ok(()))
}

/// [`save`] for any named tensors; `extra_files` writes further files into the (temporary)
/// checkpoint folder before it is renamed into place, so they are as atomic as the tensors.
#[allow(clippy::too_many_arguments)]
pub fn save_named<C: Serialize>(
    dir: &Path,
    name: &str,
    kind: &str,
    config: &C,
    mut named: Vec<(String, Tensor)>,
    step: u64,
    epoch: u64,
    extra: serde_json::Value,
    extra_files: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<PathBuf, CheckpointError> {
    fs::create_dir_all(dir).map_err(|e| write_err(dir, e))?;
    let final_dir = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).map_err(|e| write_err(&tmp, e))?;
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let cpu: Vec<(String, Tensor)> = named.into_iter().map(|(n, t)| (n, t.detach().to_device(tch::Device::Cpu).contiguous())).collect();
    let tensors = tmp.join(TENSORS);
    Tensor::write_safetensors(&cpu, &tensors).map_err(|e| write_err(&tensors, e))?;
    let crc32 = crc_of(&tensors).map_err(|e| write_err(&tensors, e))?;
    extra_files(&tmp).map_err(|e| write_err(&tmp, e))?;
    let meta = CheckpointMeta { format_version: FORMAT_VERSION, kind: kind.to_owned(), config, step, epoch, crc32, extra };
    let text = serde_json::to_string_pretty(&meta).map_err(|e| write_err(&tmp, e))?;
    write_synced(&tmp.join(META), text.as_bytes())?;
    fs::File::open(&tensors).and_then(|f| f.sync_all()).map_err(|e| write_err(&tensors, e))?;
    let _ = fs::remove_dir_all(&final_dir);
    fs::rename(&tmp, &final_dir).map_err(|e| write_err(&final_dir, e))?;
    let pointer_tmp = dir.join(format!("{LATEST}.tmp-{}", std::process::id()));
    write_synced(&pointer_tmp, name.as_bytes())?;
    fs::rename(&pointer_tmp, dir.join(LATEST)).map_err(|e| write_err(dir, e))?;
    Ok(final_dir)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    let mut file = fs::File::create(path).map_err(|e| write_err(path, e))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(|e| write_err(path, e))
}

/// Resolves a checkpoint path: a checkpoint folder, or a run's checkpoint folder with `latest`.
pub fn resolve(path: &Path) -> Result<PathBuf, CheckpointError> {
    if path.join(META).is_file() {
        return Ok(path.to_owned());
    }
    if let Ok(name) = fs::read_to_string(path.join(LATEST)) {
        let target = path.join(name.trim());
        if target.join(META).is_file() {
            return Ok(target);
        }
    }
    Err(CheckpointError::Missing(path.to_owned()))
}

/// A loaded checkpoint: metadata and every tensor by name (on the CPU).
pub struct Loaded<C> {
    pub dir: PathBuf,
    pub meta: CheckpointMeta<C>,
    pub tensors: BTreeMap<String, Tensor>,
}

/// Reads and verifies a checkpoint (`path` as for [`resolve`]); `kind` must match.
pub fn load<C: DeserializeOwned>(path: &Path, kind: &str) -> Result<Loaded<C>, CheckpointError> {
    let dir = resolve(path)?;
    let corrupted = |reason: String| CheckpointError::Corrupted { path: dir.clone(), reason };
    let text = fs::read_to_string(dir.join(META)).map_err(|e| corrupted(format!("cannot read {META}: {e}")))?;
    let raw: CheckpointMeta<serde_json::Value> =
        serde_json::from_str(&text).map_err(|e| corrupted(format!("{META} is invalid: {e}")))?;
    if raw.format_version != FORMAT_VERSION {
        return Err(corrupted(format!("format version {} (this build reads {FORMAT_VERSION})", raw.format_version)));
    }
    if raw.kind != kind {
        return Err(CheckpointError::Mismatch { path: dir, reason: format!("it holds a {} model, not {kind}", raw.kind) });
    }
    let config: C = serde_json::from_value(raw.config)
        .map_err(|e| CheckpointError::Mismatch { path: dir.clone(), reason: format!("its model config does not parse: {e}") })?;
    let meta = CheckpointMeta { format_version: raw.format_version, kind: raw.kind, config, step: raw.step, epoch: raw.epoch, crc32: raw.crc32, extra: raw.extra };
    let tensors_path = dir.join(TENSORS);
    let crc = crc_of(&tensors_path).map_err(|e| corrupted(format!("cannot read {TENSORS}: {e}")))?;
    if crc != meta.crc32 {
        return Err(corrupted(format!("{TENSORS} has CRC-32 {crc:08x}, {META} says {:08x}", meta.crc32)));
    }
    let tensors = Tensor::read_safetensors(&tensors_path)
        .map_err(|e| corrupted(format!("{TENSORS} does not parse: {e}")))?
        .into_iter()
        .collect();
    Ok(Loaded { dir, meta, tensors })
}

impl<C> Loaded<C> {
    /// Copies the saved values into every variable of `vs` (names and shapes must all match).
    pub fn restore(&self, vs: &mut nn::VarStore) -> Result<(), CheckpointError> {
        let mismatch = |reason: String| CheckpointError::Mismatch { path: self.dir.clone(), reason };
        tch::no_grad(|| {
            for (name, mut var) in vs.variables() {
                let saved = self.tensors.get(&name).ok_or_else(|| mismatch(format!("no tensor named {name}")))?;
                if saved.size() != var.size() {
                    return Err(mismatch(format!("{name} has shape {:?}, the model {:?}", saved.size(), var.size())));
                }
                var.copy_(&saved.to_device(var.device()));
            }
            Ok(())
        })
    }

    /// The optimiser tensors (`adam.*`).
    pub fn optimiser_state(&self) -> BTreeMap<String, Tensor> {
        self.tensors.iter().filter(|(k, _)| k.starts_with("adam.")).map(|(k, t)| (k.clone(), t.shallow_clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use tch::{nn::ModuleT, Device, Kind};

    use super::*;

    fn model(vs: &nn::VarStore) -> nn::SequentialT {
        let p = vs.root();
        nn::seq_t().add(nn::linear(&p / "fc", 4, 3, Default::default())).add(nn::batch_norm1d(&p / "bn", 3, Default::default()))
    }

    #[test]
    fn round_trip_gives_identical_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let net = model(&vs);
        let x = Tensor::rand([5, 4], (Kind::Float, Device::Cpu));
        let _ = net.forward_t(&x, true); // moves the batch-norm statistics
        let expected = net.forward_t(&x, false);
        let opt = BTreeMap::from([("adam.m.fc.weight".to_owned(), Tensor::ones([3, 4], (Kind::Float, Device::Cpu)))]);
        save(dir.path(), "step-7", "test", &"cfg", &vs, &opt, 7, 1, serde_json::json!({"best": 0.5})).unwrap();
        let mut fresh = nn::VarStore::new(Device::Cpu);
        let fresh_net = model(&fresh);
        let loaded = load::<String>(dir.path(), "test").unwrap();
        assert_eq!((loaded.meta.step, loaded.meta.config.as_str()), (7, "cfg"));
        loaded.restore(&mut fresh).unwrap();
        assert!(fresh_net.forward_t(&x, false).equal(&expected), "same outputs after restore (batch-norm buffers too)");
        assert_eq!(loaded.optimiser_state().len(), 1);
    }

    #[test]
    fn corruption_and_mismatch_are_clear_errors_and_keep_the_previous_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let _net = model(&vs);
        let empty = BTreeMap::new();
        save(dir.path(), "step-1", "test", &"cfg", &vs, &empty, 1, 0, serde_json::Value::Null).unwrap();
        save(dir.path(), "step-2", "test", &"cfg", &vs, &empty, 2, 0, serde_json::Value::Null).unwrap();
        let tensors = dir.path().join("step-2").join(TENSORS);
        let mut bytes = fs::read(&tensors).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xFF;
        fs::write(&tensors, &bytes).unwrap();
        let err = load::<String>(dir.path(), "test").err().unwrap().to_string();
        assert!(err.contains("is corrupted") && err.contains("CRC-32"), "{err}");
        assert_eq!(load::<String>(&dir.path().join("step-1"), "test").unwrap().meta.step, 1, "the older checkpoint still loads");
        fs::write(&tensors, &bytes[..bytes.len() / 2]).unwrap();
        assert!(load::<String>(dir.path(), "test").is_err());
        let err = load::<String>(&dir.path().join("step-1"), "other").err().unwrap().to_string();
        assert!(err.contains("not other"), "{err}");
        let err = load::<String>(&dir.path().join("nothing"), "test").err().unwrap().to_string();
        assert!(err.starts_with("no checkpoint at"), "{err}");
        let mut other = nn::VarStore::new(Device::Cpu);
        let _ = nn::linear(other.root() / "fc", 4, 2, Default::default());
        let err = load::<String>(&dir.path().join("step-1"), "test").unwrap().restore(&mut other).unwrap_err().to_string();
        assert!(err.contains("shape"), "{err}");
    }
}
