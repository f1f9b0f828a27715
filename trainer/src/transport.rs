//! The transports between the boxes, each one interface with an in-process implementation here
//! and a gRPC one in [`crate::remote`] (issue 8): the actor gets keypoints from a
//! [`KeypointSource`], writes sequences to a [`ReplayWriter`], pulls parameters from a
//! [`ParameterSource`] and reports its steps to a [`ProgressReporter`]; the learner samples from
//! the replay through a [`ReplayClient`] and publishes through a [`ParameterSink`].

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

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
        Self::from_named(version, learner::named_cpu_copies(vs).iter().map(|(name, t)| (name, t)))
    }

    /// `named` tensors (in name order, on any device) as plain arrays.
    fn from_named<'a>(version: u64, named: impl IntoIterator<Item = (&'a String, &'a Tensor)>) -> anyhow::Result<Self> {
        let mut arrays = Vec::new();
        for (name, t) in named {
            let values = Vec::<f32>::try_from(t.to_device(Device::Cpu).to_kind(tch::Kind::Float).flatten(0, -1))?;
            arrays.push((name.clone(), t.size(), values));
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

    /// Loads the newest parameters into `vs` if their version is above `have`; returns that
    /// version. The default goes through [`ParameterSource::fetch_newer`]'s plain arrays and
    /// ignores a version not above `have` even if the source offers one; [`LocalParameters`]
    /// copies tensors on the device instead.
    fn load_newer(&self, have: Option<u64>, vs: &mut tch::nn::VarStore) -> anyhow::Result<Option<u64>> {
        match self.fetch_newer(have)? {
            Some(parameters) if have.is_none_or(|held| parameters.version > held) => {
                parameters.load_into(vs)?;
                Ok(Some(parameters.version))
            }
            Some(parameters) => {
                tracing::debug!(offered = parameters.version, held = have, "older parameters ignored");
                Ok(None)
            }
            None => Ok(None),
        }
    }
}

/// Where the learner publishes parameters.
pub trait ParameterSink: Send {
    fn publish(&self, parameters: Parameters) -> anyhow::Result<()>;

    /// Publishes the variables of `vs` as `version`. The default copies them to plain arrays
    /// ([`Parameters::from_var_store`]) for [`ParameterSink::publish`]; [`LocalParameters`] keeps
    /// a copy on the variables' device.
    fn publish_from(&self, version: u64, vs: &tch::nn::VarStore) -> anyhow::Result<()> {
        self.publish(Parameters::from_var_store(version, vs)?)
    }
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
///
/// [`ParameterSink::publish_from`] keeps the newest parameters as tensors on the learner's
/// device, copied into the same buffers at every publish, and [`ParameterSource::load_newer`]
/// copies them into the actor's variables: in the embedded mode, where the learner and the actor
/// share a device, parameters never leave it. Decision (issue 11's profile): the plain-array path
/// it replaces read every variable back to the host and wrote it up again, at every vector step
/// (`parameter_sync_every = 1`) — on a CUDA device one wait for the queued work per variable, and
/// four host copies of the whole network on any device. Both paths load the same values.
/// [`ParameterSource::fetch_newer`] still answers with plain arrays, converted on demand.
#[derive(Clone, Default)]
pub struct LocalParameters {
    latest: Arc<Mutex<Option<Board>>>,
}

/// What a [`LocalParameters`] holds.
enum Board {
    Arrays(Arc<Parameters>),
    /// Copies of the variables, by name, on the device they were published from.
    Tensors { version: u64, tensors: BTreeMap<String, Tensor> },
}

impl Board {
    fn version(&self) -> u64 {
        match self {
            Board::Arrays(parameters) => parameters.version,
            Board::Tensors { version, .. } => *version,
        }
    }
}

impl LocalParameters {
    fn board(&self) -> std::sync::MutexGuard<'_, Option<Board>> {
        self.latest.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ParameterSource for LocalParameters {
    fn fetch_newer(&self, have: Option<u64>) -> anyhow::Result<Option<Arc<Parameters>>> {
        let board = self.board();
        match board.as_ref().filter(|b| have.is_none_or(|v| b.version() > v)) {
            None => Ok(None),
            Some(Board::Arrays(parameters)) => Ok(Some(parameters.clone())),
            Some(Board::Tensors { version, tensors }) => Ok(Some(Arc::new(Parameters::from_named(*version, tensors)?))),
        }
    }

    fn load_newer(&self, have: Option<u64>, vs: &mut tch::nn::VarStore) -> anyhow::Result<Option<u64>> {
        let board = self.board();
        match board.as_ref().filter(|b| have.is_none_or(|v| b.version() > v)) {
            None => Ok(None),
            Some(Board::Arrays(parameters)) => {
                parameters.load_into(vs)?;
                Ok(Some(parameters.version))
            }
            Some(Board::Tensors { version, tensors }) => {
                // The copies are queued under the lock: a publish after it is ordered after them.
                learner::load_named(vs, tensors, "actor parameters")?;
                Ok(Some(*version))
            }
        }
    }
}

impl ParameterSink for LocalParameters {
    fn publish(&self, parameters: Parameters) -> anyhow::Result<()> {
        *self.board() = Some(Board::Arrays(Arc::new(parameters)));
        Ok(())
    }

