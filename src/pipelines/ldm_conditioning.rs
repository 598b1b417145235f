//! What the paper's latent diffusion models are conditioned on, and how each condition reaches the
//! UNet (CompVis ldm/models/diffusion/ddpm.py `LatentDiffusion.get_learned_conditioning` and
//! `DiffusionWrapper`): a cross-attention context (class label, text, layout) or channels
//! concatenated to the latents at every UNet call (inpainting's masked image and mask,
//! super-resolution's low-resolution image, semantic synthesis' segmentation).
//!
//! - Inpainting (`inpainting_big`) follows CompVis scripts/inpaint.py: image and mask in [0, 1], the
//!   mask binarised at 0.5, masked image = (1 − mask)·image, all three mapped ×2 − 1; the concat is
//!   [first-stage encode of the masked image (VQ: encoder + quant_conv, not quantised, not scaled),
//!   the ±1 mask resized to the latents by nearest neighbour]; afterwards the decoded image is
//!   pasted into the known region.
//! - Super-resolution (`bsr_sr`, cond stage Identity) concatenates the low-res image, ×2 − 1, at
//!   the latents' size (diffusers' LDMSuperResolutionPipeline; the output is f× larger).
//! - Semantic synthesis (`semantic_synthesis256`): class ids → one-hot channels (taming's
//!   `np.eye(n_labels)[segmentation]`, rearranged to [N, C, H, W]) → SpatialRescaler.
//! - Layout-to-image: boxes → `LayoutTokenizer` ids → LDMBert context.
//! - Text (text2img256, txt2img_1p4b): prompts → BERT WordPiece ids (padded to the model's
//!   positions) → LDMBert context; guidance against the empty prompt.

use crate::models::bert_tokenizer::BertTokenizer;
use crate::models::embedders::{ClassEmbedder, SpatialRescaler};
use crate::models::layout::{BoundingBox, LayoutTokenizer};
use crate::models::ldm_bert::LdmBert;
use crate::{DType, Error, Result, Tensor};

const OP: &str = "ldm";

/// The conditioning input of one request, one entry per image.
#[derive(Clone, Debug)]
pub enum LdmCondition {
    /// unconditional models
    None,
    /// class-conditional models: one label per image
    Class(Vec<i64>),
    /// text-to-image: one prompt per image
    Text(Vec<String>),
    /// layout-to-image: the objects of each image (normalised boxes)
    Layout(Vec<Vec<BoundingBox>>),
    /// inpainting: `image` [N, 3, H, W] RGB in [0, 1], `mask` [N, 1, H, W] in [0, 1] (≥ 0.5 is
    /// filled in); H, W = the latents' × the first stage's factor
    Inpaint { image: Tensor, mask: Tensor },
    /// super-resolution: the low-resolution image [N, 3, h, w] RGB in [0, 1], at the latents' size
    LowRes(Tensor),
    /// semantic synthesis: class ids [N, H, W] (I64); H, W = the latents' × 2^rescaler stages
    Segmentation(Tensor),
}

impl LdmCondition {
    /// What it is, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            LdmCondition::None => "no condition",
            LdmCondition::Class(_) => "class labels",
            LdmCondition::Text(_) => "text prompts",
            LdmCondition::Layout(_) => "layouts",
            LdmCondition::Inpaint { .. } => "an image and mask to inpaint",
            LdmCondition::LowRes(_) => "a low-resolution image",
            LdmCondition::Segmentation(_) => "a segmentation map",
        }
    }

    /// How many images it conditions (None for `None`).
    pub fn batch(&self) -> Option<usize> {
        match self {
            LdmCondition::None => None,
            LdmCondition::Class(l) => Some(l.len()),
            LdmCondition::Text(t) => Some(t.len()),
            LdmCondition::Layout(l) => Some(l.len()),
            LdmCondition::Inpaint { image: t, .. } | LdmCondition::LowRes(t) | LdmCondition::Segmentation(t) => t.dims().first().copied(),
        }
    }

    /// An error unless it conditions `n` images (or is `None`).
    pub fn check_batch(&self, n: usize) -> Result<()> {
        match self.batch() {
            Some(b) if b != n => Err(Error::invalid(OP, format!("{b} {} for {n} images", self.kind()))),
            _ => Ok(()),
        }
    }
}

