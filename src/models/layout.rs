//! The layout-to-image condition's tokens (the paper's layout2img-openimages256 model, Sec. 4.3.1
//! and App. D.3): a port of taming-transformers' `ObjectsBoundingBoxConditionalBuilder`
//! (taming/data/conditional_builder/{objects_bbox,objects_center_points,utils}.py), whose ids
//! feed the LDMBert conditioner (`BERTEmbedder(use_tokenizer=False)`, cond_stage_key
//! `coordinates_bbox`).
//!
//! One object is three tokens: its class (`class + classes·modifier`, the modifier being the
//! dataset's group-of/occluded/depiction/inside flags as bits 1/2/4/8 where the config uses them)
//! and its top-left and bottom-right corners, each a cell of an s×s grid with s = ⌊√tokens⌋:
//! `round(y·(s−1))·s + round(x·(s−1))`, Python's round (ties to even). Unused object slots are
//! `(none, none, none)` with none = tokens − 1; with `encode_crop` the crop's two corner tokens
//! close the sequence: `max_objects·3 (+2)` ids, 30·3 + 2 = 92 for the released model.
//!
//! Before tokenising, the reference drops objects whose overlap with the crop has zero area, then
//! either keeps boxes in image coordinates and encodes the crop (`encode_crop`), or rescales boxes
//! into the crop (clamped to it); a horizontal flip mirrors boxes and crop. The arithmetic here
//! repeats the reference's own, in f64 on (x, y, w, h) boxes with w = x1 − x0, so ids are equal
//! even on grid ties. Two deliberate differences: the reference shuffles the objects with
//! Python's global RNG (a training augmentation) and silently truncates past `max_objects`;
//! here the caller's order is kept and too many objects is an error.

use crate::{Error, Result};

/// A normalised rectangle, corners in [0, 1] (image or crop coordinates).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rect {
    pub x0: f64,
    pub y0: f64,
    pub x1: f64,
    pub y1: f64,
}

impl Rect {
    pub const FULL: Rect = Rect { x0: 0.0, y0: 0.0, x1: 1.0, y1: 1.0 };

    /// The reference's (x0, y0, w, h).
    pub fn xywh(&self) -> [f64; 4] {
        [self.x0, self.y0, self.x1 - self.x0, self.y1 - self.y0]
    }
}

/// Open Images box attributes, the class token's modifier bits where the config uses them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ObjectAttributes {
    pub group_of: bool,
    pub occluded: bool,
    pub depiction: bool,
    pub inside: bool,
}

/// One object of a layout: class number and normalised corners (x right, y down).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BoundingBox {
    pub class_id: usize,
    pub x0: f64,
    pub y0: f64,
    pub x1: f64,
    pub y1: f64,
    pub attrs: ObjectAttributes,
}

impl BoundingBox {
    pub fn new(class_id: usize, x0: f64, y0: f64, x1: f64, y1: f64) -> Self {
        BoundingBox { class_id, x0, y0, x1, y1, attrs: ObjectAttributes::default() }
    }
    pub fn rect(&self) -> Rect {
        Rect { x0: self.x0, y0: self.y0, x1: self.x1, y1: self.y1 }
    }
}

/// What `decode` reads back: the objects (grid-snapped) and, with `encode_crop`, the crop.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    pub objects: Vec<BoundingBox>,
    pub crop: Option<Rect>,
}

/// The builder's constructor arguments (no_object_classes, no_max_objects, no_tokens, encode_crop,
/// use_group_parameter, use_additional_parameters).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayoutConfig {
    pub num_classes: usize,
    pub max_objects: usize,
    pub num_tokens: usize,
    pub encode_crop: bool,
    pub use_group: bool,
    pub use_additional: bool,
}

impl LayoutConfig {
    /// latent-diffusion's layout2img-openimages256 (BERT vocab 8192, max_seq_len 92). Its data
    /// module (ldm/data/openimages.py) is unpublished; 92 = 30·3 + 2 and DDPM's crop-cutting code
    /// (`[..., :-2]`) fix max_objects and encode_crop, the rest is taming's Open Images config
    /// (configs/open_images_scene_images_transformer.yaml): 8192 tokens, group and additional
    /// flags, and its class list: 352 names of `top_300_classes_plus_coco_compatibility` less the
    /// 12 ids `open_images_unify_categories_for_coco` folds into others = 340 classes.
    pub fn layout2img_openimages256() -> Self {
        LayoutConfig {
            num_classes: 340,
            max_objects: 30,
            num_tokens: 8192,
            encode_crop: true,
            use_group: true,
            use_additional: true,
        }
    }
}

