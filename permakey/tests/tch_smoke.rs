//! Proof that libtorch works from Rust here: a small conv net learns with Adam on the CPU.

use tch::{nn, nn::Module, nn::OptimizerConfig, Device, Kind, Tensor};

#[test]
fn small_conv_net_loss_falls_with_adam_on_cpu() {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let root = vs.root();
    let net = nn::seq()
        .add(nn::conv2d(&root / "c1", 3, 8, 3, nn::ConvConfig { stride: 2, ..Default::default() }))
        .add_fn(|x| x.relu())
        .add(nn::conv2d(&root / "c2", 8, 8, 3, nn::ConvConfig { stride: 2, ..Default::default() }))
        .add_fn(|x| x.relu().flatten(1, -1))
        .add(nn::linear(&root / "fc", 8 * 3 * 3, 1, Default::default()));
    // Regression target: the mean brightness of the top-left quadrant of each image.
    let images = Tensor::rand([64, 3, 16, 16], (Kind::Float, Device::Cpu));
    let target = images.narrow(2, 0, 8).narrow(3, 0, 8).mean_dim(&[1, 2, 3][..], true, Kind::Float).view([64, 1]);
    let mut opt = nn::Adam::default().build(&vs, 1e-2).unwrap();
    let loss_of = |net: &nn::Sequential| net.forward(&images).mse_loss(&target, tch::Reduction::Mean);
    let first = loss_of(&net).double_value(&[]);
    for _ in 0..200 {
        let loss = loss_of(&net);
        opt.backward_step(&loss);
    }
    let last = loss_of(&net).double_value(&[]);
    assert!(last < first * 0.1, "loss did not fall: {first} -> {last}");
    assert!(vs.trainable_variables().iter().all(|v| v.grad().defined()), "every parameter got a gradient");
}