/// A model's conditioning stage (CompVis `cond_stage_model`, as the preset's `cond_stage_config`
/// builds it).
pub enum CondStage {
    None,
    Class(ClassEmbedder),
    /// The text model; the WordPiece vocabulary is not in the checkpoint, so the tokenizer comes
    /// separately (`LatentDiffusion::with_tokenizer`).
    Text { bert: LdmBert, tokenizer: Option<Box<BertTokenizer>> },
    Layout { bert: LdmBert, tokenizer: LayoutTokenizer },
    /// `__is_first_stage__`: the masked image through the first stage's encoder (inpainting)
    MaskedImage,
    /// `torch.nn.Identity`: the low-res image as is (super-resolution)
    LowRes,
    /// one-hot segmentation → SpatialRescaler; `n_classes` = its input channels
    Segmentation { rescaler: SpatialRescaler, n_classes: usize },
}

impl CondStage {
    /// The condition this stage takes, for messages.
    pub fn expects(&self) -> &'static str {
        match self {
            CondStage::None => "no condition",
            CondStage::Class(_) => "class labels",
            CondStage::Text { .. } => "text prompts",
            CondStage::Layout { .. } => "layouts",
            CondStage::MaskedImage => "an image and mask to inpaint",
            CondStage::LowRes => "a low-resolution image",
            CondStage::Segmentation { .. } => "a segmentation map",
        }
    }
}

/// The UNet's inputs besides the latents.
pub struct UNetInputs {
    /// cross-attention context [N, L, D], or [2N, L, D] = [unconditional; conditional] when guided
    pub context: Option<Tensor>,
    /// channels concatenated to the latents at every call, [N, C', h, w]
    pub concat: Option<Tensor>,
    pub guided: bool,
}

impl UNetInputs {
    fn context(context: Tensor, guided: bool) -> Self {
        UNetInputs { context: Some(context), concat: None, guided }
    }
    fn concat(concat: Tensor) -> Self {
        UNetInputs { context: None, concat: Some(concat), guided: false }
    }
}

/// The pieces of the model that turn a condition into UNet inputs.
pub(crate) struct Conditioner<'a> {
    pub stage: &'a CondStage,
    pub first_stage: &'a super::ldm::FirstStage,
}

