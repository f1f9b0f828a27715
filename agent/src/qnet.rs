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
    pub fn unroll_with_stops(&self, embeddings: &Tensor, state: LstmState, resets: Option<&Tensor>, stops: Option<&Tensor>) -> (Tensor, LstmState) {
        let steps = embeddings.size()[1];
        let mut state = state;
        let mut outputs = Vec::with_capacity(steps as usize);
        for t in 0..steps {
            if let Some(resets) = resets {
                let keep = resets.select(1, t).logical_not().to_kind(Kind::Float).unsqueeze(1);
                state = LstmState { h: &state.h * &keep, c: &state.c * &keep };
            }
            if let Some(stops) = stops {
                let stop = stops.select(1, t).to_kind(Kind::Float).unsqueeze(1);
                let blend = |x: &Tensor| x.detach() * &stop + x * (1.0 - &stop);
                state = LstmState { h: blend(&state.h), c: blend(&state.c) };
            }
            let (q, next) = self.step(&embeddings.select(1, t), &state);
            outputs.push(q);
            state = next;
        }
        (Tensor::stack(&outputs, 1), state)
    }
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
}
