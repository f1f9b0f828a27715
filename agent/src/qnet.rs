//! The recurrent Q-network (spec 7.3): encoder output (128) -> LSTM(128) -> linear Q-values.
//! No dueling, no distributional head, no frame stacking. The LSTM state is reset to zeros at an
//! episode start; [`RecurrentQNetwork::unroll`] takes a start state and per-step reset flags.

use tch::{nn, nn::RNN, Kind, Tensor};

use crate::encoders::EMBEDDING;

/// LSTM `(h, c)`, each `B x 128`.
#[derive(Debug)]
pub struct LstmState {
    pub h: Tensor,
    pub c: Tensor,
}

impl LstmState {
    pub fn zeros(batch: i64, device: tch::Device) -> Self {
        let zeros = Tensor::zeros([batch, EMBEDDING], (Kind::Float, device));
        Self { h: zeros.shallow_clone(), c: zeros }
    }

    /// `h` and `c` side by side (`B x 256`), the layout replay stores.
    pub fn flatten(&self) -> Tensor {
        Tensor::cat(&[&self.h, &self.c], 1)
    }

    pub fn from_flat(flat: &Tensor) -> Self {
        Self { h: flat.narrow(1, 0, EMBEDDING), c: flat.narrow(1, EMBEDDING, EMBEDDING) }
    }
}

/// LSTM + Q head over encoder embeddings.
#[derive(Debug)]
pub struct RecurrentQNetwork {
    lstm: nn::LSTM,
    head: nn::Linear,
    pub num_actions: i64,
}

impl RecurrentQNetwork {
    pub fn new(path: &nn::Path, num_actions: i64) -> Self {
        Self {
            lstm: nn::lstm(path / "lstm", EMBEDDING, EMBEDDING, Default::default()),
            head: permakey::layers::dense(path / "q", EMBEDDING, num_actions),
            num_actions,
        }
    }

    /// One step: embeddings `B x 128` -> Q-values `B x A` and the next state.
    pub fn step(&self, embedding: &Tensor, state: &LstmState) -> (Tensor, LstmState) {
        let nn::LSTMState((h, c)) = self.lstm.step(embedding, &nn::LSTMState((state.h.unsqueeze(0), state.c.unsqueeze(0))));
        let (h, c) = (h.squeeze_dim(0), c.squeeze_dim(0));
        (h.apply(&self.head), LstmState { h, c })
    }

    /// Unrolls over `embeddings` (`B x T x 128`) from `state`; where `resets[b, t]` is true the
    /// state is zeroed before step `t` (an episode starts there). Returns Q-values `B x T x A`.
    pub fn unroll(&self, embeddings: &Tensor, state: LstmState, resets: Option<&Tensor>) -> (Tensor, LstmState) {
        self.unroll_with_stops(embeddings, state, resets, None)
    }

    /// [`RecurrentQNetwork::unroll`] that also stops gradients through the state before step `t`
    /// where `stops[b, t]` is set (R2D2's burn-in: nothing learnt flows back into the burn-in).
    /// Reads back which steps any row resets or stops at; [`RecurrentQNetwork::unroll_marked`]
    /// takes them from a caller that knows them.
    pub fn unroll_with_stops(&self, embeddings: &Tensor, state: LstmState, resets: Option<&Tensor>, stops: Option<&Tensor>) -> (Tensor, LstmState) {
        let resets = resets.map(|r| (r, marked_steps(r)));
        let stops = stops.map(|s| (s, marked_steps(s)));
        self.unroll_marked(
            embeddings,
            state,
            resets.as_ref().map(|(r, steps)| (*r, steps.as_slice())),
            stops.as_ref().map(|(s, steps)| (*s, steps.as_slice())),
        )
    }

