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
