//! The JSON configs the engine reads: diffusers config.json (UNet, VAE, VQ, CLIP, LDMBert),
//! scheduler_config.json, model_index.json (must be JSON) and the two training configs. Any
//! value must give a config or an error message, never a panic.
#![no_main]
use ldm_engine::diffusion::SchedulerConfig;
use ldm_engine::models::checkpoint::{clip_config, ldm_bert_config, unet_config, vae_config, vq_config};
use ldm_engine::train::ae_trainer::AeTrainConfig;
use ldm_engine::train::ldm_config::LdmTrainConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let _ = unet_config(&v);
    let _ = vae_config(&v);
    let _ = vq_config(&v);
    let _ = clip_config(&v);
    let _ = ldm_bert_config(&v);
    if let Ok(s) = SchedulerConfig::from_diffusers(&v) {
        // a parsed schedule must also be usable: tables and a few step counts
        let _ = s.alphas_cumprod();
        for steps in [1, 7, 50] {
            let _ = s.discrete_timesteps(steps);
        }
    }
    let _ = AeTrainConfig::from_json(&v);
    let _ = LdmTrainConfig::from_json(&v, 4, 3);
});
