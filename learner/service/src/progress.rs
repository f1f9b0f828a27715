//! [`ProgressBoard`]: the run's agent-step count across all actor processes, the games they
//! finished, and the learner's update count — what `ReportProgress` reads and writes.
//!
//! The embedded trainer's schedule (one learner update per `train_every` agent steps, the actor
//! held within `max_update_lag` updates of it) needs the total of all actors' steps; in the
//! distributed mode each actor reports its cumulative count and the board sums them:
//! - an actor is known by `actor_id` and the `run_id` its process drew at start; a report with a
//!   new `run_id` (a restarted actor) moves the old run's last count into `retired` steps, so
//!   steps are never lost or counted twice;
//! - counts are cumulative per run, so a lost or repeated report changes no count: the board
//!   keeps the largest count seen (the games of a retried report whose first attempt did arrive
//!   are recorded twice: at-least-once, for statistics only);
//! - the whole state is serialisable, so a learner checkpoint restores it and actors that kept
//!   running through a learner restart continue their counts.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard},
};

use pkrl_proto::v1;
use serde::{Deserialize, Serialize};

/// One finished game as the learner records it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ReportedGame {
    pub actor_id: u32,
    pub env_id: u32,
    pub game_return: f32,
    pub game_length: u32,
    /// The run's total agent steps when the report arrived.
    pub total_agent_steps: u64,
}

/// The serialisable part of the board (learner checkpoints hold it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProgressState {
    /// `actor_id -> (run_id, agent_steps)` of each actor's current process.
    pub actors: BTreeMap<u32, (u64, u64)>,
    /// Steps of actor processes that have since been replaced by a restarted one.
    pub retired_steps: u64,
}

impl ProgressState {
    /// Agent steps of the whole run.
    pub fn total(&self) -> u64 {
        self.retired_steps + self.actors.values().map(|&(_, steps)| steps).sum::<u64>()
    }
}

/// Updates the learner's schedule asks for after a number of agent steps.
pub type Schedule = Arc<dyn Fn(u64) -> u64 + Send + Sync>;

struct Inner {
    state: ProgressState,
    /// When each actor last reported (not checkpointed).
    seen: BTreeMap<u32, std::time::Instant>,
    updates: u64,
    done: bool,
    waiting_for_data: bool,
    pending: Vec<ReportedGame>,
}

/// Shared by the learner (reads totals, drains games, sets its update count) and the service.
pub struct ProgressBoard {
    inner: Mutex<Inner>,
    budget: u64,
    schedule: Schedule,
}