#[derive(Clone, Debug)]
pub struct LayoutTokenizer {
    cfg: LayoutConfig,
    sections: usize,
}

fn round_even(v: f64) -> i64 {
    v.round_ties_even() as i64 // Python's round(); f64::round would send 44.5 to 45
}

fn check_rect(what: &str, r: &Rect, i: Option<usize>) -> Result<()> {
    let at = i.map(|i| format!(" {i}")).unwrap_or_default();
    let c = [r.x0, r.y0, r.x1, r.y1];
    if c.iter().any(|v| !(0.0..=1.0).contains(v)) {
        return Err(Error::invalid("layout", format!("{what}{at}: coordinates {c:?} must be in [0, 1] (normalised)")));
    }
    if r.x1 < r.x0 || r.y1 < r.y0 {
        return Err(Error::invalid("layout", format!("{what}{at}: corners {c:?} need x0 <= x1 and y0 <= y1")));
    }
    Ok(())
}

impl LayoutTokenizer {
    pub fn new(cfg: LayoutConfig) -> Result<Self> {
        let sections = cfg.num_tokens.isqrt();
        if sections < 2 || cfg.num_classes == 0 {
            return Err(Error::invalid("layout", format!("{cfg:?}: needs num_tokens >= 4 and num_classes >= 1")));
        }
        if cfg.num_tokens > u32::MAX as usize {
            return Err(Error::invalid("layout", format!("{cfg:?}: ids are u32")));
        }
        let tok = LayoutTokenizer { cfg, sections };
        // the largest class token must stay below none, or decode would take it for an empty slot
        let top = tok.cfg.num_classes.saturating_mul(tok.max_modifier() + 1) - 1;
        if top >= tok.none() as usize {
            return Err(Error::invalid("layout", format!("{:?}: class tokens reach {top}, not below the none token", tok.cfg)));
        }
        Ok(tok)
    }

    pub fn layout2img_openimages256() -> Self {
        Self::new(LayoutConfig::layout2img_openimages256()).expect("the released config is valid")
    }

    pub fn config(&self) -> &LayoutConfig {
        &self.cfg
    }

    /// The padding token of empty object slots (the reference's `none`).
    pub fn none(&self) -> u32 {
        (self.cfg.num_tokens - 1) as u32
    }

    /// Ids per layout (the reference's `embedding_dim`).
    pub fn seq_len(&self) -> usize {
        self.cfg.max_objects * 3 + if self.cfg.encode_crop { 2 } else { 0 }
    }

    fn max_modifier(&self) -> usize {
        (if self.cfg.use_group { 1 } else { 0 }) | (if self.cfg.use_additional { 14 } else { 0 })
    }

    fn coordinate_token(&self, x: f64, y: f64) -> u32 {
        let n = (self.sections - 1) as f64;
        (round_even(y * n) * self.sections as i64 + round_even(x * n)) as u32
    }

    fn coordinates(&self, token: u32) -> (f64, f64) {
        let (t, s) = (token as usize, self.sections);
        ((t % s) as f64 / (s - 1) as f64, (t / s) as f64 / (s - 1) as f64)
    }

    /// Tokens of a rectangle given as (x, y, w, h): its two corners.
    fn corner_tokens(&self, [x, y, w, h]: [f64; 4]) -> [u32; 2] {
        [self.coordinate_token(x, y), self.coordinate_token(x + w, y + h)]
    }

    fn class_token(&self, b: &BoundingBox) -> u32 {
        let a = &b.attrs;
        let mut modifier = 0;
        if self.cfg.use_group && a.group_of {
            modifier |= 1;
        }
        if self.cfg.use_additional {
            modifier |= (2 * a.occluded as usize) | (4 * a.depiction as usize) | (8 * a.inside as usize);
        }
        (b.class_id + self.cfg.num_classes * modifier) as u32
    }

    /// Objects (in the order given) on the full image, no flip: `seq_len()` ids.
    pub fn encode(&self, objects: &[BoundingBox]) -> Result<Vec<u32>> {
        self.build(objects, None, false)
    }