    fn publish_from(&self, version: u64, vs: &tch::nn::VarStore) -> anyhow::Result<()> {
        let variables = vs.variables();
        let mut board = self.board();
        tch::no_grad(|| {
            if let Some(Board::Tensors { version: held, tensors }) = board.as_mut() {
                let same = tensors.len() == variables.len()
                    && variables.iter().all(|(name, v)| tensors.get(name).is_some_and(|t| t.size() == v.size() && t.device() == v.device()));
                if same {
                    for (name, v) in &variables {
                        tensors.get_mut(name).expect("checked above").copy_(v);
                    }
                    *held = version;
                    return;
                }
            }
            let tensors = variables.iter().map(|(name, v)| (name.clone(), v.detach().copy())).collect();
            *board = Some(Board::Tensors { version, tensors });
        });
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

#[cfg(test)]
mod tests {
    use tch::nn;

    use super::*;

    fn net(vs: &nn::VarStore, out: i64) {
        let root = vs.root();
        let _ = root.var("layer/weight", &[3, out], nn::Init::Randn { mean: 0.0, stdev: 1.0 });
        let _ = root.var("layer/bias", &[out], nn::Init::Randn { mean: 0.0, stdev: 1.0 });
    }

    fn values(vs: &nn::VarStore) -> BTreeMap<String, Vec<f32>> {
        vs.variables().into_iter().map(|(n, t)| (n, Vec::<f32>::try_from(t.flatten(0, -1)).unwrap())).collect()
    }

    #[test]
    fn the_local_board_hands_the_published_tensors_to_actors_and_the_same_arrays_to_fetches() {
        let (learner, mut actor) = (nn::VarStore::new(Device::Cpu), nn::VarStore::new(Device::Cpu));
        net(&learner, 4);
        net(&actor, 4);
        let board = LocalParameters::default();
        assert_eq!(board.load_newer(None, &mut actor).unwrap(), None, "nothing published");
        board.publish_from(3, &learner).unwrap();
        assert_eq!(board.load_newer(Some(3), &mut actor).unwrap(), None, "not above the held version");
        assert_ne!(values(&actor), values(&learner));
        assert_eq!(board.load_newer(Some(2), &mut actor).unwrap(), Some(3));
        assert_eq!(values(&actor), values(&learner));
        // The plain-array form of the same version is what the array path would have published.
        let fetched = board.fetch_newer(None).unwrap().unwrap();
        assert_eq!(*fetched, Parameters::from_var_store(3, &learner).unwrap());
        // The next publish reuses the board's buffers: a copy, not a view of the learner's variables.
        let held = values(&learner);
        tch::no_grad(|| {
            for (_, mut v) in learner.variables() {
                let _ = v.g_add_scalar_(1.0);
            }
        });
        assert_eq!(board.load_newer(Some(2), &mut actor).unwrap(), Some(3));
        assert_eq!(values(&actor), held, "version 3 is the values at its publish");
        board.publish_from(4, &learner).unwrap();
        assert_eq!(board.load_newer(Some(3), &mut actor).unwrap(), Some(4));
        assert_eq!(values(&actor), values(&learner));
        // Arrays published afterwards replace the tensors; tensors after arrays replace them back.
        board.publish(Parameters::from_var_store(5, &actor).unwrap()).unwrap();
        assert_eq!(board.fetch_newer(Some(4)).unwrap().unwrap().version, 5);
        board.publish_from(6, &learner).unwrap();
        assert_eq!(board.load_newer(Some(5), &mut actor).unwrap(), Some(6));
        // An actor of another shape gets a one-line error naming the variable.
        let mut other = nn::VarStore::new(Device::Cpu);
        net(&other, 5);
        let err = board.load_newer(None, &mut other).unwrap_err().to_string();
        assert!(err.contains("layer/") && !err.contains('\n'), "{err}");
    }
}
