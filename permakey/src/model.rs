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

/// A frozen keypoint model as the agent and the keypoint service use it.
pub trait KeypointModel: Send {
    /// Number of keypoints K.
    fn num_keypoints(&self) -> i64;
    /// Keypoints for frames `B x 3 x 84 x 84` (float in `[0, 1]`, on the model's device),
    /// in inference mode (batch norm with moving averages, no gradients).
    fn keypoints(&self, frames: &Tensor) -> KeypointOutput;
    /// The device the model lives on.
    fn device(&self) -> tch::Device;
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
