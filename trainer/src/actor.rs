//! [`VecActor`]: acts in `N` environments at once — one keypoint batch for all their frames, one
//! recurrent Q-network step, epsilon-greedy actions — and cuts each environment's stream into
//! replay sequences with a [`SequenceWriter`] per environment.

use actor::{SequenceWriter, SequenceWriterConfig, Step};
use agent::{AgentConfig, FrontEndShape, KeypointAgent, LstmState};
use permakey::model::{frames_to_tensor, KeypointModel};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use replay::Sequence;
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

use crate::{
    env::VecEnv,
    transport::{KeypointSource, ParameterSource, ReplayWriter},
};

/// One finished game (all lives) of a training environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpisodeRecord {
    /// Agent steps of the whole run when it ended.
    pub agent_steps: u64,
    pub env: usize,
    pub game_return: f32,
    pub game_length: u32,
}

/// Front end's shape, read from one forward pass on a blank frame.
pub fn front_end_shape(front: &dyn KeypointModel) -> FrontEndShape {
    let size = front.image_size();
    let blank = Tensor::zeros([1, 3, size, size], (Kind::Float, front.device()));
    let features = front.features(&blank).size();
    FrontEndShape { num_keypoints: front.num_keypoints(), feature_channels: features[1], feature_size: features[2], gauss_std: front.gauss_std() }
}

/// The acting half of the agent.
pub struct VecActor {
    vs: nn::VarStore,
    agent: KeypointAgent,
    version: Option<u64>,
    state: LstmState,
    writers: Vec<SequenceWriter>,
    obs: Vec<u8>,
    obs_shape: [usize; 3],
    store_state: bool,
    clip_rewards: bool,
    run_id: u64,
    pub(crate) rng: ChaCha8Rng,
    /// Agent steps taken by this actor.
    pub steps: u64,
}

