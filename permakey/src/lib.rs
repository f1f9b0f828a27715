//! PermaKey: unsupervised object keypoints from local spatial predictability
//! (Gopalakrishnan, van Steenkiste, Schmidhuber, ICLR 2021, arXiv 2011.12930).
//!
//! This crate holds the model side of the project, written on `tch` (libtorch 2.11.0):
//! - [`device`]: choosing CPU or CUDA from the shared `--device auto|cpu|cuda` flag;
//! - [`malloc`]: the C allocator's settings every binary applies first (`PERMAKEY_MALLOC`);
//! - [`precision`]: libtorch's float32 matmul precision (TF32 on CUDA or not; config `matmul_precision`);
//! - [`keypoints`]: the keypoint bottleneck's pure tensor maths — marginal soft-argmax over
//!   feature maps and the Gaussian heatmaps rendered back from keypoint centres
//!   (spec section 4, "Transporter-style").
//!
//! Tensors follow PyTorch's NCHW layout; the reference code is NHWC, so every formula from
//! `../shared/spec/permakey-reference.md` is transcribed with the axes moved accordingly.

pub mod checkpoint;
pub mod config;
pub mod dataset;
pub mod device;
pub mod foreach;
pub mod keypoints;
pub mod layers;
pub mod lsp;
pub mod malloc;
pub mod model;
pub mod optim;
pub mod permakey;
pub mod pointnet;
pub mod precision;
pub mod prefetch;
pub mod synthetic;
pub mod train;
pub mod transporter;
pub mod vae;
pub mod viz;

pub use precision::{set_matmul_precision, tf32_matmul_allowed, MatmulPrecision};
pub use device::{describe_runtime, resolve_device, DeviceChoice, DeviceError};
pub use config::{ErrorMapKind, PermaKeyConfig};
pub use model::{check_frames, frames_to_tensor, try_frames_to_tensor, InputError, KeypointModel, KeypointOutput};
pub use permakey::{PermaKey, PermaKeyLosses};
