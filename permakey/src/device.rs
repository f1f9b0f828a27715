//! Device selection shared by every binary (`--device auto|cpu|cuda`).

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use tch::Device;

/// Which accelerator a binary runs its tensors on (`--device auto|cpu|cuda`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// The first CUDA device when one is usable, the CPU otherwise.
    #[default]
    Auto,
    Cpu,
    /// The first CUDA device; an error when none is usable.
    Cuda,
}

impl FromStr for DeviceChoice {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda),
            _ => Err(format!("unknown device '{text}': expected auto, cpu or cuda")),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
        })
    }
}


/// Why a device could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeviceError {
    #[error(
        "--device cuda was asked for but no CUDA device is usable: this binary was built for the CPU \
         (build it with `make cuda`) or no GPU is visible (check nvidia-smi)"
    )]
    CudaUnavailable,
}

/// Turns a [`DeviceChoice`] into a `tch` device, checking that CUDA is really usable.
pub fn resolve_device(choice: DeviceChoice) -> Result<Device, DeviceError> {
    let cuda = tch::Cuda::is_available();
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Auto if cuda => Ok(Device::Cuda(0)),
        DeviceChoice::Auto => Ok(Device::Cpu),
        DeviceChoice::Cuda if cuda => Ok(Device::Cuda(0)),
        DeviceChoice::Cuda => Err(DeviceError::CudaUnavailable),
    }
}

/// A one-line description of the libtorch runtime, for logs and `permakey-rl doctor`.
pub fn describe_runtime() -> String {
    format!(
        "libtorch threads={} cuda_available={} cuda_devices={} cudnn={} tf32_matmul={}",
        tch::get_num_threads(),
        tch::Cuda::is_available(),
        tch::Cuda::device_count(),
        tch::Cuda::cudnn_is_available(),
        crate::precision::tf32_matmul_allowed()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_choices_and_rejects_unknown() {
        assert_eq!("auto".parse(), Ok(DeviceChoice::Auto));
        assert_eq!("CPU".parse(), Ok(DeviceChoice::Cpu));
        assert_eq!("cuda".parse(), Ok(DeviceChoice::Cuda));
        assert_eq!("tpu".parse::<DeviceChoice>().unwrap_err(), "unknown device 'tpu': expected auto, cpu or cuda");
    }

    #[test]
    fn cuda_without_a_gpu_is_a_clear_error() {
        if !tch::Cuda::is_available() {
            let err = resolve_device(DeviceChoice::Cuda).unwrap_err().to_string();
            assert!(err.contains("make cuda") && !err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn cpu_always_resolves() {
        assert_eq!(resolve_device(DeviceChoice::Cpu), Ok(Device::Cpu));
        let auto = resolve_device(DeviceChoice::Auto).unwrap();
        assert_eq!(auto.is_cuda(), tch::Cuda::is_available());
    }
}
