//! PermaKey: unsupervised object keypoints from local spatial predictability
//! (Gopalakrishnan, van Steenkiste, Schmidhuber, ICLR 2021, arXiv 2011.12930).
//!
//! This crate holds the model side of the project, written on `tch` (libtorch 2.11.0):
//! - [`device`]: choosing CPU or CUDA from the shared `--device auto|cpu|cuda` flag;
//! - [`keypoints`]: the keypoint bottleneck's pure tensor maths — marginal soft-argmax over
//!   feature maps and the Gaussian heatmaps rendered back from keypoint centres
//!   (spec section 4, "Transporter-style").
//!
//! Tensors follow PyTorch's NCHW layout; the reference code is NHWC, so every formula from
//! `../shared/spec/permakey-reference.md` is transcribed with the axes moved accordingly.

pub mod device;
pub mod keypoints;

pub use device::{describe_runtime, resolve_device, DeviceChoice, DeviceError};
