//! Channel padding, a pass over the ncnn layers before they are imported.
//!
//! ONNX Runtime's fast CPU convolutions work on channels in blocks of 16
//! (NCHWc, AVX-512); a tensor of 52 channels misses them and the whole net
//! runs on the slow path (DESIGN.md, "Channel counts matter"). So a conv whose
//! output channels are not a multiple of the block gets zero filters and zero
//! bias appended, and every conv reading that tensor gets zero input weights
//! for the added channels: the outputs are the same numbers.
//!
//! The invariant: a padded channel may hold any *finite* value, because
//! nothing that mixes channels ever reads it with a non-zero weight. Ops that
//! work channel by channel (activations, pooling, resizing, adding two
//! tensors of the same layout) keep a finite value finite; a Concat moves
//! the padded channels into the middle of its output, so its layout records
//! where each original channel now lives and the consuming conv's input
//! weights are placed accordingly. A tensor is padded only if every path from
//! it reaches convolutions through such ops: any other consumer (PixelShuffle,
//! InnerProduct, a channel crop, a division, a depthwise conv, the network's
//! output) turns padding off for every conv the tensor came from.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::ncnn::Layer;

/// Where a tensor's original channels are, once padded.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    /// Channels of the padded tensor.
    pub total: usize,
    /// `positions[i]`: the padded channel holding original channel `i`.
    pub positions: Vec<usize>,
}

impl Layout {
    fn prefix(channels: usize, total: usize) -> Self {
        Layout {
            total,
            positions: (0..channels).collect(),
        }
    }

    /// Places per-channel values (PReLU slopes, Scale factors) at their
    /// padded positions; padded channels get `fill`.
    pub fn spread(&self, values: &[f32], fill: f32) -> Vec<f32> {
        let mut out = vec![fill; self.total];
        for (&p, &v) in self.positions.iter().zip(values) {
            out[p] = v;
        }
        out
    }
}

/// The padded tensors of a model (ncnn blob name → layout); a blob not in the
/// map keeps its channels as they are.
#[derive(Debug, Default)]
pub struct PadPlan {
    layouts: HashMap<String, Layout>,
}

impl PadPlan {
    pub fn layout(&self, blob: &str) -> Option<&Layout> {
        self.layouts.get(blob)
    }

    pub fn is_empty(&self) -> bool {
        self.layouts.is_empty()
    }
}

/// Whether padding `channels` to `multiple` is worth it: the added channels
/// cost work in this conv and the next, so small counts (3 → 16, 8 → 16) are
/// left alone; at most half as many channels again are added.
fn worth_padding(channels: usize, multiple: usize) -> bool {
    let padded = channels.div_ceil(multiple) * multiple;
    !channels.is_multiple_of(multiple) && (padded - channels) * 2 <= channels
}

/// Is this ncnn axis of a CHW blob its channel axis?
fn is_channel_axis(axis: i32) -> bool {
    axis == 0 || axis == -3
}

/// Plans the padding of convolution outputs to a multiple of `multiple`
/// channels (no padding when `multiple` is 0 or 1).
pub fn plan(layers: &[Layer], multiple: usize) -> PadPlan {
    if multiple <= 1 {
        return PadPlan::default();
    }
    let channels = channel_counts(layers);
    let mut padded: BTreeSet<usize> = layers
        .iter()
        .enumerate()
        .filter(|(_, l)| matches!(l.kind.as_str(), "Convolution" | "Deconvolution"))
        .filter(|(_, l)| l.int(0, 0) > 0 && worth_padding(l.int(0, 0) as usize, multiple))
        .map(|(i, _)| i)
        .collect();
    // Each round drops the convs whose padding reached a consumer that
    // cannot take it; at most one round per conv.
    loop {
        let (layouts, refused) = propagate(layers, &padded, multiple, &channels);
        if refused.is_empty() {
            return PadPlan {
                layouts: layouts.into_iter().map(|(b, (l, _))| (b, l)).collect(),
            };
        }
        padded.retain(|i| !refused.contains(i));
    }
}

