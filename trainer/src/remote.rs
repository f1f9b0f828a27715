//! The gRPC implementations of [`crate::transport`]'s interfaces: the replay service's
//! [`RemoteReplay`] as a [`ReplayWriter`] / [`ReplayClient`], the parameter service's
//! [`RemoteParameters`] as a [`ParameterSource`], and a [`ParameterBoard`] (which the learner's
//! parameter service serves) as a [`ParameterSink`]. Code written against the traits runs
//! unchanged in one process or across processes.
//!
//! Versions: the trainer's [`Parameters::version`] counts learner updates and starts at 0, while
//! the wire never carries version 0 (it means "nothing published"), so the wire version is the
//! update count plus one; the two impls here convert both ways.

use std::sync::Arc;

use learner_service::{ParameterBoard, RemoteParameters};
use replay::{SampleKey, SampledBatch, Sequence};
use replay_service::RemoteReplay;

use crate::transport::{ParameterSink, ParameterSource, Parameters, ReplayClient, ReplayWriter};

impl ReplayWriter for RemoteReplay {
    fn insert(&mut self, sequences: Vec<Sequence>) -> anyhow::Result<()> {
        RemoteReplay::insert(self, &sequences).map(|_| ())
    }
}

impl ReplayClient for RemoteReplay {
    fn sample(&mut self, batch: usize) -> anyhow::Result<SampledBatch> {
        RemoteReplay::sample(self, batch)
    }

    fn update_priorities(&mut self, keys: &[SampleKey], priorities: &[f64]) -> anyhow::Result<()> {
        RemoteReplay::update_priorities(self, keys, priorities).map(|_| ())
    }

    /// The server's size; 0 when it cannot be reached within two seconds (the caller's next
    /// call reports why). No retries: a learner stopping while the replay is gone must not wait.
    fn len(&self) -> usize {
        self.stats_once().map_or(0, |stats| stats.size as usize)
    }
}

impl ParameterSource for RemoteParameters {
    fn fetch_newer(&self, have: Option<u64>) -> anyhow::Result<Option<Arc<Parameters>>> {
        let have_on_wire = have.map(|updates| updates + 1);
        Ok(RemoteParameters::fetch_newer(self, have_on_wire)?.map(|(version, arrays)| Arc::new(Parameters { version: version - 1, arrays })))
    }
}

impl ParameterSink for Arc<ParameterBoard> {
    fn publish(&self, parameters: Parameters) -> anyhow::Result<()> {
        self.publish_arrays(parameters.version + 1, &parameters.arrays)?;
        Ok(())
    }
}
