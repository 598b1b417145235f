//! AutoencoderKL (CompVis tree) vs diffusers' AutoencoderKL, weights renamed and reshaped by
//! io::name_map. Bar: max|ours − ref| / max|ref| ≤ 1e-4 in f32.

mod common;
use common::fixture::{assert_parity, Fixture};
use ldm_engine::io::name_map::{vae_fix_shape, vae_to_compvis};
use ldm_engine::models::autoencoder::{AutoencoderConfig, AutoencoderKL};
use ldm_engine::nn::VarBuilder;
use ldm_engine::DType;

#[test]
fn kl_autoencoder_matches_diffusers() {
    let f = Fixture::open("vae_kl");
    let cfg = AutoencoderConfig {
        in_channels: 3,
        out_channels: 3,
        ch: f.meta("ch"),
        ch_mult: f.list("ch_mult"),
        num_res_blocks: f.meta("num_res_blocks"),
        attn_levels: vec![],
        z_channels: f.meta("z_channels"),
        embed_dim: f.meta("embed_dim"),
        groups: f.meta("groups"),
    };
    let levels = cfg.ch_mult.len();
    let vb = f.weights_with(|n, t| {
        let name = vae_to_compvis(n, levels);
        let t = vae_fix_shape(&name, t).unwrap();
        (name, t)
    });
    let vae = AutoencoderKL::new(&vb, &cfg).unwrap();
    vb.finish(false).unwrap();
    let post = vae.encode(&f.tensor("x")).unwrap();
    assert_parity(post.mode(), &f.tensor("mean"), "encode mean");
    assert_parity(&post.logvar, &f.tensor("logvar"), "encode logvar");
    assert_parity(&vae.decode(&f.tensor("z")).unwrap(), &f.tensor("decoded"), "decode (odd 5x7 latent)");
}

#[test]
fn sd_vae_has_the_published_parameter_count() {
    let vb = VarBuilder::shapes_only(DType::F32);
    AutoencoderKL::new(&vb.pp("first_stage_model"), &AutoencoderConfig::sd_kl_f8()).unwrap();
    // diffusers AutoencoderKL for SD1.x: 83,653,863 parameters
    assert_eq!(vb.num_params(), 83_653_863);
    let names: Vec<String> = vb.params().into_iter().map(|(n, _)| n).collect();
    for k in ["first_stage_model.encoder.down.3.block.1.conv2.weight", "first_stage_model.decoder.up.0.block.0.nin_shortcut.weight", "first_stage_model.decoder.mid.attn_1.proj_out.weight", "first_stage_model.post_quant_conv.bias"] {
        assert!(names.iter().any(|n| n == k), "missing {k}");
    }
}
