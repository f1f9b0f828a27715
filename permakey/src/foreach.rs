//! Multi-tensor ("foreach") updates: one libtorch call for a whole list of tensors.
//!
//! Why: on a GPU a learner update of the recurrent Q-network is little arithmetic and many small
//! kernels. Measured on an H200 (BENCHMARKS.md, "The single-seed Atari-100k run on an H200"), an
//! update of 16 x 12 steps took 31 ms, most of it the host issuing ops one by one: Adam was ~12
//! ops per parameter tensor, Polyak averaging 3, the gradient norm a read-back per tensor. libtorch's
//! `_foreach_*` ops (what `torch.optim.Adam(foreach=True)` uses) launch a few kernels for all
//! tensors of a list. tch does not bind them, so `csrc/foreach.cpp` is a small shim, compiled by
//! `build.rs` against the linked libtorch's headers (as `precision` is).
//!
//! Numerics: the same formulas as the per-tensor code they replace, but fused kernels may round
//! differently in the last bit (e.g. `m + (1 - b1) g` as one multiply-add instead of two ops), so a
//! run is reproducible with itself, not bit-identical with a run of the per-tensor code. The tests
//! compare each function with its per-tensor form.
//!
//! Every function checks that its lists have equal lengths, accepts empty lists (a no-op), and
//! turns libtorch's exceptions (mismatched shapes, devices) into an `Err` with its message.
use tch::Tensor;
use torch_sys::C_tensor;

type Handles = *const *const C_tensor;

unsafe extern "C" {
    fn pk_foreach_adam(
        params: Handles,
        grads: Handles,
        m: Handles,
        v: Handles,
        n: i32,
        beta1: f64,
        beta2: f64,
        eps: f64,
        lr_t: f64,
        err: *mut std::ffi::c_char,
        err_len: usize,
    ) -> i32;
    fn pk_foreach_sum_of_squares(tensors: Handles, n: i32, out: *mut f64, err: *mut std::ffi::c_char, err_len: usize) -> i32;
    fn pk_foreach_mul_scalar(tensors: Handles, n: i32, scale: f64, err: *mut std::ffi::c_char, err_len: usize) -> i32;
    fn pk_foreach_lerp(dst: Handles, src: Handles, n: i32, weight: f64, err: *mut std::ffi::c_char, err_len: usize) -> i32;
    fn pk_foreach_zero(tensors: Handles, n: i32, err: *mut std::ffi::c_char, err_len: usize) -> i32;
}

fn handles(tensors: &[Tensor]) -> Vec<*const C_tensor> {
    tensors.iter().map(Tensor::as_ptr).collect()
}

/// Checks equal lengths and returns the common one as libtorch's `int`.
fn common_len(what: &str, lists: &[&[Tensor]]) -> Result<i32, String> {
    let n = lists[0].len();
    if let Some(other) = lists.iter().find(|l| l.len() != n) {
        return Err(format!("{what}: lists of {n} and {} tensors", other.len()));
    }
    i32::try_from(n).map_err(|_| format!("{what}: {n} tensors is more than one call takes"))
}

/// Calls `f` with an error buffer; `Err` carries libtorch's message.
fn call(what: &str, f: impl FnOnce(*mut std::ffi::c_char, usize) -> i32) -> Result<(), String> {
    let mut buffer = vec![0u8; 512];
    if f(buffer.as_mut_ptr().cast(), buffer.len()) == 0 {
        return Ok(());
    }
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    let message = String::from_utf8_lossy(&buffer[..end]);
    // libtorch's messages carry a C++ backtrace after the first line.
    Err(format!("{what}: {}", message.lines().next().unwrap_or("libtorch error")))
}

/// One Adam step in the TF/Keras form, in place: `m = b1 m + (1 - b1) g`,
/// `v = b2 v + (1 - b2) g^2`, `p -= lr_t m / (sqrt(v) + eps)` (see [`crate::optim`]).
#[allow(clippy::too_many_arguments)]
pub fn adam(params: &[Tensor], grads: &[Tensor], m: &[Tensor], v: &[Tensor], beta1: f64, beta2: f64, eps: f64, lr_t: f64) -> Result<(), String> {
    let n = common_len("foreach adam", &[params, grads, m, v])?;
    if n == 0 {
        return Ok(());
    }
    // Checked here so that a mismatch changes nothing (libtorch would fail part-way through).
    for (i, p) in params.iter().enumerate() {
        let shape = p.size();
        if grads[i].size() != shape || m[i].size() != shape || v[i].size() != shape {
            return Err(format!(
                "foreach adam: tensor {i} has shape {shape:?}, its gradient {:?}, moments {:?} and {:?}",
                grads[i].size(),
                m[i].size(),
                v[i].size()
            ));
        }
    }
    let (p, g, m, v) = (handles(params), handles(grads), handles(m), handles(v));
    call("foreach adam", |err, len| unsafe {
        pk_foreach_adam(p.as_ptr(), g.as_ptr(), m.as_ptr(), v.as_ptr(), n, beta1, beta2, eps, lr_t, err, len)
    })
}

/// The sum of the squares of all elements of `tensors`, accumulated in float64 (one read-back).
pub fn sum_of_squares(tensors: &[Tensor]) -> Result<f64, String> {
    let n = common_len("foreach sum of squares", &[tensors])?;
    let mut out = 0.0;
    if n > 0 {
        let t = handles(tensors);
        call("foreach sum of squares", |err, len| unsafe { pk_foreach_sum_of_squares(t.as_ptr(), n, &mut out, err, len) })?;
    }
    Ok(out)
}