    /// [`RecurrentQNetwork::unroll_with_stops`] given, beside each `B x T` mask, the steps where
    /// any of its rows is set (a superset is allowed: it only splits the unroll further).
    ///
    /// Between marked steps the LSTM runs as one multi-step call (one cuDNN kernel sequence on a
    /// GPU, forward and backward), and the Q head runs once over all steps; at a marked step the
    /// state rows are zeroed (reset) and/or detached (stop) as stepping would. The learner's
    /// sequences mark at most the burn-in boundary, so an unroll is one or two calls instead of
    /// one per step (decision of issue 11's GPU profile: the per-step unroll issued ~12 launches
    /// per step, forward and backward, and the learner update is launch-bound on a GPU).
    pub fn unroll_marked(&self, embeddings: &Tensor, state: LstmState, resets: Option<(&Tensor, &[i64])>, stops: Option<(&Tensor, &[i64])>) -> (Tensor, LstmState) {
        let steps = embeddings.size()[1];
        let mut bounds: Vec<i64> = resets.iter().chain(stops.iter()).flat_map(|(_, marked)| marked.iter().copied()).filter(|&t| t > 0 && t < steps).collect();
        bounds.push(steps);
        bounds.sort_unstable();
        bounds.dedup();
        let mut state = state;
        let mut outputs = Vec::with_capacity(bounds.len());
        let mut start = 0;
        for end in bounds {
            if let Some((resets, marked)) = resets {
                if marked.contains(&start) {
                    let keep = resets.select(1, start).logical_not().to_kind(Kind::Float).unsqueeze(1);
                    state = LstmState { h: &state.h * &keep, c: &state.c * &keep };
                }
            }
            if let Some((stops, marked)) = stops {
                if marked.contains(&start) {
                    let stop = stops.select(1, start).to_kind(Kind::Float).unsqueeze(1);
                    let blend = |x: &Tensor| x.detach() * &stop + x * (1.0 - &stop);
                    state = LstmState { h: blend(&state.h), c: blend(&state.c) };
                }
            }
            let lstm_state = nn::LSTMState((state.h.unsqueeze(0), state.c.unsqueeze(0)));
            let (output, nn::LSTMState((h, c))) = self.lstm.seq_init(&embeddings.narrow(1, start, end - start), &lstm_state);
            outputs.push(output);
            state = LstmState { h: h.squeeze_dim(0), c: c.squeeze_dim(0) };
            start = end;
        }
        let hidden = if outputs.len() == 1 { outputs.pop().expect("one segment") } else { Tensor::cat(&outputs, 1) };
        (hidden.apply(&self.head), state)
    }
}

/// The steps `t` where any row of a `B x T` mask is set (one read-back).
pub fn marked_steps(mask: &Tensor) -> Vec<i64> {
    let any = mask.to_kind(Kind::Bool).any_dim(0, false).to_device(tch::Device::Cpu);
    let flags = Vec::<bool>::try_from(&any).expect("a 1-d bool tensor converts to Vec<bool>");
    flags.iter().enumerate().filter(|&(_, &set)| set).map(|(t, _)| t as i64).collect()
}

#[cfg(test)]
mod tests {
    use tch::Device;

    use super::*;