impl ProgressBoard {
    /// A board for a run of `budget` agent steps whose learner owes `schedule(steps)` updates.
    pub fn new(budget: u64, schedule: Schedule, state: ProgressState, updates: u64) -> Self {
        Self { inner: Mutex::new(Inner { state, seen: BTreeMap::new(), updates, done: false, waiting_for_data: false, pending: Vec::new() }), budget, schedule }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records an actor's report (validated by the caller) and answers with the run's totals.
    pub fn report(&self, request: &v1::ReportProgressRequest) -> v1::ReportProgressResponse {
        let mut inner = self.lock();
        inner.seen.insert(request.actor_id, std::time::Instant::now());
        let entry = inner.state.actors.get(&request.actor_id).copied();
        match entry {
            Some((run_id, steps)) if run_id == request.run_id => {
                inner.state.actors.insert(request.actor_id, (run_id, steps.max(request.agent_steps)));
            }
            Some((_, steps)) => {
                inner.state.retired_steps += steps;
                inner.state.actors.insert(request.actor_id, (request.run_id, request.agent_steps));
            }
            None => {
                inner.state.actors.insert(request.actor_id, (request.run_id, request.agent_steps));
            }
        }
        let total = inner.state.total();
        for game in &request.finished {
            inner.pending.push(ReportedGame {
                actor_id: request.actor_id,
                env_id: game.env_id,
                game_return: game.game_return,
                game_length: game.game_length,
                total_agent_steps: total,
            });
        }
        // A learner waiting for data (replay below its minimum size, the rate limiter holding it)
        // owes nothing the actors could wait for: holding them would deadlock.
        let updates_due = if inner.waiting_for_data { inner.updates } else { (self.schedule)(total) };
        v1::ReportProgressResponse { total_agent_steps: total, updates: inner.updates, done: inner.done, updates_due }
    }

    /// Agent steps of the whole run so far.
    pub fn total_agent_steps(&self) -> u64 {
        self.lock().state.total()
    }

    /// Actors whose last report is at most `within` old.
    pub fn active_actors(&self, within: std::time::Duration) -> usize {
        self.lock().seen.values().filter(|t| t.elapsed() <= within).count()
    }

    /// The run's budget of agent steps.
    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// Updates owed at the current total.
    pub fn updates_due(&self) -> u64 {
        (self.schedule)(self.total_agent_steps())
    }

    /// The learner's update count, as reports answer it.
    pub fn set_updates(&self, updates: u64) {
        self.lock().updates = updates;
    }

    /// Whether the learner is blocked waiting for sampled data (then actors are not held).
    pub fn set_waiting_for_data(&self, waiting: bool) {
        self.lock().waiting_for_data = waiting;
    }

    /// From now on every report is answered `done`.
    pub fn finish(&self) {
        self.lock().done = true;
    }

    pub fn is_done(&self) -> bool {
        self.lock().done
    }

    /// Games reported since the last call, in arrival order.
    pub fn drain_games(&self) -> Vec<ReportedGame> {
        std::mem::take(&mut self.lock().pending)
    }

    /// The counts to checkpoint.
    pub fn state(&self) -> ProgressState {
        self.lock().state.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(actor_id: u32, run_id: u64, agent_steps: u64, games: &[f32]) -> v1::ReportProgressRequest {
        let finished = games.iter().map(|&r| v1::FinishedGame { env_id: 1, game_return: r, game_length: 10 }).collect();
        v1::ReportProgressRequest { actor_id, run_id, agent_steps, finished, parameter_version: 0 }
    }

    #[test]
    fn totals_sum_actors_and_survive_repeats_and_restarts() {
        // One update per 4 steps after 100 steps, as TrainConfig::updates_due with learning_starts 100.
        let board = ProgressBoard::new(1000, Arc::new(|s: u64| s.saturating_sub(100) / 4), ProgressState::default(), 0);
        assert_eq!(board.report(&report(0, 11, 80, &[])).total_agent_steps, 80);
        let r = board.report(&report(1, 22, 60, &[2.0]));
        assert_eq!((r.total_agent_steps, r.updates_due), (140, 10));
        // A repeated or late (smaller) report changes nothing.
        assert_eq!(board.report(&report(0, 11, 70, &[])).total_agent_steps, 140);
        // Actor 0 restarts: its 80 steps are kept, its new process counts from 0.
        assert_eq!(board.report(&report(0, 33, 8, &[])).total_agent_steps, 148);
        board.set_updates(7);
        let r = board.report(&report(1, 22, 100, &[-1.0, 3.5]));
        assert_eq!((r.total_agent_steps, r.updates, r.updates_due, r.done), (188, 7, 22, false));
        board.set_waiting_for_data(true);
        assert_eq!(board.report(&report(1, 22, 100, &[])).updates_due, 7, "no hold while the learner starves");
        board.set_waiting_for_data(false);
        assert_eq!(board.active_actors(std::time::Duration::from_secs(30)), 2);
        let games = board.drain_games();
        assert_eq!(games.iter().map(|g| (g.actor_id, g.game_return, g.total_agent_steps)).collect::<Vec<_>>(), [(1, 2.0, 140), (1, -1.0, 188), (1, 3.5, 188)]);
        assert!(board.drain_games().is_empty());
        board.finish();
        assert!(board.report(&report(1, 22, 100, &[])).done);
        // A learner restored from the state continues the count.
        let restored = ProgressBoard::new(1000, Arc::new(|s: u64| s / 4), board.state(), 7);
        assert_eq!(restored.report(&report(0, 33, 12, &[])).total_agent_steps, 192);
    }
}
