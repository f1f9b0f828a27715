//! The interface every keypoint model implements, and what it returns.

use tch::Tensor;

/// What the keypoint front end gives the agent for a batch of frames.
#[derive(Debug)]
pub struct KeypointOutput {
    /// Keypoint centres `B x K x 2`, `(y, x)` in `[-1, 1]` (grid convention of [`crate::keypoints`]).
    pub centres: Tensor,
    /// Gaussian heatmaps `B x K x h x w` rendered at the model's keypoint resolution.
    pub heatmaps: Tensor,
    /// Spatial features `B x C x H x W` the agent's encoders pool over (PermaKey: encoder layer
    /// `lsp_layers[-1]`; Transporter: its feature encoder Phi).
    pub features: Tensor,
}

/// Why a batch of frames cannot go through a model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("frames must be a float tensor B x 3 x {size} x {size} with B >= 1, got shape {shape:?} of kind {kind}")]
    Shape { size: i64, shape: Vec<i64>, kind: String },
    #[error("{got} frame bytes do not make {batch} frames of {height} x {width} x {channels} (= {expected} bytes)")]
    Bytes { got: usize, expected: usize, batch: i64, height: i64, width: i64, channels: i64 },
}

/// Checks that `frames` is `B x 3 x size x size` floating point with `B >= 1`.
pub fn check_frames(frames: &Tensor, size: i64) -> Result<(), InputError> {
    let shape = frames.size();
    let float = matches!(frames.kind(), tch::Kind::Float | tch::Kind::Double | tch::Kind::Half | tch::Kind::BFloat16);
    if shape.len() != 4 || shape[0] < 1 || shape[1] != 3 || shape[2] != size || shape[3] != size || !float {
        return Err(InputError::Shape { size, shape, kind: format!("{:?}", frames.kind()) });
    }
    Ok(())
}

/// A frozen keypoint model as the agent and the keypoint service use it.
pub trait KeypointModel: Send {
    /// Number of keypoints K.
    fn num_keypoints(&self) -> i64;
    /// Side of the square frames the model takes (84).
    fn image_size(&self) -> i64;
    /// [`KeypointModel::keypoints`] after checking the input, for frames from outside the process.
    fn try_keypoints(&self, frames: &Tensor) -> Result<KeypointOutput, InputError> {
        check_frames(frames, self.image_size())?;
        Ok(self.keypoints(frames))
    }
    /// Keypoints for frames `B x 3 x 84 x 84` (float in `[0, 1]`, on the model's device),
    /// in inference mode (batch norm with moving averages, no gradients).
    fn keypoints(&self, frames: &Tensor) -> KeypointOutput;
    /// Only the `features` of [`KeypointModel::keypoints`], by the cheapest path (PermaKey: the
    /// VAE encoder alone, no LSP or PointNet). The learner recomputes features from stored frames
    /// with it while the centres come from replay: with the model frozen this is exact.
    fn features(&self, frames: &Tensor) -> Tensor {
        self.keypoints(frames).features
    }
    /// Standard deviation (in `[-1, 1]` grid units) of the Gaussian heatmaps the agent's encoders
    /// get; the agent renders them from the centres (spec 7.1: 0.15 in RL).
    fn gauss_std(&self) -> f64;
    /// The device the model lives on.
    fn device(&self) -> tch::Device;
}

/// [`frames_to_tensor`] with the byte count checked instead of asserted.
pub fn try_frames_to_tensor(frames: &[u8], batch: i64, height: i64, width: i64, channels: i64, device: tch::Device) -> Result<Tensor, InputError> {
    let expected = (batch.max(0) * height.max(0) * width.max(0) * channels.max(0)) as usize;
    if batch < 1 || frames.len() != expected {
        return Err(InputError::Bytes { got: frames.len(), expected, batch, height, width, channels });
    }
    Ok(frames_to_tensor(frames, batch, height, width, channels, device))
}

/// Converts a batch of HWC u8 frames (`B x H x W x C`, as the Atari crate writes them) to the
/// float NCHW tensor in `[0, 1]` the models take.
pub fn frames_to_tensor(frames: &[u8], batch: i64, height: i64, width: i64, channels: i64, device: tch::Device) -> Tensor {
    assert_eq!(frames.len() as i64, batch * height * width * channels, "frame bytes do not match the shape");
    Tensor::from_slice(frames)
        .view([batch, height, width, channels])
        .to_device(device)
        .permute([0, 3, 1, 2])
        .to_kind(tch::Kind::Float)
        / 255.0
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind};

    use super::*;

    #[test]
    fn bad_frames_are_clear_errors() {
        let good = Tensor::zeros([2, 3, 84, 84], (Kind::Float, Device::Cpu));
        assert!(check_frames(&good, 84).is_ok());
        let cases = [
            Tensor::zeros([2, 84, 84, 3], (Kind::Float, Device::Cpu)),
            Tensor::zeros([3, 84, 84], (Kind::Float, Device::Cpu)),
            Tensor::zeros([2, 3, 64, 64], (Kind::Float, Device::Cpu)),
            Tensor::zeros([2, 3, 84, 84], (Kind::Uint8, Device::Cpu)),
            Tensor::zeros([0, 3, 84, 84], (Kind::Float, Device::Cpu)),
        ];
        for bad in cases {
            let err = check_frames(&bad, 84).unwrap_err().to_string();
            assert!(err.starts_with("frames must be a float tensor B x 3 x 84 x 84"), "{err}");
        }
        let err = try_frames_to_tensor(&[0u8; 100], 1, 84, 84, 3, Device::Cpu).unwrap_err().to_string();
        assert_eq!(err, "100 frame bytes do not make 1 frames of 84 x 84 x 3 (= 21168 bytes)");
        assert_eq!(try_frames_to_tensor(&[255u8; 12], 1, 2, 2, 3, Device::Cpu).unwrap().size(), [1, 3, 2, 2]);
    }

    #[test]
    fn models_refuse_wrong_frames_instead_of_panicking() {
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let permakey = crate::PermaKey::new(&(vs.root() / "pk"), &crate::PermaKeyConfig::default()).unwrap();
        let transporter = crate::transporter::Transporter::new(&(vs.root() / "tr"), &Default::default());
        let wrong = Tensor::zeros([1, 3, 64, 64], (Kind::Float, Device::Cpu));
        for model in [&permakey as &dyn KeypointModel, &transporter] {
            assert!(model.try_keypoints(&wrong).is_err());
            let ok = model.try_keypoints(&Tensor::zeros([1, 3, 84, 84], (Kind::Float, Device::Cpu))).unwrap();
            assert_eq!(ok.centres.size(), [1, 7, 2]);
        }
    }
}