/// `tensors *= scale`, in place.
pub fn mul_scalar_(tensors: &[Tensor], scale: f64) -> Result<(), String> {
    let n = common_len("foreach mul", &[tensors])?;
    if n == 0 {
        return Ok(());
    }
    let t = handles(tensors);
    call("foreach mul", |err, len| unsafe { pk_foreach_mul_scalar(t.as_ptr(), n, scale, err, len) })
}

/// `dst += weight (src - dst)`, in place.
pub fn lerp_(dst: &[Tensor], src: &[Tensor], weight: f64) -> Result<(), String> {
    let n = common_len("foreach lerp", &[dst, src])?;
    if n == 0 {
        return Ok(());
    }
    let (d, s) = (handles(dst), handles(src));
    call("foreach lerp", |err, len| unsafe { pk_foreach_lerp(d.as_ptr(), s.as_ptr(), n, weight, err, len) })
}

/// `tensors = 0`, in place.
pub fn zero_(tensors: &[Tensor]) -> Result<(), String> {
    let n = common_len("foreach zero", &[tensors])?;
    if n == 0 {
        return Ok(());
    }
    let t = handles(tensors);
    call("foreach zero", |err, len| unsafe { pk_foreach_zero(t.as_ptr(), n, err, len) })
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind};

    use super::*;

    fn tensors(values: &[&[f32]]) -> Vec<Tensor> {
        values.iter().map(|v| Tensor::from_slice(v)).collect()
    }

    fn values(t: &Tensor) -> Vec<f32> {
        Vec::<f32>::try_from(t).unwrap()
    }

    fn assert_close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-6 * (1.0 + y.abs()), "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn adam_matches_the_per_tensor_formula_on_hand_values() {
        // p = [1, -2], g = [3, 0.5], m = [0.1, 0], v = [0.01, 0.2]; b1 0.9, b2 0.999, eps 1e-7, lr_t 0.01.
        // m' = 0.9 m + 0.1 g = [0.39, 0.05]; v' = 0.999 v + 0.001 g^2 = [0.01899, 0.20005]
        // p' = p - 0.01 m' / (sqrt(v') + 1e-7)
        let p = tensors(&[&[1.0], &[-2.0]]);
        let g = tensors(&[&[3.0], &[0.5]]);
        let m = tensors(&[&[0.1], &[0.0]]);
        let v = tensors(&[&[0.01], &[0.2]]);
        adam(&p, &g, &m, &v, 0.9, 0.999, 1e-7, 0.01).unwrap();
        assert_close(&values(&m[0]), &[0.39]);
        assert_close(&values(&m[1]), &[0.05]);
        assert_close(&values(&v[0]), &[0.01899]);
        assert_close(&values(&v[1]), &[0.20005]);
        let expect = |p: f64, m: f64, v: f64| (p - 0.01 * m / (v.sqrt() + 1e-7)) as f32;
        assert_close(&values(&p[0]), &[expect(1.0, 0.39, 0.01899)]);
        assert_close(&values(&p[1]), &[expect(-2.0, 0.05, 0.20005)]);
    }

    #[test]
    fn norms_scales_lerps_and_zeros() {
        let t = tensors(&[&[3.0, 4.0], &[12.0]]);
        assert!((sum_of_squares(&t).unwrap() - 169.0).abs() < 1e-9);
        assert_eq!(sum_of_squares(&[]).unwrap(), 0.0);
        mul_scalar_(&t, 0.5).unwrap();
        assert_eq!(values(&t[0]), vec![1.5, 2.0]);
        assert_eq!(values(&t[1]), vec![6.0]);
        // 0.25 of the way from [1.5, 2] to [3.5, 6]: [2, 3]; from 6 to 2: 5
        lerp_(&t, &tensors(&[&[3.5, 6.0], &[2.0]]), 0.25).unwrap();
        assert_close(&values(&t[0]), &[2.0, 3.0]);
        assert_close(&values(&t[1]), &[5.0]);
        zero_(&t).unwrap();
        assert_eq!(values(&t[0]), vec![0.0, 0.0]);
        // empty lists are no-ops
        adam(&[], &[], &[], &[], 0.9, 0.999, 1e-7, 0.1).unwrap();
        lerp_(&[], &[], 0.5).unwrap();
        zero_(&[]).unwrap();
        mul_scalar_(&[], 2.0).unwrap();
    }

    #[test]
    fn mismatched_lists_are_errors_not_crashes() {
        let a = tensors(&[&[1.0, 2.0]]);
        let err = lerp_(&a, &tensors(&[&[1.0], &[2.0]]), 0.5).unwrap_err();
        assert!(err.contains("lists of 1 and 2"), "{err}");
        // a shape mismatch inside libtorch comes back as a one-line error
        let err = lerp_(&a, &tensors(&[&[1.0, 2.0, 3.0]]), 0.5).unwrap_err();
        assert!(err.starts_with("foreach lerp: ") && !err.contains('\n'), "{err}");
        let big = Tensor::ones([3], (Kind::Float, Device::Cpu));
        assert!(adam(&[big.shallow_clone()], &tensors(&[&[1.0, 2.0]]), &[big.zeros_like()], &[big.zeros_like()], 0.9, 0.999, 1e-7, 0.1).is_err());
    }
}