/// The blobs that are images (N, C, H, W in ONNX), as opposed to the
/// vectors of squeeze-excitation branches (global pooling, InnerProduct):
/// only those may take a per-channel constant of shape [1, C, 1, 1].
pub(crate) fn image_blobs(layers: &[Layer]) -> HashSet<String> {
    let mut images = HashSet::new();
    for l in layers {
        let is_image = |i: usize| l.inputs.get(i).is_some_and(|b| images.contains(b));
        let image = match l.kind.as_str() {
            "Input" | "Convolution" | "ConvolutionDepthWise" | "Deconvolution" => true,
            "Pooling" => l.int(4, 0) == 0, // not global
            "InnerProduct" | "Reshape" | "Flatten" | "MemoryData" => false,
            "Concat" | "Eltwise" => (0..l.inputs.len()).all(is_image),
            "BinaryOp" if l.int(1, 0) == 0 => is_image(0) && is_image(1),
            _ => is_image(0),
        };
        if image {
            images.extend(l.outputs.iter().cloned());
        }
    }
    images
}

/// Channel counts of the blobs where they can be told from the `.param`
/// alone (`None`: unknown).
pub(crate) fn channel_counts(layers: &[Layer]) -> HashMap<String, Option<usize>> {
    let mut c: HashMap<String, Option<usize>> = HashMap::new();
    for l in layers {
        let input = |i: usize| l.inputs.get(i).and_then(|b| c.get(b).copied().flatten());
        let out = match l.kind.as_str() {
            "Input" => Some(3),
            "MemoryData" => {
                let (w, h, ch) = (l.int(0, 0), l.int(1, 0), l.int(2, 0));
                Some(if ch > 0 {
                    ch as usize
                } else if h > 0 {
                    1
                } else {
                    w.max(1) as usize
                })
            }
            "Convolution" | "ConvolutionDepthWise" | "Deconvolution" | "InnerProduct" => {
                Some(l.int(0, 0).max(0) as usize)
            }
            "BinaryOp" if l.int(1, 0) == 0 => match (input(0), input(1)) {
                (Some(a), Some(b)) if a == 1 || b == 1 || a == b => Some(a.max(b)),
                _ => None,
            },
            "Concat" if is_channel_axis(l.int(0, 0)) => {
                (0..l.inputs.len()).map(input).sum::<Option<usize>>()
            }
            "PixelShuffle" => {
                let r = l.int(0, 1).max(1) as usize;
                input(0).map(|ch| ch / (r * r))
            }
            "Crop" => None,
            _ => input(0),
        };
        for b in &l.outputs {
            c.insert(b.clone(), out);
        }
    }
    c
}

/// Is this layer safe for a padded input, channel by channel?
fn per_channel(l: &Layer) -> bool {
    match l.kind.as_str() {
        "Split" | "ReLU" | "Sigmoid" | "TanH" | "Swish" | "PReLU" | "Pooling" | "Interp" => true,
        // Scale with its own factors (spread to the layout); with a blob
        // factor it is a Mul, checked as a binary op.
        "Scale" => l.int(0, 0) != -233,
        "Crop" => {
            // Only crops that leave the channels alone.
            if l.inputs.len() != 1 {
                return false;
            }
            match (l.array(9), l.array(11)) {
                (Some(_), Some(axes)) => axes.iter().all(|&a| !is_channel_axis(a as i32)),
                (Some(_), None) => false,
                _ => l.int(2, 0) == 0 && l.int(5, 0) == 0 && l.int(8, 0) == 0,
            }
        }
        "BinaryOp" if l.int(1, 0) != 0 => match l.int(0, 0) {
            // add, sub, mul, max, min, reverse sub keep a finite value finite
            0 | 1 | 2 | 4 | 5 | 7 => true,
            3 => l.float(2, 0.0) != 0.0,
            _ => false, // pow and reverse division can make inf or NaN
        },
        _ => false,
    }
}

type Layouts = HashMap<String, (Layout, BTreeSet<usize>)>;