impl Conditioner<'_> {
    /// The UNet inputs for `cond` and latents of shape `latent` [N, C, h, w].
    pub fn build(&self, cond: &LdmCondition, guidance: f64, latent: [usize; 4]) -> Result<UNetInputs> {
        let [n, _, h, w] = latent;
        cond.check_batch(n)?;
        let guided = guidance != 1.0;
        let no_guidance = || -> Result<()> {
            if guided {
                return Err(Error::invalid(OP, format!("a model conditioned on {} has no unconditional input: classifier-free guidance {guidance} needs 1", self.stage.expects())));
            }
            Ok(())
        };
        Ok(match (self.stage, cond) {
            (CondStage::None, LdmCondition::None) => {
                no_guidance()?;
                UNetInputs { context: None, concat: None, guided: false }
            }
            (CondStage::None, other) => return Err(Error::invalid(OP, format!("this model is unconditional: it takes no {}", other.kind()))),
            (CondStage::Class(emb), LdmCondition::Class(labels)) => {
                let cond = emb.forward(&Tensor::from_vec(labels.clone(), &[n])?)?;
                if !guided {
                    return Ok(UNetInputs::context(cond, false));
                }
                // the null class is the embedder's last row (cin256-v2's convention)
                let null = emb.forward(&Tensor::from_vec(vec![emb.num_classes() as i64 - 1; n], &[n])?)?;
                UNetInputs::context(Tensor::cat(&[&null, &cond], 0)?, true)
            }
            (CondStage::Text { bert, tokenizer }, LdmCondition::Text(prompts)) => {
                let tok = tokenizer.as_ref().ok_or_else(|| Error::invalid(OP, "this text model has no tokenizer: load the BERT WordPiece vocabulary (vocab.txt) with LatentDiffusion::with_tokenizer"))?;
                let cond = text_context(bert, tok, prompts)?;
                if !guided {
                    return Ok(UNetInputs::context(cond, false));
                }
                let empty = text_context(bert, tok, &vec![String::new(); n])?;
                UNetInputs::context(Tensor::cat(&[&empty, &cond], 0)?, true)
            }
            (CondStage::Layout { bert, tokenizer }, LdmCondition::Layout(layouts)) => {
                no_guidance()?;
                let mut ids = Vec::with_capacity(n * tokenizer.seq_len());
                for (i, objects) in layouts.iter().enumerate() {
                    let t = tokenizer.encode(objects).map_err(|e| Error::invalid(OP, format!("layout {i}: {e}")))?;
                    ids.extend(t.into_iter().map(i64::from));
                }
                UNetInputs::context(bert.forward(&Tensor::from_vec(ids, &[n, tokenizer.seq_len()])?)?, false)
            }
            (CondStage::MaskedImage, LdmCondition::Inpaint { image, mask }) => {
                no_guidance()?;
                let f = self.first_stage.factor();
                let (image, mask) = inpaint_inputs(image, mask, [n, h * f, w * f])?;
                let masked = mask.affine(-1.0, 1.0)?.mul(&image)?; // (1 − mask)·image
                let c = self.first_stage.encode(&masked.affine(2.0, -1.0)?)?;
                let cc = mask.affine(2.0, -1.0)?.upsample_nearest2d(c.dim(2)?, c.dim(3)?)?; // F.interpolate(mask, size=c's), nearest
                UNetInputs::concat(Tensor::cat(&[&c, &cc], 1)?)
            }
            (CondStage::LowRes, LdmCondition::LowRes(image)) => {
                no_guidance()?;
                if image.rank() != 4 || image.dims()[2..] != [h, w] {
                    return Err(Error::bad_shape(OP, format!("the low-res image must be [{n}, C, {h}, {w}]: the latents' size"), image.shape()));
                }
                check_unit_range("low-res image", image)?;
                UNetInputs::concat(image.affine(2.0, -1.0)?)
            }
            (CondStage::Segmentation { rescaler, n_classes }, LdmCondition::Segmentation(labels)) => {
                no_guidance()?;
                let s = 1 << rescaler.n_stages();
                if labels.shape() != [n, h * s, w * s] {
                    let msg = format!("the segmentation must be [{n}, {}, {}] class ids: the latents' {h}×{w} × {s} (the rescaler's {} halvings)", h * s, w * s, rescaler.n_stages());
                    return Err(Error::bad_shape(OP, msg, labels.shape()));
                }
                UNetInputs::concat(rescaler.forward(&one_hot(labels, *n_classes)?)?)
            }
            (stage, other) => return Err(Error::invalid(OP, format!("this model takes {}, not {}", stage.expects(), other.kind()))),
        })
    }
}

/// LDMBert's last hidden states for the prompts, each padded to the model's positions (CompVis
/// BERTTokenizer: padding="max_length", truncation).
fn text_context(bert: &LdmBert, tok: &BertTokenizer, prompts: &[String]) -> Result<Tensor> {
    let len = bert.config().max_positions;
    let mut ids = Vec::with_capacity(prompts.len() * len);
    for p in prompts {
        ids.extend(tok.encode_padded(p, len)?.0.into_iter().map(i64::from));
    }
    bert.forward(&Tensor::from_vec(ids, &[prompts.len(), len])?)
}

