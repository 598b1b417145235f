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