/// Layouts of every blob for the convs in `padded`, and the convs whose
/// padding reaches a layer that cannot take it.
fn propagate(
    layers: &[Layer],
    padded: &BTreeSet<usize>,
    multiple: usize,
    channels: &HashMap<String, Option<usize>>,
) -> (Layouts, BTreeSet<usize>) {
    let mut layouts: Layouts = HashMap::new();
    let mut refused = BTreeSet::new();
    let mut consumed = BTreeSet::new();
    for (index, l) in layers.iter().enumerate() {
        consumed.extend(l.inputs.iter().cloned());
        let inputs: Vec<Option<&(Layout, BTreeSet<usize>)>> =
            l.inputs.iter().map(|b| layouts.get(b)).collect();
        let any_padded = inputs.iter().any(Option::is_some);
        let origins = || -> BTreeSet<usize> {
            inputs
                .iter()
                .flatten()
                .flat_map(|(_, o)| o.iter().copied())
                .collect()
        };
        let out: Option<(Layout, BTreeSet<usize>)> = match l.kind.as_str() {
            // Convs take any input layout (their weights are placed to fit).
            "Convolution" | "Deconvolution" => padded.contains(&index).then(|| {
                let c = l.int(0, 0) as usize;
                let layout = Layout::prefix(c, c.div_ceil(multiple) * multiple);
                (layout, BTreeSet::from([index]))
            }),
            _ if !any_padded => None,
            "Concat" if is_channel_axis(l.int(0, 0)) => {
                let mut positions = Vec::new();
                let mut total = 0;
                let mut known = true;
                for (b, lay) in l.inputs.iter().zip(&inputs) {
                    match (lay, channels.get(b).copied().flatten()) {
                        (Some((lay, _)), _) => {
                            positions.extend(lay.positions.iter().map(|p| p + total));
                            total += lay.total;
                        }
                        (None, Some(c)) => {
                            positions.extend(total..total + c);
                            total += c;
                        }
                        (None, None) => known = false,
                    }
                }
                if known {
                    Some((Layout { total, positions }, origins()))
                } else {
                    refused.extend(origins());
                    None
                }
            }
            "BinaryOp" | "Eltwise" | "Scale" if !per_channel(l) => {
                // Element-wise between blobs: every input has the same
                // layout, or is one channel broadcast over all.
                let division = l.kind == "BinaryOp" && matches!(l.int(0, 0), 3 | 6 | 8);
                let first = inputs.iter().flatten().next().map(|(lay, _)| lay);
                let fits = l.inputs.iter().zip(&inputs).all(|(b, lay)| match lay {
                    Some((lay, _)) => Some(lay) == first,
                    None => channels.get(b).copied().flatten() == Some(1),
                });
                if fits && !division {
                    first.map(|lay| (lay.clone(), origins()))
                } else {
                    refused.extend(origins());
                    None
                }
            }
            _ if per_channel(l) => inputs[0].cloned(),
            _ => {
                refused.extend(origins());
                None
            }
        };
        if let Some(out) = out {
            for b in &l.outputs {
                layouts.insert(b.clone(), out.clone());
            }
        }
    }
    // The network's output keeps its channels.
    for l in layers {
        for b in &l.outputs {
            if !consumed.contains(b)
                && let Some((_, o)) = layouts.get(b)
            {
                refused.extend(o.iter().copied());
            }
        }
    }
    (layouts, refused)
}

