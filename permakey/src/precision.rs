//! libtorch's float32 matmul precision: the config's top-level `matmul_precision`.
//!
//! On a CUDA GPU of the Ampere generation or later, cuBLAS can run float32 matrix products on the
//! TF32 tensor cores (10-bit mantissa inputs, float32 accumulation) several times faster than in
//! full float32. PyTorch leaves this off for matmuls by default ("highest") and on for cuDNN
//! convolutions and RNNs; `torch.set_float32_matmul_precision("high")` turns it on for matmuls.
//! tch has no binding for it, so `csrc/precision.cpp` calls libtorch's setter.
//!
//! Why it matters here: issue 11's H200 measurements (BENCHMARKS.md, "PermaKey model") found the
//! keypoint front end at ~5% of its encoder's throughput, the time going to the two LSP MLPs over
//! every window, which are float32 matmuls; the agent's dense and LSTM input layers are matmuls too.
//!
//! Decisions:
//! - The default is [`MatmulPrecision::Highest`], PyTorch's: numbers do not move unless asked.
//!   [`MatmulPrecision::High`] is what the reference's framework does by default on such GPUs
//!   (TensorFlow has enabled TF32 since 2.4), so it is no further from the reference than the
//!   default; its speed on the GPU goal is still to be measured (no device was lent when it landed).
//! - "medium" (bfloat16 products) is not offered: a larger deviation, and it also changes CPU matmuls
//!   through oneDNN on CPUs with bfloat16 support.
//! - On the CPU "high" changes nothing (a test checks products bit for bit).
//! - It is process-wide state of libtorch, set once by each binary after its config is read.

use std::{ffi::CString, fmt};

use serde::{Deserialize, Serialize};

unsafe extern "C" {
    fn pk_set_float32_matmul_precision(name: *const std::ffi::c_char) -> i32;
    fn pk_allow_tf32_cublas() -> i32;
}

/// Precision of float32 matrix products on CUDA (PyTorch's names).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatmulPrecision {
    /// Full float32 (PyTorch's default).
    #[default]
    Highest,
    /// TF32 tensor cores allowed for float32 matmuls on CUDA (Ampere and later); no effect on the CPU.
    High,
}

impl MatmulPrecision {
    fn torch_name(self) -> &'static str {
        match self {
            Self::Highest => "highest",
            Self::High => "high",
        }
    }
}

impl fmt::Display for MatmulPrecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.torch_name())
    }
}

/// Sets libtorch's float32 matmul precision for the whole process.
pub fn set_matmul_precision(precision: MatmulPrecision) -> Result<(), String> {
    let name = CString::new(precision.torch_name()).expect("no NUL in a precision name");
    // SAFETY: the shim takes a NUL-terminated string it only reads during the call, and catches
    // every C++ exception before returning.
    match unsafe { pk_set_float32_matmul_precision(name.as_ptr()) } {
        0 => Ok(()),
        _ => Err(format!("libtorch refused float32 matmul precision '{precision}'")),
    }
}

/// Whether float32 matmuls on CUDA may use TF32 now (libtorch's own reading of its setting).
pub fn tf32_matmul_allowed() -> bool {
    // SAFETY: a read of libtorch's global context; the shim catches C++ exceptions.
    unsafe { pk_allow_tf32_cublas() == 1 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind, Tensor};

    #[test]
    fn default_and_names_are_pytorchs() {
        assert_eq!(MatmulPrecision::default().to_string(), "highest");
        assert_eq!(MatmulPrecision::High.to_string(), "high");
    }

    // One test, because the setting is process-wide: switching it is read back by libtorch, and on
    // the CPU float32 products are the same bit for bit under both settings.
    #[test]
    fn setting_is_read_back_and_leaves_cpu_products_unchanged() {
        let a = Tensor::randn([64, 96], (Kind::Float, Device::Cpu));
        let b = Tensor::randn([96, 48], (Kind::Float, Device::Cpu));
        set_matmul_precision(MatmulPrecision::Highest).unwrap();
        assert!(!tf32_matmul_allowed());
        let exact = a.matmul(&b);
        set_matmul_precision(MatmulPrecision::High).unwrap();
        assert!(tf32_matmul_allowed());
        let high = a.matmul(&b);
        set_matmul_precision(MatmulPrecision::Highest).unwrap();
        assert!(!tf32_matmul_allowed());
        assert!(exact.equal(&high), "a CPU float32 matmul changed under 'high'");
    }
}
