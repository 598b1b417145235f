//! Full-size configs, built shapes-only (no weight memory) so CI can check them: parameter counts
//! against the published models.

use ldm_engine::models::unet::{UNet, UNetConfig};
use ldm_engine::nn::VarBuilder;
use ldm_engine::DType;

#[test]
fn sd15_unet_has_the_published_parameter_count() {
    let vb = VarBuilder::shapes_only(DType::F32);
    UNet::new(&vb.pp("model.diffusion_model"), &UNetConfig::sd15()).unwrap();
    // diffusers' UNet2DConditionModel for runwayml/stable-diffusion-v1-5: 859,520,964 parameters
    assert_eq!(vb.num_params(), 859_520_964);
    // the CompVis key tree, as SD1.x single files name it
    let names: Vec<String> = vb.params().into_iter().map(|(n, _)| n).collect();
    for k in [
        "model.diffusion_model.input_blocks.0.0.weight",
        "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight",
        "model.diffusion_model.input_blocks.3.0.op.weight",
        "model.diffusion_model.middle_block.1.proj_out.weight",
        "model.diffusion_model.output_blocks.2.1.conv.weight",
        "model.diffusion_model.output_blocks.5.2.conv.weight",
        "model.diffusion_model.out.2.bias",
    ] {
        assert!(names.iter().any(|n| n == k), "missing {k}");
    }
    assert_eq!(names.len(), 686);
}