impl VecActor {
    pub fn new(
        agent: &AgentConfig,
        front: FrontEndShape,
        num_actions: i64,
        writer: SequenceWriterConfig,
        num_envs: usize,
        seed: u64,
        clip_rewards: bool,
        device: Device,
    ) -> anyhow::Result<Self> {
        let vs = nn::VarStore::new(device);
        let net = KeypointAgent::new(&vs.root(), agent, front, num_actions);
        let store_state = writer.recurrent_state_len > 0;
        let writers = (0..num_envs)
            .map(|i| SequenceWriter::new(writer.clone(), i as u32, seed))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            vs,
            agent: net,
            version: None,
            state: LstmState::zeros(num_envs as i64, device),
            writers,
            obs: Vec::new(),
            obs_shape: writer.obs_shape,
            store_state,
            clip_rewards,
            run_id: seed,
            rng: ChaCha8Rng::seed_from_u64(seed),
            steps: 0,
        })
    }

    /// Numbers this actor's environments `offset..offset + N` in the sequences it writes (the
    /// distributed mode's fleet-wide environment index); call before [`VecActor::start`].
    pub fn set_env_offset(&mut self, offset: usize) -> anyhow::Result<()> {
        let config = self.writers[0].config().clone();
        self.writers = (0..self.writers.len())
            .map(|i| SequenceWriter::new(config.clone(), u32::try_from(offset + i)?, self.run_id).map_err(anyhow::Error::from))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(())
    }

    /// Parameter version the actor acts with (None before the first fetch).
    pub fn version(&self) -> Option<u64> {
        self.version
    }

    pub fn agent(&self) -> &KeypointAgent {
        &self.agent
    }

    /// Loads newer parameters if the source has them; returns whether it did. The version the
    /// actor acts with never goes down: parameters not above the held version are ignored even
    /// from a source that offers them (a learner restarted from a checkpoint older than what the
    /// actor holds republishes older versions; the actor keeps its copy until the learner's
    /// versions pass it). Each load is logged at debug level (`parameters loaded version=N`).
    pub fn sync(&mut self, source: &dyn ParameterSource) -> anyhow::Result<bool> {
        match source.load_newer(self.version, &mut self.vs)? {
            Some(version) => {
                self.version = Some(version);
                tracing::debug!(version, "parameters loaded");
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Starts every environment afresh (LSTM states zero).
    pub fn start(&mut self, env: &mut dyn VecEnv) -> anyhow::Result<()> {
        anyhow::ensure!(env.num_envs() == self.writers.len(), "actor built for {} envs, got {}", self.writers.len(), env.num_envs());
        anyhow::ensure!(env.obs_shape() == self.obs_shape, "environment frames are {:?}, the actor expects {:?}", env.obs_shape(), self.obs_shape);
        self.obs = env.reset()?.to_vec();
        for w in &mut self.writers {
            w.reset();
        }
        self.state = LstmState::zeros(self.writers.len() as i64, self.state.h.device());
        Ok(())
    }

    /// Ends every running episode as truncated and hands its remaining sequences to `replay`
    /// (a checkpoint cut); call [`VecActor::start`] with fresh environments afterwards.
    pub fn cut(&mut self, replay: &mut dyn ReplayWriter) -> anyhow::Result<usize> {
        let mut out = Vec::new();
        for w in &mut self.writers {
            out.extend(w.flush_truncated()?);
        }
        let n = out.len();
        replay.insert(out)?;
        Ok(n)
    }

    /// One step of every environment with exploration `epsilon`; sequences go to `replay`,
    /// finished games are returned.
    pub fn step(&mut self, env: &mut dyn VecEnv, front: &mut dyn KeypointSource, replay: &mut dyn ReplayWriter, epsilon: f64) -> anyhow::Result<Vec<EpisodeRecord>> {
        let n = self.writers.len();
        let (centres, features) = front.infer(&self.obs, n, self.obs_shape, self.vs.device())?;
        let (q, next) = self.agent.step(&centres, &features, &self.state);
        let greedy = Vec::<i64>::try_from(q.argmax(-1, false).to_device(Device::Cpu))?;
        let num_actions = self.agent.num_actions() as usize;
        let actions: Vec<usize> = greedy
            .iter()
            .map(|&g| if self.rng.random::<f64>() < epsilon { self.rng.random_range(0..num_actions) } else { g as usize })
            .collect();
        let centres = Vec::<f32>::try_from(centres.to_device(Device::Cpu).to_kind(Kind::Float).flatten(0, -1))?;
        let states = if self.store_state { Vec::<f32>::try_from(self.state.flatten().to_device(Device::Cpu).flatten(0, -1))? } else { Vec::new() };
        let (next_obs, steps) = env.step(&actions)?;
        let (dims, frame) = (centres.len() / n, self.obs.len() / n);
        let state_len = states.len() / n;
        let version = self.version.unwrap_or(0);
        let mut sequences: Vec<Sequence> = Vec::new();
        let mut finished = Vec::new();
        let mut keep = vec![1f32; n];
        self.steps += n as u64;
        for (i, s) in steps.iter().enumerate() {
            let reward = if self.clip_rewards { atari::config::clip_reward(s.reward) } else { s.reward };
            sequences.extend(self.writers[i].add(Step {
                observation: &self.obs[i * frame..(i + 1) * frame],
                action: actions[i] as u16,
                reward,
                terminal: s.terminated,
                truncated: s.truncated,
                recurrent_state: &states[i * state_len..(i + 1) * state_len],
                keypoints: &centres[i * dims..(i + 1) * dims],
                parameter_version: version,
            })?);
            if s.terminated || s.truncated {
                keep[i] = 0.0;
            }
            if s.game_over {
                finished.push(EpisodeRecord { agent_steps: self.steps, env: i, game_return: s.game_return, game_length: s.game_length });
            }
        }
        self.obs.copy_from_slice(next_obs);
        record_step(n as u64, env.frames_per_step(), epsilon, &finished);
        let keep = Tensor::from_slice(&keep).to_device(self.vs.device()).unsqueeze(1);
        self.state = LstmState { h: &next.h * &keep, c: &next.c * &keep };
        replay.insert(sequences)?;
        Ok(finished)
    }
}

/// The step's metrics (`pkrl_agent_steps_total`, frames, finished games, epsilon).
fn record_step(agent_steps: u64, frames_per_step: u64, epsilon: f64, finished: &[EpisodeRecord]) {
    use pkrl_telemetry::names;
    metrics::counter!(names::AGENT_STEPS).increment(agent_steps);
    metrics::counter!(names::ENV_FRAMES).increment(agent_steps * frames_per_step);
    metrics::gauge!(names::ACTOR_EPSILON).set(epsilon);
    for game in finished {
        metrics::counter!(names::EPISODES).increment(1);
        metrics::histogram!(names::EPISODE_RETURN).record(f64::from(game.game_return));
        metrics::histogram!(names::EPISODE_LENGTH).record(f64::from(game.game_length));
    }
}

/// Which finished games an evaluation counts: environment `i` of `n` counts its first `quota[i]`
/// games, the quotas summing to the games asked for (`episodes / n`, the first `episodes % n`
/// environments one more). The set of counted games is fixed before any is played, so the
/// estimate is a mean over whole, independent games. Counting the first `episodes` games to
/// finish across all environments instead (what this crate did before) over-represents short
/// games whenever an environment plays more than one: the games still running when the count is
/// reached are dropped, and in Atari the short games are mostly the low-scoring ones.
#[derive(Debug, Clone, PartialEq)]
pub struct GameQuota {
    quota: Vec<usize>,
    games: Vec<Vec<(f32, u32)>>,
}

impl GameQuota {
    /// Quotas for `episodes` games over `num_envs` environments.
    pub fn new(episodes: usize, num_envs: usize) -> Self {
        let envs = num_envs.max(1);
        let quota = (0..num_envs).map(|i| episodes / envs + usize::from(i < episodes % envs)).collect();
        Self { quota, games: vec![Vec::new(); num_envs] }
    }

    /// Games environment `env` still has to finish.
    pub fn missing(&self, env: usize) -> usize {
        self.quota[env] - self.games[env].len()
    }

    /// Records a finished game of `env`; returns whether it counts.
    pub fn record(&mut self, env: usize, game_return: f32, game_length: u32) -> bool {
        let counts = self.missing(env) > 0;
        if counts {
            self.games[env].push((game_return, game_length));
        }
        counts
    }

    /// Every quota met.
    pub fn complete(&self) -> bool {
        (0..self.quota.len()).all(|i| self.missing(i) == 0)
    }

    /// The counted games, environment by environment, each in the order it played them.
    pub fn into_results(self) -> Vec<(f32, u32)> {
        self.games.into_iter().flatten().collect()
    }
}

/// Environments an evaluation of `episodes` games needs at most: more would play games that
/// are never counted.
pub fn eval_env_count(eval_envs: usize, episodes: usize) -> usize {
    eval_envs.min(episodes).max(1)
}

/// Greedy evaluation (spec 8): `episodes` whole games in `env` (no life-loss terminal, raw
/// scores), LSTM reset per game, epsilon `epsilon` (0 in the paper). Each environment counts a
/// fixed number of its games ([`GameQuota`]), so the result is an unbiased mean over whole games
/// and a function of the seeds; an environment past its quota keeps stepping (the vector steps
/// together) but its games are not counted.
pub fn evaluate(agent: &KeypointAgent, front: &dyn KeypointModel, env: &mut dyn VecEnv, episodes: usize, epsilon: f64, seed: u64) -> anyhow::Result<Vec<(f32, u32)>> {
    let n = env.num_envs();
    let [h, w, c] = env.obs_shape().map(|x| x as i64);
    let device = front.device();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut obs = env.reset()?.to_vec();
    let mut state = LstmState::zeros(n as i64, device);
    let mut quota = GameQuota::new(episodes, n);
    let mut safety = 0u64;
    while !quota.complete() {
        let frames = frames_to_tensor(&obs, n as i64, h, w, c, device);
        let out = front.keypoints(&frames);
        let (q, next) = agent.step(&out.centres, &out.features, &state);
        let greedy = Vec::<i64>::try_from(q.argmax(-1, false).to_device(Device::Cpu))?;
        let actions: Vec<usize> = greedy
            .iter()
            .map(|&g| if epsilon > 0.0 && rng.random::<f64>() < epsilon { rng.random_range(0..env.num_actions()) } else { g as usize })
            .collect();
        let (next_obs, steps) = env.step(&actions)?;
        let mut keep = vec![1f32; n];
        for (i, s) in steps.iter().enumerate() {
            if s.terminated || s.truncated {
                keep[i] = 0.0;
            }
            if s.game_over {
                quota.record(i, s.game_return, s.game_length);
            }
        }
        obs.copy_from_slice(next_obs);
        let keep = Tensor::from_slice(&keep).to_device(device).unsqueeze(1);
        state = LstmState { h: &next.h * &keep, c: &next.c * &keep };
        safety += 1;
        anyhow::ensure!(safety < 10_000_000, "evaluation did not finish {episodes} games");
    }
    Ok(quota.into_results())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::EnvStep;

    #[test]
    fn quotas_split_the_games_and_count_each_environments_first_games() {
        assert_eq!(GameQuota::new(10, 4).quota, [3, 3, 2, 2]);
        assert_eq!(GameQuota::new(3, 3).quota, [1, 1, 1]);
        assert_eq!(GameQuota::new(2, 4).quota, [1, 1, 0, 0]);
        assert_eq!((eval_env_count(5, 10), eval_env_count(5, 3), eval_env_count(4, 0)), (5, 3, 1));
        // 4 games on 2 environments. Environment 0 plays short games worth 10, environment 1
        // long games worth 100: 0 finishes three before 1 finishes its first.
        let mut q = GameQuota::new(4, 2);
        assert!(q.record(0, 10.0, 5) && q.record(0, 10.0, 5));
        assert!(!q.record(0, 10.0, 5), "past its quota of 2");
        assert!(!q.complete());
        assert!(q.record(1, 100.0, 50));
        assert_eq!(q.missing(1), 1);
        assert!(q.record(1, 100.0, 50) && q.complete());
        let results = q.into_results();
        assert_eq!(results, [(10.0, 5), (10.0, 5), (100.0, 50), (100.0, 50)]);
        // Mean 55; the first four games to finish (10, 10, 10, 100) would have given 32.5.
        assert_eq!(results.iter().map(|r| r.0).sum::<f32>() / 4.0, 55.0);
    }

    /// Two environments whose games last `lengths[i]` steps and score `returns[i]`.
    struct Scripted {
        lengths: [u32; 2],
        returns: [f32; 2],
        played: [u32; 2],
        obs: Vec<u8>,
    }

    impl VecEnv for Scripted {
        fn num_envs(&self) -> usize {
            2
        }
        fn num_actions(&self) -> usize {
            3
        }
        fn obs_shape(&self) -> [usize; 3] {
            [84, 84, 3]
        }
        fn reset(&mut self) -> anyhow::Result<&[u8]> {
            Ok(&self.obs)
        }
        fn step(&mut self, _actions: &[usize]) -> anyhow::Result<(&[u8], Vec<EnvStep>)> {
            let steps = (0..2)
                .map(|i| {
                    self.played[i] += 1;
                    let over = self.played[i] == self.lengths[i];
                    let step = EnvStep { reward: 0.0, terminated: over, truncated: false, game_over: over, game_return: if over { self.returns[i] } else { 0.0 }, game_length: self.played[i] };
                    if over {
                        self.played[i] = 0;
                    }
                    step
                })
                .collect();
            Ok((&self.obs, steps))
        }
    }

    #[test]
    fn evaluation_counts_each_environments_share_not_the_first_games_to_finish() {
        let front = crate::toy::OracleKeypoints::new(Device::Cpu);
        let vs = nn::VarStore::new(Device::Cpu);
        let agent = KeypointAgent::new(&vs.root(), &AgentConfig::default(), front_end_shape(&front), 3);
        let mut env = Scripted { lengths: [1, 5], returns: [10.0, 100.0], played: [0; 2], obs: vec![0; 2 * 84 * 84 * 3] };
        // Environment 0 finishes five 1-step games before environment 1 finishes its first.
        let results = evaluate(&agent, &front, &mut env, 4, 0.0, 7).unwrap();
        assert_eq!(results, [(10.0, 1), (10.0, 1), (100.0, 5), (100.0, 5)], "two games of each environment");
    }
}
