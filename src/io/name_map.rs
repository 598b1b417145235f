//! diffusers ↔ CompVis parameter names, in one place. The engine's module tree uses the CompVis
//! names (what SD1.x single-file checkpoints carry); diffusers folders are renamed on load.

/// A diffusers `ResnetBlock2D` local name → the CompVis `ResBlock` one.
pub fn resnet_to_compvis(name: &str) -> String {
    const MAP: [(&str, &str); 6] = [
        ("norm1.", "in_layers.0."),
        ("conv1.", "in_layers.2."),
        ("time_emb_proj.", "emb_layers.1."),
        ("norm2.", "out_layers.0."),
        ("conv2.", "out_layers.3."),
        ("conv_shortcut.", "skip_connection."),
    ];
    for (d, c) in MAP {
        if let Some(rest) = name.strip_prefix(d) {
            return format!("{c}{rest}");
        }
    }
    name.to_string()
}

/// A diffusers `Transformer2DModel` local name → the CompVis `SpatialTransformer` one. The two
/// trees use the same names (norm, proj_in, transformer_blocks.i.{attn1,attn2,ff,norm1..3},
/// proj_out), so this is the identity, kept here so every mapping has one home.
pub fn transformer_to_compvis(name: &str) -> String {
    name.to_string()
}

/// A diffusers `LDMBertModel` key → the CompVis `BERTEmbedder` (x-transformers) key under
/// `cond_stage_model.transformer`: layer i's attention is `attn_layers.layers.{2i}` and its
/// feed-forward `attn_layers.layers.{2i+1}`, each [LayerNorm, block].
pub fn ldm_bert_to_compvis(name: &str) -> String {
    let simple = [
        ("model.embed_tokens.", "token_emb."),
        ("model.embed_positions.", "pos_emb.emb."),
        ("model.layer_norm.", "norm."),
    ];
    for (d, c) in simple {
        if let Some(rest) = name.strip_prefix(d) {
            return format!("{c}{rest}");
        }
    }
    let Some(rest) = name.strip_prefix("model.layers.") else { return name.to_string() };
    let Some((i, local)) = rest.split_once('.') else { return name.to_string() };
    let Ok(i) = i.parse::<usize>() else { return name.to_string() };
    let (slot, part) = match local.split_once('.') {
        Some(("self_attn_layer_norm", p)) => (2 * i, format!("0.{p}")),
        Some(("self_attn", p)) => {
            let Some((proj, p)) = p.split_once('.') else { return name.to_string() };
            let to = match proj {
                "q_proj" => "to_q",
                "k_proj" => "to_k",
                "v_proj" => "to_v",
                "out_proj" => "to_out",
                _ => return name.to_string(),
            };
            (2 * i, format!("1.{to}.{p}"))
        }
        Some(("final_layer_norm", p)) => (2 * i + 1, format!("0.{p}")),
        Some(("fc1", p)) => (2 * i + 1, format!("1.net.0.0.{p}")),
        Some(("fc2", p)) => (2 * i + 1, format!("1.net.2.{p}")),
        _ => return name.to_string(),
    };
    format!("attn_layers.layers.{slot}.{part}")
}

/// The shape of a UNet that decides how diffusers' block indices become CompVis slot indices.
pub struct UNetLayout {
    pub levels: usize,
    pub num_res_blocks: usize,
    /// levels (0 = full resolution) that carry attention
    pub attention_levels: Vec<usize>,
}