    #[test]
    fn unroll_equals_stepping_and_resets_zero_the_state() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = RecurrentQNetwork::new(&vs.root(), 9);
        let x = Tensor::rand([2, 5, EMBEDDING], (Kind::Float, Device::Cpu));
        let (q, _) = net.unroll(&x, LstmState::zeros(2, Device::Cpu), None);
        assert_eq!(q.size(), [2, 5, 9]);
        let mut state = LstmState::zeros(2, Device::Cpu);
        for t in 0..5 {
            let (qt, next) = net.step(&x.select(1, t), &state);
            assert!(qt.allclose(&q.select(1, t), 1e-6, 1e-6, false), "step {t}");
            state = next;
        }
        // a reset at t = 3 makes steps 3.. equal to an unroll started fresh at 3
        let resets = Tensor::from_slice(&[false, false, false, true, false]).view([1, 5]).repeat([2, 1]);
        let (q_reset, _) = net.unroll(&x, LstmState::zeros(2, Device::Cpu), Some(&resets));
        let (q_fresh, _) = net.unroll(&x.narrow(1, 3, 2), LstmState::zeros(2, Device::Cpu), None);
        assert!(q_reset.narrow(1, 3, 2).allclose(&q_fresh, 1e-6, 1e-6, false));
        assert!(!q_reset.narrow(1, 3, 2).allclose(&q.narrow(1, 3, 2), 1e-6, 1e-6, false));
        let flat = state.flatten();
        assert_eq!(flat.size(), [2, 256]);
        assert!(LstmState::from_flat(&flat).h.equal(&state.h));
    }

    /// The per-step unroll the segmented one replaced: reset, stop, one LSTM step, per step.
    fn unroll_step_by_step(net: &RecurrentQNetwork, x: &Tensor, mut state: LstmState, resets: &Tensor, stops: &Tensor) -> Tensor {
        let mut outputs = Vec::new();
        for t in 0..x.size()[1] {
            let keep = resets.select(1, t).logical_not().to_kind(Kind::Float).unsqueeze(1);
            state = LstmState { h: &state.h * &keep, c: &state.c * &keep };
            let stop = stops.select(1, t).to_kind(Kind::Float).unsqueeze(1);
            let blend = |x: &Tensor| x.detach() * &stop + x * (1.0 - &stop);
            state = LstmState { h: blend(&state.h), c: blend(&state.c) };
            let (q, next) = net.step(&x.select(1, t), &state);
            outputs.push(q);
            state = next;
        }
        Tensor::stack(&outputs, 1)
    }

    #[test]
    fn segmented_unroll_matches_stepping_in_values_and_gradients() {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        let net = RecurrentQNetwork::new(&vs.root(), 4);
        let (b, t) = (3, 7);
        let mask = |cells: &[(i64, i64)]| {
            let m = Tensor::zeros([b, t], (Kind::Bool, Device::Cpu));
            for &(row, step) in cells {
                let _ = m.get(row).get(step).fill_(1);
            }
            m
        };
        // rows reset at different steps (one at t = 0), a burn-in stop at t = 2 on two rows
        let resets = mask(&[(0, 0), (1, 4), (2, 5), (0, 5)]);
        let stops = mask(&[(0, 2), (2, 2)]);
        let start = || LstmState { h: Tensor::full([b, EMBEDDING], 0.3, (Kind::Float, Device::Cpu)), c: Tensor::full([b, EMBEDDING], -0.2, (Kind::Float, Device::Cpu)) };
        let x = Tensor::rand([b, t, EMBEDDING], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let (fused, _) = net.unroll_with_stops(&x, start(), Some(&resets), Some(&stops));
        assert_eq!(marked_steps(&resets), vec![0, 4, 5]);
        let stepped = unroll_step_by_step(&net, &x, start(), &resets, &stops);
        assert!(fused.allclose(&stepped, 1e-5, 1e-6, false), "values differ");
        // gradients of the late outputs w.r.t. the inputs: the same, and none reaches the
        // burn-in steps of the stopped rows through the state
        let late = |q: &Tensor| q.narrow(1, 2, t - 2).square().sum(Kind::Float);
        let grad_fused = Tensor::run_backward(&[late(&fused)], &[&x], true, false).pop().unwrap();
        let grad_stepped = Tensor::run_backward(&[late(&stepped)], &[&x], false, false).pop().unwrap();
        assert!(grad_fused.allclose(&grad_stepped, 1e-5, 1e-6, false), "gradients differ");
        for row in [0, 2] {
            assert_eq!(grad_fused.get(row).narrow(0, 0, 2).abs().sum(Kind::Float).double_value(&[]), 0.0, "row {row}");
        }
        assert!(grad_fused.get(1).narrow(0, 0, 2).abs().sum(Kind::Float).double_value(&[]) > 0.0);
    }
}
