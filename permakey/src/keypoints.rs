//! Keypoint maths of the PointNet bottleneck (spec section 4), as pure tensor functions.
//!
//! - [`soft_argmax`]: feature maps `B x K x H x W` -> keypoint centres `B x K x 2` as `(y, x)` in
//!   `[-1, 1]`. Marginal soft-argmax: for `y`, average over the `x` axis, softmax over `H`,
//!   expectation of `linspace(-1, 1, H)`; the same for `x` with the axes swapped.
//! - [`gaussian_maps`]: centres `B x K x 2` -> heatmaps `B x K x H x W`,
//!   `G(i, j) = exp(-((y_i - mu_y)^2 + (x_j - mu_x)^2) / sigma^2)` (no factor 1/2, as in the reference).

use tch::{Kind, Tensor};

/// Grid coordinates `linspace(-1, 1, n)` on the device and kind of `like`.
fn grid(n: i64, like: &Tensor) -> Tensor {
    Tensor::linspace(-1.0, 1.0, n, (like.kind(), like.device()))
}

/// Expected coordinate along `axis` (2 = y over H, 3 = x over W) of `maps` (`B x K x H x W`).
fn marginal_coordinate(maps: &Tensor, axis: i64) -> Tensor {
    let other = if axis == 2 { 3 } else { 2 };
    let size = maps.size()[axis as usize];
    let marginal = maps.mean_dim(&[other][..], false, maps.kind()); // B x K x size
    let probabilities = marginal.softmax(-1, maps.kind());
    (probabilities * grid(size, maps)).sum_dim_intlist(&[-1][..], false, maps.kind())
}

/// Keypoint centres `(y, x)` in `[-1, 1]` from `B x K x H x W` feature maps.
pub fn soft_argmax(maps: &Tensor) -> Tensor {
    debug_assert_eq!(maps.dim(), 4, "soft_argmax expects B x K x H x W");
    let y = marginal_coordinate(maps, 2);
    let x = marginal_coordinate(maps, 3);
    Tensor::stack(&[y, x], -1)
}

/// Gaussian heatmaps `B x K x height x width` centred on `centres` (`B x K x 2`, `(y, x)`).
pub fn gaussian_maps(centres: &Tensor, height: i64, width: i64, sigma: f64) -> Tensor {
    debug_assert_eq!(centres.dim(), 3, "gaussian_maps expects B x K x 2");
    let mu_y = centres.select(-1, 0).unsqueeze(-1).unsqueeze(-1); // B x K x 1 x 1
    let mu_x = centres.select(-1, 1).unsqueeze(-1).unsqueeze(-1);
    let ys = grid(height, centres).view([1, 1, height, 1]);
    let xs = grid(width, centres).view([1, 1, 1, width]);
    let squared = (ys - mu_y).square() + (xs - mu_x).square();
    (squared / -(sigma * sigma)).exp()
}

/// Converts `(y, x)` keypoints in `[-1, 1]` to pixel coordinates on an `size x size` frame,
/// where pixel centres `0..size-1` span the same `[-1, 1]` range as the heatmap grid.
pub fn to_pixels(centres: &Tensor, size: i64) -> Tensor {
    (centres.to_kind(Kind::Float) + 1.0) * ((size - 1) as f64 / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(t: &Tensor) -> Vec<f32> {
        Vec::<f32>::try_from(t.flatten(0, -1).to_kind(Kind::Float)).unwrap()
    }

    #[test]
    fn soft_argmax_of_a_uniform_map_is_the_centre() {
        let maps = Tensor::zeros([2, 3, 5, 7], (Kind::Float, tch::Device::Cpu));
        let kp = soft_argmax(&maps);
        assert_eq!(kp.size(), [2, 3, 2]);
        for v in values(&kp) {
            assert!(v.abs() < 1e-6, "{v}");
        }
    }

    #[test]
    fn soft_argmax_matches_hand_computed_values() {
        // H = 3, W = 2. Rows [0, ln 2, ln 3] constant across x: the y-marginal means are the
        // row values, so p = [1, 2, 3] / 6 over grid [-1, 0, 1] -> y = (-1 + 3) / 6 = 1/3.
        // Columns carry equal means, so x = 0.
        let rows = [0.0f32, 2f32.ln(), 3f32.ln()];
        let data: Vec<f32> = rows.iter().flat_map(|&r| [r, r]).collect();
        let maps = Tensor::from_slice(&data).view([1, 1, 3, 2]);
        let kp = values(&soft_argmax(&maps));
        assert!((kp[0] - 1.0 / 3.0).abs() < 1e-6, "y = {}", kp[0]);
        assert!(kp[1].abs() < 1e-6, "x = {}", kp[1]);
    }

    #[test]
    fn soft_argmax_finds_a_sharp_peak() {
        let mut data = vec![0.0f32; 9 * 9];
        data[2 * 9 + 6] = 100.0; // row 2, column 6
        let maps = Tensor::from_slice(&data).view([1, 1, 9, 9]);
        let kp = values(&soft_argmax(&maps));
        // grid step 0.25: row 2 -> -0.5, column 6 -> 0.5 (marginals over 9 cells keep the peak dominant)
        assert!((kp[0] + 0.5).abs() < 1e-3, "y = {}", kp[0]);
        assert!((kp[1] - 0.5).abs() < 1e-3, "x = {}", kp[1]);
    }

    #[test]
    fn gaussian_maps_match_hand_computed_values() {
        let centres = Tensor::from_slice(&[0.0f32, 0.5]).view([1, 1, 2]);
        let g = gaussian_maps(&centres, 3, 3, 0.5);
        assert_eq!(g.size(), [1, 1, 3, 3]);
        let v = values(&g);
        // grid [-1, 0, 1]; at (y=0, x=0): exp(-(0 + 0.25) / 0.25) = e^-1
        assert!((v[4] - (-1.0f32).exp()).abs() < 1e-6);
        // at (y=-1, x=1): exp(-(1 + 0.25) / 0.25) = e^-5
        assert!((v[2] - (-5.0f32).exp()).abs() < 1e-6);
    }

    #[test]
    fn keypoints_survive_a_render_and_soft_argmax_round_trip() {
        let centres = Tensor::from_slice(&[-0.5f32, 0.25, 0.3, -0.6]).view([1, 2, 2]);
        let maps = gaussian_maps(&centres, 41, 41, 0.05) * 1000.0; // sharp: marginals dilute peaks
        let back = values(&soft_argmax(&maps));
        for (a, b) in back.iter().zip([-0.5f32, 0.25, 0.3, -0.6]) {
            assert!((a - b).abs() < 0.02, "{a} vs {b}");
        }
    }

    #[test]
    fn pixel_conversion_maps_the_corners() {
        let centres = Tensor::from_slice(&[-1.0f32, 1.0]).view([1, 1, 2]);
        assert_eq!(values(&to_pixels(&centres, 84)), vec![0.0, 83.0]);
    }
}