/// Convolution weights stored `[out][in][kh][kw]`, padded to
/// `[out_total][in_layout.total][kh][kw]` with zeros: original input channel
/// `i` goes to `in_layout.positions[i]`.
pub fn pad_weights(
    weights: &[f32],
    out_c: usize,
    in_c: usize,
    plane: usize,
    out_total: usize,
    in_layout: Option<&Layout>,
) -> Vec<f32> {
    let identity;
    let in_layout = match in_layout {
        Some(l) => l,
        None => {
            identity = Layout::prefix(in_c, in_c);
            &identity
        }
    };
    debug_assert_eq!(in_layout.positions.len(), in_c);
    let in_total = in_layout.total;
    let mut out = vec![0.0; out_total * in_total * plane];
    for o in 0..out_c {
        for (i, &p) in in_layout.positions.iter().enumerate() {
            let src = (o * in_c + i) * plane;
            let dst = (o * in_total + p) * plane;
            out[dst..dst + plane].copy_from_slice(&weights[src..src + plane]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::ncnn::parse_param;

    fn param(body: &str) -> Vec<Layer> {
        let n = body.lines().filter(|l| !l.trim().is_empty()).count();
        parse_param(&format!("7767517\n{n} {n}\n{body}")).unwrap()
    }

    #[test]
    fn pads_only_what_is_worth_it() {
        assert!(worth_padding(52, 16));
        assert!(worth_padding(24, 16));
        assert!(!worth_padding(48, 16));
        assert!(!worth_padding(3, 16));
        assert!(!worth_padding(8, 16));
    }

    #[test]
    fn concat_moves_the_padded_channels() {
        let layers = param(
            "Input in 0 1 x
             Convolution a 1 1 x a 0=24 1=1 6=72
             Convolution b 1 1 x b 0=24 1=1 6=72
             Concat cat 2 1 a b c
             Convolution out 1 1 c y 0=3 1=1 6=144",
        );
        let plan = plan(&layers, 16);
        assert_eq!(plan.layout("a").unwrap().total, 32);
        let c = plan.layout("c").unwrap();
        assert_eq!(c.total, 64);
        assert_eq!(c.positions[23], 23);
        assert_eq!(c.positions[24], 32);
        assert_eq!(c.positions[47], 55);
        assert!(plan.layout("y").is_none(), "the output is never padded");
    }

    #[test]
    fn an_unsafe_consumer_turns_padding_off_upstream() {
        // b reaches a PixelShuffle through an Add with a: neither is padded;
        // d only reaches convs and is.
        let layers = param(
            "Input in 0 1 x
             Convolution a 1 1 x a 0=24 1=1 6=72
             Convolution b 1 1 x b 0=24 1=1 6=72
             BinaryOp add 2 1 a b s 0=0
             Split sp 1 2 s s1 s2
             PixelShuffle ps 1 1 s1 p 0=2
             Convolution d 1 1 s2 d 0=24 1=1 6=576
             Sigmoid sg 1 1 d e
             Convolution f 1 1 e f 0=3 1=1 6=72
             Convolution g 1 1 p g 0=3 1=1 6=18
             BinaryOp sum 2 1 f g y 0=0",
        );
        let plan = plan(&layers, 16);
        for blob in ["a", "b", "s", "s1", "p"] {
            assert!(plan.layout(blob).is_none(), "{blob} padded");
        }
        assert_eq!(plan.layout("e").unwrap().total, 32);
    }

    #[test]
    fn division_and_mismatched_layouts_are_refused() {
        let layers = param(
            "Input in 0 1 x
             Convolution a 1 1 x a 0=24 1=1 6=72
             BinaryOp div 1 1 a q 0=8 1=1 2=1.0
             Convolution b 1 1 q b 0=3 1=1 6=72
             Convolution c 1 1 x c 0=24 1=1 6=72
             Convolution d 1 1 x d 0=40 1=1 6=120
             Crop cr 1 1 d e -23309=1,0 -23310=1,24 -23311=1,0
             BinaryOp add 2 1 c e s 0=0
             Convolution f 1 1 s f 0=3 1=1 6=72
             BinaryOp y 2 1 b f y 0=0",
        );
        let plan = plan(&layers, 16);
        assert!(plan.is_empty(), "{plan:?}");
    }

    #[test]
    fn weights_land_at_their_positions() {
        // 2 outputs of 2 inputs, 1x1; input channel 1 moved to position 3.
        let layout = Layout {
            total: 4,
            positions: vec![0, 3],
        };
        let w = pad_weights(&[1.0, 2.0, 3.0, 4.0], 2, 2, 1, 3, Some(&layout));
        assert_eq!(w, [1., 0., 0., 2., 3., 0., 0., 4., 0., 0., 0., 0.]);
        assert_eq!(layout.spread(&[5.0, 6.0], 0.0), [5., 0., 0., 6.]);
    }
}
