//! AutoencoderKL (CompVis tree) vs diffusers' AutoencoderKL, weights renamed and reshaped by
//! io::name_map. Bar: max|ours − ref| / max|ref| ≤ 1e-4 in f32.

mod common;
use common::fixture::{assert_parity, Fixture};
use ldm_engine::io::name_map::{vae_fix_shape, vae_to_compvis};
use ldm_engine::models::autoencoder::{AutoencoderConfig, AutoencoderKL};
use ldm_engine::nn::VarBuilder;
use ldm_engine::DType;

/// The fixture's first-stage config (from its metadata) and its weights under CompVis names.
fn first_stage(f: &Fixture) -> (AutoencoderConfig, VarBuilder) {
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
        mid_attn: true,
    };
    let levels = cfg.ch_mult.len();
    let vb = f.weights_with(|n, t| {
        let name = vae_to_compvis(n, levels);
        let t = vae_fix_shape(&name, t).unwrap();
        (name, t)
    });
    (cfg, vb)
}

#[test]
fn kl_autoencoder_matches_diffusers() {
    let f = Fixture::open("vae_kl");
    let (cfg, vb) = first_stage(&f);
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

#[test]
fn vq_model_matches_diffusers_with_identical_indices() {
    use ldm_engine::models::vq::VQModel;
    let f = Fixture::open("vq");
    let (cfg, vb) = first_stage(&f);
    let vq = VQModel::new(&vb, &cfg, f.meta("n_embed"), f.meta_f("beta"), true).unwrap();
    vb.finish(false).unwrap();
    let h = vq.encode(&f.tensor("x")).unwrap();
    assert_parity(&h, &f.tensor("latents"), "vq encode");
    // indices are decided on the reference latents, so a 1e-7 difference in h cannot flip a tie
    let q = vq.quantize.forward(&f.tensor("latents")).unwrap();
    assert_eq!(q.indices.to_vec::<i64>().unwrap(), f.tensor("indices").to_vec::<i64>().unwrap(), "indices exactly equal");
    assert_eq!(vq.quantize.indices(&h).unwrap().to_vec::<i64>().unwrap(), f.tensor("indices").to_vec::<i64>().unwrap(), "and on our own latents");
    assert_parity(&q.z_q, &f.tensor("quantized"), "vq codes");
    assert_parity(&q.loss.reshape(&[1]).unwrap(), &f.tensor("commit_loss"), "vq loss (legacy beta)");
    assert_parity(&vq.decode(&f.tensor("latents")).unwrap(), &f.tensor("decoded"), "vq decode");
}

#[test]
fn vq_gradients_follow_the_beta_convention_and_pass_straight_through() {
    use ldm_engine::models::vq::VectorQuantizer;
    use ldm_engine::Tensor;
    let codebook = common::randn(&[8, 3], 1);
    let z0 = common::randn(&[1, 3, 2, 2], 2);
    for legacy in [true, false] {
        let vq = VectorQuantizer { codebook: codebook.requires_grad(), beta: 0.25, legacy, ema: None };
        let z = z0.requires_grad();
        let q = vq.forward(&z).unwrap();
        let zq = vq.lookup(&q.indices.reshape(&[1, 2, 2]).unwrap()).unwrap();
        // d loss / d z: only the commitment term reaches the encoder (weight 1 legacy, β otherwise)
        let g = q.loss.backward().unwrap();
        let w = if legacy { 1.0 } else { 0.25 };
        let want: Vec<f64> = common::vals(&z0).iter().zip(common::vals(&zq)).map(|(a, b)| w * 2.0 * (a - b) / 12.0).collect();
        common::assert_close(&common::vals(g.get(&z).unwrap()), &want, 1e-7, 1e-5, "commitment gradient");
        assert!(g.get(&vq.codebook).is_some(), "the codebook term trains the codebook");
        // straight-through: downstream gradients reach z unchanged
        let g = q.z_q.mul(&Tensor::full(3.0, &[], ldm_engine::DType::F32)).unwrap().sum_all().unwrap().backward().unwrap();
        assert_eq!(common::vals(g.get(&z).unwrap()), vec![3.0; 12]);
    }
}

#[test]
fn tiled_decode_matches_diffusers_tiled_decode() {
    let f = Fixture::open("vae_kl");
    let (cfg, vb) = first_stage(&f);
    let vae = AutoencoderKL::new(&vb, &cfg).unwrap();
    let t = Fixture::open("vae_kl_tiled");
    // 7×9 latent in tiles of 4 stepping by 3: partial tiles on both edges
    let out = vae.decode_tiled(&t.tensor("z"), t.meta("latent_tile"), t.meta_f("overlap")).unwrap();
    assert_parity(&out, &t.tensor("decoded"), "tiled decode");
    // a latent that fits one tile decodes exactly as without tiling
    let z = t.tensor("z").narrow(2, 0, 4).unwrap().narrow(3, 0, 4).unwrap();
    assert_eq!(common::vals(&vae.decode_tiled(&z, 4, 0.25).unwrap()), common::vals(&vae.decode(&z).unwrap()));
    assert!(vae.decode_tiled(&z, 1, 0.25).is_err(), "a step of 0 latents is refused");
}
