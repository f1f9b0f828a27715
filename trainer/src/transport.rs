//! The transports between the boxes, each one interface with an in-process implementation here
//! and a gRPC one in [`crate::remote`] (issue 8): the actor gets keypoints from a
//! [`KeypointSource`], writes sequences to a [`ReplayWriter`], pulls parameters from a
//! [`ParameterSource`] and reports its steps to a [`ProgressReporter`]; the learner samples from
//! the replay through a [`ReplayClient`] and publishes through a [`ParameterSink`].

use std::sync::{Arc, Mutex};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use replay::{ReplayConfig, SampleKey, SampledBatch, Sequence, SequenceReplay};
use permakey::model::{frames_to_tensor, KeypointModel};
use tch::{Device, Tensor};

/// The replay buffer as an actor sees it: somewhere to put sequences.
pub trait ReplayWriter: Send {
    /// Inserts sequences in order.
    fn insert(&mut self, sequences: Vec<Sequence>) -> anyhow::Result<()>;
}

/// The replay buffer as the learner sees it.
pub trait ReplayClient: ReplayWriter {
    /// Samples `batch` sequences.
    fn sample(&mut self, batch: usize) -> anyhow::Result<SampledBatch>;
    /// Reports new priorities of sampled keys.
    fn update_priorities(&mut self, keys: &[SampleKey], priorities: &[f64]) -> anyhow::Result<()>;
    /// Sequences stored.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One published set of the learner's online parameters, as plain arrays (what goes on the wire).
#[derive(Debug, Clone, PartialEq)]
pub struct Parameters {
    /// Learner updates behind these parameters.
    pub version: u64,
    /// `(name, shape, values)`, sorted by name.
    pub arrays: Vec<(String, Vec<i64>, Vec<f32>)>,
}

impl Parameters {
    /// Copies every variable of `vs` (all must be float).
    pub fn from_var_store(version: u64, vs: &tch::nn::VarStore) -> anyhow::Result<Self> {
        let mut arrays = Vec::new();
        for (name, t) in learner::named_cpu_copies(vs) {
            let values = Vec::<f32>::try_from(t.to_kind(tch::Kind::Float).flatten(0, -1))?;
            arrays.push((name, t.size(), values));
        }
        Ok(Self { version, arrays })
    }

    /// Loads into `vs`, which must have exactly these variables and shapes.
    pub fn load_into(&self, vs: &mut tch::nn::VarStore) -> anyhow::Result<()> {
        let named = self
            .arrays
            .iter()
            .map(|(name, shape, values)| (name.clone(), Tensor::from_slice(values).view(shape.as_slice())))
            .collect();
        learner::load_named(vs, &named, "actor parameters")?;
        Ok(())
    }
}

/// Where the actor gets parameters from.
pub trait ParameterSource: Send {
    /// The newest parameters if their version is above `have`.
    fn fetch_newer(&self, have: Option<u64>) -> anyhow::Result<Option<Arc<Parameters>>>;
}

/// Where the learner publishes parameters.
pub trait ParameterSink: Send {
    fn publish(&self, parameters: Parameters) -> anyhow::Result<()>;
}

/// The frozen keypoint front end as the actor sees it.
pub trait KeypointSource {
    /// Centres `n x K x 2` and features `n x C x H x W`, on `device`, of `n` HWC u8 frames of
    /// `shape` back to back.
    fn infer(&mut self, frames: &[u8], n: usize, shape: [usize; 3], device: Device) -> anyhow::Result<(Tensor, Tensor)>;
}

/// A keypoint model in this process (the embedded mode; the keypoint service runs the same).
pub struct LocalKeypoints<'a>(pub &'a dyn KeypointModel);

impl KeypointSource for LocalKeypoints<'_> {
    fn infer(&mut self, frames: &[u8], n: usize, shape: [usize; 3], device: Device) -> anyhow::Result<(Tensor, Tensor)> {
        let [h, w, c] = shape.map(|x| x as i64);
        let out = self.0.keypoints(&frames_to_tensor(frames, n as i64, h, w, c, self.0.device()));
        Ok((out.centres.to_device(device), out.features.to_device(device)))
    }
}

/// What the learner answers an actor's progress report with (see
/// [`learner_service::progress`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProgressReply {
    /// Agent steps of all actors of the run.
    pub total_agent_steps: u64,
    /// Learner updates done.
    pub updates: u64,
    /// Updates the schedule asks for now (equal to `updates` while the learner waits for data).
    pub updates_due: u64,
    /// The run's budget is spent: stop acting.
    pub done: bool,
}

/// Where an actor reports its agent steps and finished games.
pub trait ProgressReporter: Send {
    /// `agent_steps`: this actor's steps since it started; `finished`: games since the last report.
    fn report(&mut self, agent_steps: u64, finished: &[crate::EpisodeRecord], parameter_version: Option<u64>) -> anyhow::Result<ProgressReply>;
}

/// In-process replay: the replay library behind a mutex, sampled with a seeded generator.
#[derive(Clone)]
pub struct LocalReplay {
    inner: Arc<Mutex<LocalReplayState>>,
}

pub(crate) struct LocalReplayState {
    pub(crate) table: SequenceReplay,
    pub(crate) rng: ChaCha8Rng,
}

impl LocalReplay {
    pub fn new(config: ReplayConfig, seed: u64) -> anyhow::Result<Self> {
        Ok(Self::from_parts(SequenceReplay::new(config)?, ChaCha8Rng::seed_from_u64(seed)))
    }

    pub(crate) fn from_parts(table: SequenceReplay, rng: ChaCha8Rng) -> Self {
        Self { inner: Arc::new(Mutex::new(LocalReplayState { table, rng })) }
    }

    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut LocalReplayState) -> R) -> R {
        f(&mut self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }
}

impl ReplayWriter for LocalReplay {
    fn insert(&mut self, sequences: Vec<Sequence>) -> anyhow::Result<()> {
        self.with(|s| sequences.into_iter().try_for_each(|seq| s.table.insert(seq).map(|_| ())))?;
        Ok(())
    }
}

impl ReplayClient for LocalReplay {
    fn sample(&mut self, batch: usize) -> anyhow::Result<SampledBatch> {
        Ok(self.with(|s| s.table.sample(batch, &mut s.rng))?)
    }

    fn update_priorities(&mut self, keys: &[SampleKey], priorities: &[f64]) -> anyhow::Result<()> {
        self.with(|s| s.table.update_priorities(keys, priorities))?;
        Ok(())
    }

    fn len(&self) -> usize {
        self.with(|s| s.table.len())
    }
}

/// In-process parameter board: the learner publishes, actors fetch the newest.
#[derive(Clone, Default)]
pub struct LocalParameters {
    latest: Arc<Mutex<Option<Arc<Parameters>>>>,
}

impl ParameterSource for LocalParameters {
    fn fetch_newer(&self, have: Option<u64>) -> anyhow::Result<Option<Arc<Parameters>>> {
        let latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        Ok(latest.as_ref().filter(|p| have.is_none_or(|v| p.version > v)).cloned())
    }
}

impl ParameterSink for LocalParameters {
    fn publish(&self, parameters: Parameters) -> anyhow::Result<()> {
        *self.latest.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(parameters));
        Ok(())
    }
}


/// Sequences collected in memory, in order (the threaded trainer's actor hands them to the
/// learner's thread with the rest of a step's report).
impl ReplayWriter for Vec<Sequence> {
    fn insert(&mut self, sequences: Vec<Sequence>) -> anyhow::Result<()> {
        self.extend(sequences);
        Ok(())
    }
}