/// A diffusers `UNet2DConditionModel` key → the CompVis `UNetModel` key. Keys that are not UNet
/// parameters come back unchanged (so the loader reports them as unexpected, by their own name).
pub fn unet_to_compvis(name: &str, l: &UNetLayout) -> String {
    let nr = l.num_res_blocks;
    let parts: Vec<&str> = name.splitn(5, '.').collect();
    let num = |i: usize| parts.get(i).and_then(|s| s.parse::<usize>().ok());
    let rest_from = |i: usize| parts[i..].join(".");
    let simple = [
        ("conv_in.", "input_blocks.0.0."),
        ("time_embedding.linear_1.", "time_embed.0."),
        ("time_embedding.linear_2.", "time_embed.2."),
        ("class_embedding.", "label_emb."),
        ("conv_norm_out.", "out.0."),
        ("conv_out.", "out.2."),
    ];
    for (d, c) in simple {
        if let Some(rest) = name.strip_prefix(d) {
            return format!("{c}{rest}");
        }
    }
    match (parts.first().copied(), parts.get(2).copied()) {
        (Some("down_blocks"), Some(kind)) if parts.len() == 5 => {
            let (Some(i), Some(j)) = (num(1), num(3)) else { return name.to_string() };
            let slot = 1 + i * (nr + 1);
            match kind {
                "resnets" => format!("input_blocks.{}.0.{}", slot + j, resnet_to_compvis(&rest_from(4))),
                "attentions" => format!("input_blocks.{}.1.{}", slot + j, rest_from(4)),
                "downsamplers" => format!("input_blocks.{}.0.op.{}", slot + nr, rest_from(4).trim_start_matches("conv.")),
                _ => name.to_string(),
            }
        }
        (Some("mid_block"), Some(_)) if parts.len() >= 4 => match (parts[1], num(2)) {
            ("resnets", Some(j)) => format!("middle_block.{}.{}", 2 * j, resnet_to_compvis(&parts[3..].join("."))),
            ("attentions", Some(0)) => format!("middle_block.1.{}", parts[3..].join(".")),
            _ => name.to_string(),
        },
        (Some("up_blocks"), Some(kind)) if parts.len() == 5 => {
            let (Some(i), Some(j)) = (num(1), num(3)) else { return name.to_string() };
            let slot = i * (nr + 1);
            let level = l.levels - 1 - i;
            match kind {
                "resnets" => format!("output_blocks.{}.0.{}", slot + j, resnet_to_compvis(&rest_from(4))),
                "attentions" => format!("output_blocks.{}.1.{}", slot + j, rest_from(4)),
                "upsamplers" => {
                    let idx = if l.attention_levels.contains(&level) { 2 } else { 1 };
                    format!("output_blocks.{}.{idx}.{}", slot + nr, rest_from(4))
                }
                _ => name.to_string(),
            }
        }
        _ => name.to_string(),
    }
}

/// A diffusers `AutoencoderKL` key → the CompVis one. `levels` = len(ch_mult): diffusers numbers
/// decoder up-blocks deepest first, CompVis by resolution level.
pub fn vae_to_compvis(name: &str, levels: usize) -> String {
    let Some((part, rest)) = name.split_once('.') else { return name.to_string() };
    if part != "encoder" && part != "decoder" {
        return name.to_string();
    }
    let p: Vec<&str> = rest.splitn(5, '.').collect();
    let num = |i: usize| p.get(i).and_then(|s| s.parse::<usize>().ok());
    let attn = |a: &str| -> String {
        let a = a.replacen("group_norm.", "norm.", 1).replacen("to_q.", "q.", 1).replacen("to_k.", "k.", 1).replacen("to_v.", "v.", 1);
        a.replacen("to_out.0.", "proj_out.", 1)
    };
    let res = |r: &str| r.replacen("conv_shortcut.", "nin_shortcut.", 1);
    let mapped = match (p.first().copied(), p.get(2).copied()) {
        (Some("down_blocks"), Some(kind)) if p.len() == 5 => match (num(1), num(3), kind) {
            (Some(i), Some(j), "resnets") => format!("down.{i}.block.{j}.{}", res(p[4])),
            (Some(i), Some(j), "attentions") => format!("down.{i}.attn.{j}.{}", attn(p[4])),
            (Some(i), Some(0), "downsamplers") => format!("down.{i}.downsample.{}", p[4]),
            _ => rest.to_string(),
        },
        (Some("up_blocks"), Some(kind)) if p.len() == 5 => match (num(1), num(3), kind) {
            (Some(k), Some(j), "resnets") => format!("up.{}.block.{j}.{}", levels - 1 - k, res(p[4])),
            (Some(k), Some(j), "attentions") => format!("up.{}.attn.{j}.{}", levels - 1 - k, attn(p[4])),
            (Some(k), Some(0), "upsamplers") => format!("up.{}.upsample.{}", levels - 1 - k, p[4]),
            _ => rest.to_string(),
        },
        (Some("mid_block"), _) => {
            let r = p[1..].join(".");
            if let Some(x) = r.strip_prefix("resnets.0.") {
                format!("mid.block_1.{}", res(x))
            } else if let Some(x) = r.strip_prefix("resnets.1.") {
                format!("mid.block_2.{}", res(x))
            } else if let Some(x) = r.strip_prefix("attentions.0.") {
                format!("mid.attn_1.{}", attn(x))
            } else {
                rest.to_string()
            }
        }
        (Some("conv_norm_out"), _) => format!("norm_out.{}", p[1..].join(".")),
        _ => rest.to_string(),
    };
    format!("{part}.{mapped}")
}

/// diffusers stores the VAE attention projections as Linear [C, C]; CompVis as 1×1 conv
/// [C, C, 1, 1]. Same numbers, one reshape.
pub fn vae_fix_shape(compvis_name: &str, t: crate::Tensor) -> crate::Result<crate::Tensor> {
    let is_attn_proj = [".q.weight", ".k.weight", ".v.weight", ".proj_out.weight"].iter().any(|s| compvis_name.ends_with(s));
    if is_attn_proj && t.rank() == 2 {
        let (o, i) = (t.dim(0)?, t.dim(1)?);
        return t.reshape(&[o, i, 1, 1]);
    }
    Ok(t)
}