    /// The reference's `build(annotations, crop_coordinates, horizontal_flip)`: `crop` is the
    /// region of the image the sample shows (None: all of it), `flip` a horizontal mirror.
    pub fn build(&self, objects: &[BoundingBox], crop: Option<Rect>, flip: bool) -> Result<Vec<u32>> {
        let cfg = &self.cfg;
        if objects.len() > cfg.max_objects {
            return Err(Error::invalid("layout", format!("{} objects, at most {} fit", objects.len(), cfg.max_objects)));
        }
        for (i, b) in objects.iter().enumerate() {
            if b.class_id >= cfg.num_classes {
                let msg = format!("object {i}: class {} out of range 0..{}", b.class_id, cfg.num_classes);
                return Err(Error::invalid("layout", msg));
            }
            check_rect("object", &b.rect(), Some(i))?;
        }
        let crop = crop.unwrap_or(Rect::FULL);
        check_rect("crop", &crop, None)?;
        if crop.x1 <= crop.x0 || crop.y1 <= crop.y0 {
            return Err(Error::invalid("layout", format!("crop {crop:?} has zero area")));
        }
        let crop = crop.xywh();
        let (frame, extra) = if cfg.encode_crop {
            let c = if flip { [1.0 - (crop[0] + crop[2]), crop[1], crop[2], crop[3]] } else { crop };
            (Rect::FULL.xywh(), Some(self.corner_tokens(c)))
        } else {
            (crop, None)
        };
        let mut ids = Vec::with_capacity(self.seq_len());
        for b in objects.iter().filter(|b| intersection_area(b.rect().xywh(), crop) > 0.0) {
            ids.push(self.class_token(b));
            ids.extend(self.corner_tokens(rescale(b.rect().xywh(), frame, flip)));
        }
        ids.resize(cfg.max_objects * 3, self.none());
        ids.extend(extra.into_iter().flatten());
        Ok(ids)
    }

    /// The reference's `inverse_build` with each class token split as `representation_to_annotation`
    /// does: objects of non-none slots in sequence order, corners on the grid. Any id below
    /// `num_tokens` is accepted, as there (coordinate ids past the s×s grid give y > 1).
    pub fn decode(&self, ids: &[u32]) -> Result<Layout> {
        if ids.len() != self.seq_len() {
            return Err(Error::invalid("layout", format!("{} ids, the layout sequence has {}", ids.len(), self.seq_len())));
        }
        if let Some(bad) = ids.iter().find(|&&t| t as usize >= self.cfg.num_tokens) {
            return Err(Error::invalid("layout", format!("id {bad} out of range 0..{}", self.cfg.num_tokens)));
        }
        let rect = |a: u32, b: u32| {
            let ((x0, y0), (x1, y1)) = (self.coordinates(a), self.coordinates(b));
            Rect { x0, y0, x1, y1 }
        };
        let n = self.cfg.max_objects * 3;
        let objects = ids[..n]
            .chunks(3)
            .filter(|t| t[0] != self.none())
            .map(|t| {
                let (class_id, m) = (t[0] as usize % self.cfg.num_classes, t[0] as usize / self.cfg.num_classes);
                let (g, a) = (self.cfg.use_group, self.cfg.use_additional);
                let attrs = ObjectAttributes {
                    group_of: g && m & 1 != 0,
                    occluded: a && m & 2 != 0,
                    depiction: a && m & 4 != 0,
                    inside: a && m & 8 != 0,
                };
                let r = rect(t[1], t[2]);
                BoundingBox { class_id, x0: r.x0, y0: r.y0, x1: r.x1, y1: r.y1, attrs }
            })
            .collect();
        let crop = self.cfg.encode_crop.then(|| rect(ids[n], ids[n + 1]));
        Ok(Layout { objects, crop })
    }
}

/// utils.intersection_area on (x, y, w, h) rectangles.
fn intersection_area(a: [f64; 4], b: [f64; 4]) -> f64 {
    let (a2, b2) = ([a[0], a[1], a[0] + a[2], a[1] + a[3]], [b[0], b[1], b[0] + b[2], b[1] + b[3]]);
    let x = (a2[2].min(b2[2]) - a2[0].max(b2[0])).max(0.0);
    let y = (a2[3].min(b2[3]) - a2[1].max(b2[1])).max(0.0);
    x * y
}

/// utils.rescale_annotations' rescale_bbox: a box into the frame's coordinates, clamped, mirrored.
fn rescale(b: [f64; 4], frame: [f64; 4], flip: bool) -> [f64; 4] {
    let clamp = |v: f64| v.clamp(0.0, 1.0); // max(min(v, 1), 0); v is never NaN here
    let x0 = clamp((b[0] - frame[0]) / frame[2]);
    let y0 = clamp((b[1] - frame[1]) / frame[3]);
    let w = (b[2] / frame[2]).min(1.0 - x0);
    let h = (b[3] / frame[3]).min(1.0 - y0);
    [if flip { 1.0 - (x0 + w) } else { x0 }, y0, w, h]
}