fn check_unit_range(what: &str, x: &Tensor) -> Result<()> {
    let v = x.contiguous()?.to_vec::<f32>()?;
    // a little slack for resampling; [-1, 1] images would be far outside
    if let Some(bad) = v.iter().find(|x| !(-1e-3..=1.0 + 1e-3).contains(*x)) {
        return Err(Error::invalid(OP, format!("{what}: value {bad} is outside [0, 1] (images here are RGB / 255)")));
    }
    Ok(())
}

/// Checks and prepares inpainting's inputs for images of `[n, H, W]`: the image in [0, 1] and the
/// mask binarised at 0.5 (scripts/inpaint.py make_batch).
pub(crate) fn inpaint_inputs(image: &Tensor, mask: &Tensor, [n, hh, ww]: [usize; 3]) -> Result<(Tensor, Tensor)> {
    // any channel count: RGB models, and grey ones (MNIST) trained by the engine
    if image.rank() != 4 || image.dim(0)? != n || image.dims()[2..] != [hh, ww] {
        return Err(Error::bad_shape(OP, format!("the image to inpaint must be [{n}, C, {hh}, {ww}]: the latents' size × the first stage's factor"), image.shape()));
    }
    if mask.shape() != [n, 1, hh, ww] {
        return Err(Error::bad_shape(OP, format!("the inpainting mask must be [{n}, 1, {hh}, {ww}], the image's size"), mask.shape()));
    }
    check_unit_range("image to inpaint", image)?;
    check_unit_range("inpainting mask", mask)?;
    Ok((image.to_dtype(DType::F32)?, super::binarize_mask(mask)?))
}

/// The inpainted image: the decoded `x` [N, 3, H, W] in [−1, 1] pasted into the masked region of
/// the original (scripts/inpaint.py: (1 − mask)·image + mask·clamp((x + 1)/2, 0, 1)), returned in
/// [−1, 1] like every decoded image (×2 − 1 of the script's [0, 1] value).
pub fn inpaint_paste(cond: &LdmCondition, x: &Tensor) -> Result<Tensor> {
    let LdmCondition::Inpaint { image, mask } = cond else {
        return Err(Error::invalid(OP, format!("pasting needs the image and mask that were inpainted, not {}", cond.kind())));
    };
    let (image, mask) = match x.shape() {
        &[n, _, hh, ww] => inpaint_inputs(&image.to_device(x.device())?, &mask.to_device(x.device())?, [n, hh, ww])?,
        s => return Err(Error::bad_shape(OP, "the decoded image must be [N, C, H, W]", s)),
    };
    let predicted = x.affine(0.5, 0.5)?.clamp(0.0, 1.0)?;
    let keep = mask.affine(-1.0, 1.0)?.mul(&image.clamp(0.0, 1.0)?)?;
    keep.add(&mask.mul(&predicted)?)?.affine(2.0, -1.0)
}

/// Class ids [N, H, W] (I64, each < n_classes) → one-hot channels [N, n_classes, H, W] (F32).
pub fn one_hot(labels: &Tensor, n_classes: usize) -> Result<Tensor> {
    let (n, h, w) = match labels.shape() {
        &[n, h, w] if labels.dtype() == DType::I64 => (n, h, w),
        s => return Err(Error::bad_shape(OP, format!("a segmentation must be [N, H, W] I64 class ids, got {}", labels.dtype()), s)),
    };
    let ids = labels.contiguous()?.to_vec::<i64>()?;
    let plane = h * w;
    let mut out = vec![0f32; n * n_classes * plane];
    for (i, &id) in ids.iter().enumerate() {
        if id < 0 || id as usize >= n_classes {
            let (b, p) = (i / plane, i % plane);
            return Err(Error::invalid(OP, format!("segmentation class {id} at [{b}, {}, {}] is outside 0..{n_classes}", p / w, p % w)));
        }
        out[(i / plane * n_classes + id as usize) * plane + i % plane] = 1.0;
    }
    Tensor::from_vec(out, &[n, n_classes, h, w])
}
