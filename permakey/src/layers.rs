//! Building blocks with the reference's (TensorFlow/Keras) semantics, on tch's NCHW tensors:
//! "same" padding with TensorFlow's split (odd total padding puts the extra row/column at the
//! bottom/right), Glorot-uniform kernels with zero biases, and batch norm with Keras' momentum 0.99
//! (PyTorch momentum 0.01) and epsilon 1e-3.

use tch::{nn, nn::ModuleT, Tensor};

/// TensorFlow "same" padding `(before, after)` of one axis.
pub fn same_padding(input: i64, kernel: i64, stride: i64) -> (i64, i64) {
    let output = (input + stride - 1) / stride;
    let total = ((output - 1) * stride + kernel - input).max(0);
    (total / 2, total - total / 2)
}

/// Glorot (Xavier) uniform bound for a layer with these fan-in and fan-out.
pub fn glorot_bound(fan_in: i64, fan_out: i64) -> f64 {
    (6.0 / (fan_in + fan_out) as f64).sqrt()
}

/// A 2-D convolution with TensorFlow "same" padding (stride 1 keeps the size; stride 2 gives
/// `ceil(n / 2)`).
#[derive(Debug)]
pub struct SameConv2d {
    conv: nn::Conv2D,
    kernel: i64,
    stride: i64,
}

impl SameConv2d {
    pub fn new(path: nn::Path, in_channels: i64, out_channels: i64, kernel: i64, stride: i64) -> Self {
        let bound = glorot_bound(in_channels * kernel * kernel, out_channels * kernel * kernel);
        let config = nn::ConvConfig {
            stride,
            padding: 0,
            ws_init: nn::Init::Uniform { lo: -bound, up: bound },
            bs_init: nn::Init::Const(0.0),
            ..Default::default()
        };
        Self { conv: nn::conv2d(path, in_channels, out_channels, kernel, config), kernel, stride }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let size = x.size();
        let (top, bottom) = same_padding(size[2], self.kernel, self.stride);
        let (left, right) = same_padding(size[3], self.kernel, self.stride);
        let padded = if top + bottom + left + right > 0 { x.constant_pad_nd([left, right, top, bottom]) } else { x.shallow_clone() };
        padded.apply(&self.conv)
    }
}

/// Keras-style batch norm over channels (dim 1): momentum 0.99 (moving = 0.99 moving + 0.01 batch), eps 1e-3.
pub fn batch_norm2d(path: nn::Path, channels: i64) -> nn::BatchNorm {
    nn::batch_norm2d(path, channels, nn::BatchNormConfig { momentum: 0.01, eps: 1e-3, ..Default::default() })
}

/// The same for `B x C` inputs (dense layers).
pub fn batch_norm1d(path: nn::Path, features: i64) -> nn::BatchNorm {
    nn::batch_norm1d(path, features, nn::BatchNormConfig { momentum: 0.01, eps: 1e-3, ..Default::default() })
}

/// A dense layer with Glorot-uniform weights and zero bias (Keras `Dense` defaults).
pub fn dense(path: nn::Path, inputs: i64, outputs: i64) -> nn::Linear {
    let bound = glorot_bound(inputs, outputs);
    nn::linear(
        path,
        inputs,
        outputs,
        nn::LinearConfig { ws_init: nn::Init::Uniform { lo: -bound, up: bound }, bs_init: Some(nn::Init::Const(0.0)), bias: true },
    )
}

/// Conv -> batch norm -> ReLU, the reference's basic block.
#[derive(Debug)]
pub struct ConvBnRelu {
    conv: SameConv2d,
    bn: nn::BatchNorm,
}

impl ConvBnRelu {
    pub fn new(path: &nn::Path, in_channels: i64, out_channels: i64, kernel: i64, stride: i64) -> Self {
        Self {
            conv: SameConv2d::new(path / "conv", in_channels, out_channels, kernel, stride),
            bn: batch_norm2d(path / "bn", out_channels),
        }
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.bn.forward_t(&self.conv.forward(x), train).relu()
    }
}

/// Nearest-neighbour resize of `B x C x h x w` maps to `height x width`
/// (used for error maps and heatmaps, as the reference's `tf.image.resize(..., "nearest")`).
pub fn resize_nearest(x: &Tensor, height: i64, width: i64) -> Tensor {
    let size = x.size();
    if size[2] == height && size[3] == width {
        return x.shallow_clone();
    }
    x.upsample_nearest2d([height, width], None, None)
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind};

    use super::*;

    #[test]
    fn same_padding_follows_tensorflow() {
        assert_eq!(same_padding(84, 3, 2), (0, 1)); // -> 42
        assert_eq!(same_padding(42, 3, 2), (0, 1)); // -> 21
        assert_eq!(same_padding(84, 4, 1), (1, 2));
        assert_eq!(same_padding(84, 3, 1), (1, 1));
        assert_eq!(same_padding(21, 1, 1), (0, 0));
    }

    #[test]
    fn same_conv_output_sizes() {
        let vs = nn::VarStore::new(Device::Cpu);
        let x = Tensor::zeros([2, 3, 84, 84], (Kind::Float, Device::Cpu));
        assert_eq!(SameConv2d::new(vs.root() / "a", 3, 8, 4, 1).forward(&x).size(), [2, 8, 84, 84]);
        let y = SameConv2d::new(vs.root() / "b", 3, 8, 3, 2).forward(&x);
        assert_eq!(y.size(), [2, 8, 42, 42]);
        assert_eq!(SameConv2d::new(vs.root() / "c", 8, 8, 3, 2).forward(&y).size(), [2, 8, 21, 21]);
    }

    #[test]
    fn same_padding_puts_the_extra_column_at_the_right() {
        // A 1x2 kernel of ones with "same" padding on a 1x3 row: TF pads (0, 1) -> sums of
        // neighbours to the right: [a+b, b+c, c].
        let ones = Tensor::ones([1, 1, 1, 2], (Kind::Float, Device::Cpu));
        let x = Tensor::from_slice(&[1.0f32, 2.0, 4.0]).view([1, 1, 1, 3]);
        let (l, r) = same_padding(3, 2, 1);
        assert_eq!((l, r), (0, 1));
        let y = x.constant_pad_nd([l, r, 0, 0]).conv2d(&ones, None::<Tensor>, [1, 1], [0, 0], [1, 1], 1);
        assert_eq!(Vec::<f32>::try_from(y.flatten(0, -1)).unwrap(), vec![3.0, 6.0, 4.0]);
    }

    #[test]
    fn glorot_bound_matches_hand_value() {
        assert!((glorot_bound(3 * 16, 32 * 16) - (6.0f64 / 560.0).sqrt()).abs() < 1e-12);
    }
}
