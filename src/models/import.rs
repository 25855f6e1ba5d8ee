//! ncnn → ONNX: each ncnn layer becomes one or a few ONNX nodes, weights are
//! read from the `.bin` in layer order, and the whole `.bin` must be consumed.
//!
//! ncnn blobs are CHW without a batch; here every value is NCHW with N = 1, and
//! a 1-D ncnn blob of length C (global pooling, InnerProduct, MemoryData with
//! only `w`) is `[1, C, 1, 1]`, which gives ncnn's per-channel broadcasting.

use std::collections::HashMap;

use anyhow::{Context, Result, bail, ensure};

use super::channel_pad::{self, PadPlan};
use super::ncnn::{Layer, WeightReader, parse_param};
use super::onnx::{Attr, GraphBuilder};

pub const INPUT: &str = "input";
pub const OUTPUT: &str = "output";

/// What the upstream ncnn program does around the network that the graph must
/// do too, and how the graph is laid out for the runtime.
#[derive(Clone, Copy, Debug)]
pub struct ImportOptions {
    /// Add the input, cropped by `pad` and enlarged `scale`x by nearest
    /// neighbour, to the output (Real-CUGAN 4x predicts only that residual).
    pub nearest_residual: Option<(u32, u32)>,
    /// Pad internal channel counts with zero weights to a multiple of this
    /// (the same outputs; see `channel_pad`); 0 or 1 leaves them as they are.
    pub channel_multiple: usize,
    /// Write element-wise ops so that ONNX Runtime keeps the tensors in its
    /// blocked (NCHWc) layout between convolutions: a scalar constant of an
    /// image gets one value per channel, and a per-channel PReLU becomes
    /// `x + (1 - slope) * relu(-x)`. The same numbers (within 1e-6); without
    /// it each such op sits between two layout reorders (docs/benchmarks.md,
    /// "Blocked layout").
    pub blocked_layout: bool,
}

/// ONNX Runtime's blocked (NCHWc) convolutions take channels 16 at a time on
/// AVX-512 CPUs (DESIGN.md, "Channel counts matter").
pub const CHANNEL_MULTIPLE: usize = 16;

impl ImportOptions {
    /// Internal channel counts padded to [`CHANNEL_MULTIPLE`].
    pub fn padded(self) -> Self {
        ImportOptions {
            channel_multiple: CHANNEL_MULTIPLE,
            ..self
        }
    }

    /// The graph as the `.param` describes it, nothing changed for speed
    /// (what comparisons measure against).
    pub fn plain(self) -> Self {
        ImportOptions {
            channel_multiple: 1,
            blocked_layout: false,
            ..self
        }
    }
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            nearest_residual: None,
            // Off: padded SPAN ch52 measured no faster than unpadded
            // (docs/benchmarks.md, "Channel padding").
            channel_multiple: 1,
            blocked_layout: true,
        }
    }
}

/// Converts an ncnn model to serialised ONNX.
pub fn ncnn_to_onnx(param_text: &str, bin: &[u8], name: &str) -> Result<Vec<u8>> {
    ncnn_to_onnx_with(param_text, bin, name, ImportOptions::default())
}

pub fn ncnn_to_onnx_with(
    param_text: &str,
    bin: &[u8],
    name: &str,
    options: ImportOptions,
) -> Result<Vec<u8>> {
    let layers = parse_param(param_text)?;
    let mut importer = Importer {
        g: GraphBuilder::default(),
        blobs: HashMap::new(),
        consumed: HashMap::new(),
        weights: WeightReader::new(bin),
        plan: channel_pad::plan(&layers, options.channel_multiple),
        channels: if options.blocked_layout {
            channel_pad::channel_counts(&layers)
        } else {
            HashMap::new()
        },
        images: channel_pad::image_blobs(&layers),
    };
    for layer in &layers {
        importer
            .layer(layer)
            .with_context(|| format!("importing {}", layer.describe()))?;
    }
    ensure!(
        importer.weights.remaining() == 0,
        "{} bytes of the .bin were left over after the last layer: the weights do not match the .param",
        importer.weights.remaining()
    );
    // The output is the one blob that nothing consumes.
    let mut dangling: Vec<&String> = layers
        .iter()
        .flat_map(|l| l.outputs.iter())
        .filter(|b| !importer.consumed.contains_key(*b))
        .collect();
    dangling.dedup();
    let [out] = dangling[..] else {
        bail!("expected one output blob, found {dangling:?}");
    };
    let mut out_value = importer.blobs[out].clone();
    if let Some((pad, scale)) = options.nearest_residual {
        let g = &mut importer.g;
        let pad = pad as i64;
        let (starts, ends) = (
            g.constant_i64("starts", &[pad, pad]),
            g.constant_i64("ends", &[-pad, -pad]),
        );
        let axes = g.constant_i64("axes", &[2, 3]);
        let inner = g.fresh("inner");
        g.node(
            "Slice",
            &[INPUT, &starts, &ends, &axes],
            &[&inner],
            Vec::new(),
        );
        let scales = g.constant("scales", &[4], &[1.0, 1.0, scale as f32, scale as f32]);
        let enlarged = g.fresh("nearest");
        g.node(
            "Resize",
            &[&inner, "", &scales],
            &[&enlarged],
            vec![
                ("mode", Attr::Str("nearest")),
                ("coordinate_transformation_mode", Attr::Str("asymmetric")),
                ("nearest_mode", Attr::Str("floor")),
            ],
        );
        let sum = g.fresh("residual");
        g.node("Add", &[&out_value, &enlarged], &[&sum], Vec::new());
        out_value = sum;
    }
    importer
        .g
        .node("Identity", &[&out_value], &[OUTPUT], Vec::new());
    importer.g.output(OUTPUT);
    Ok(importer
        .g
        .finish(name, &format!("imported from ncnn model {name}")))
}

struct Importer<'a> {
    g: GraphBuilder,
    /// ncnn blob name → ONNX value name (Split makes several blobs share one).
    blobs: HashMap<String, String>,
    consumed: HashMap<String, ()>,
    weights: WeightReader<'a>,
    /// The tensors padded to more channels than the `.param` says.
    plan: PadPlan,
    /// Channel counts of the blobs (empty: keep constants as written).
    channels: HashMap<String, Option<usize>>,
    /// The blobs that are NCHW images.
    images: std::collections::HashSet<String>,
}

/// ncnn axis of a CHW blob (may be negative) → ONNX axis of NCHW.
fn onnx_axis(ncnn_axis: i64) -> i64 {
    if ncnn_axis < 0 {
        ncnn_axis + 4
    } else {
        ncnn_axis + 1
    }
}

impl Importer<'_> {
    /// The channels of image blob `blob` as imported (padded where the plan
    /// pads it), where known and the blocked layout is asked for.
    fn image_channels(&self, blob: &str) -> Option<usize> {
        if !self.images.contains(blob) {
            return None;
        }
        let original = self.channels.get(blob).copied().flatten()?;
        Some(self.plan.layout(blob).map_or(original, |l| l.total))
    }

    /// A scalar constant for an op on `blob`: one value per channel where
    /// the blob is an image of known channels (see `blocked_layout`).
    fn scalar_for(&mut self, blob: &str, hint: &str, value: f32) -> String {
        match self.image_channels(blob) {
            Some(c) => self.g.constant(hint, &[1, c as i64, 1, 1], &vec![value; c]),
            None => self.g.constant(hint, &[1], &[value]),
        }
    }

    fn input(&mut self, layer: &Layer, i: usize) -> Result<String> {
        let blob = layer
            .inputs
            .get(i)
            .with_context(|| format!("needs input {}", i + 1))?;
        self.consumed.insert(blob.clone(), ());
        self.blobs
            .get(blob)
            .cloned()
            .with_context(|| format!("input blob '{blob}' is not produced by any earlier layer"))
    }

    /// A new ONNX value for the layer's i-th output blob.
    fn output(&mut self, layer: &Layer, i: usize) -> Result<String> {
        let blob = layer
            .outputs
            .get(i)
            .with_context(|| format!("needs output {}", i + 1))?;
        let value = self.g.fresh(&layer.name);
        self.blobs.insert(blob.clone(), value.clone());
        Ok(value)
    }

    fn layer(&mut self, l: &Layer) -> Result<()> {
        match l.kind.as_str() {
            "Input" => {
                self.g.input(INPUT, 3);
                for blob in &l.outputs {
                    self.blobs.insert(blob.clone(), INPUT.to_string());
                }
            }
            "Split" => {
                let x = self.input(l, 0)?;
                for blob in &l.outputs {
                    self.blobs.insert(blob.clone(), x.clone());
                }
            }
            "MemoryData" => self.memory_data(l)?,
            "Convolution" | "ConvolutionDepthWise" => self.convolution(l)?,
            "Deconvolution" => self.deconvolution(l)?,
            "InnerProduct" => self.inner_product(l)?,
            "Pooling" => self.pooling(l)?,
            "BinaryOp" => self.binary_op(l)?,
            "Eltwise" => self.eltwise(l)?,
            "Concat" => {
                let inputs = (0..l.inputs.len())
                    .map(|i| self.input(l, i))
                    .collect::<Result<Vec<_>>>()?;
                let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
                let y = self.output(l, 0)?;
                let axis = onnx_axis(l.int(0, 0) as i64);
                self.g
                    .node("Concat", &refs, &[&y], vec![("axis", Attr::Int(axis))]);
            }
            "Crop" => self.crop(l)?,
            "Interp" => self.interp(l)?,
            "PReLU" => {
                let x = self.input(l, 0)?;
                let n = l.int(0, 0).max(1) as usize;
                let mut slopes = self.weights.raw_f32(n, "PReLU slopes")?;
                if let (true, Some(layout)) = (n > 1, self.plan.layout(&l.inputs[0])) {
                    slopes = layout.spread(&slopes, 0.0);
                }
                let n = slopes.len();
                if n == 1 {
                    // One slope is a leaky ReLU, which fuses into the conv.
                    let y = self.output(l, 0)?;
                    let alpha = vec![("alpha", Attr::Float(slopes[0]))];
                    self.g.node("LeakyRelu", &[&x], &[&y], alpha);
                } else if self.image_channels(&l.inputs[0]) == Some(n) {
                    // x + (1 - a) * relu(-x): Mul, Relu and Add stay in the
                    // blocked layout, PRelu does not.
                    let minus = self
                        .g
                        .constant(&l.name, &[1, n as i64, 1, 1], &vec![-1.0; n]);
                    let keep: Vec<f32> = slopes.iter().map(|a| 1.0 - a).collect();
                    let keep = self.g.constant(&l.name, &[1, n as i64, 1, 1], &keep);
                    let (negated, negative, scaled) = (
                        self.g.fresh(&l.name),
                        self.g.fresh(&l.name),
                        self.g.fresh(&l.name),
                    );
                    self.g.node("Mul", &[&x, &minus], &[&negated], Vec::new());
                    self.g.node("Relu", &[&negated], &[&negative], Vec::new());
                    self.g
                        .node("Mul", &[&negative, &keep], &[&scaled], Vec::new());
                    let y = self.output(l, 0)?;
                    self.g.node("Add", &[&x, &scaled], &[&y], Vec::new());
                } else {
                    let slope = self.g.constant(&l.name, &[n as i64, 1, 1], &slopes);
                    let y = self.output(l, 0)?;
                    self.g.node("PRelu", &[&x, &slope], &[&y], Vec::new());
                }
            }
            "ReLU" => {
                let x = self.input(l, 0)?;
                let y = self.output(l, 0)?;
                let slope = l.float(0, 0.0);
                if slope == 0.0 {
                    self.g.node("Relu", &[&x], &[&y], Vec::new());
                } else {
                    self.g.node(
                        "LeakyRelu",
                        &[&x],
                        &[&y],
                        vec![("alpha", Attr::Float(slope))],
                    );
                }
            }
            "Sigmoid" | "TanH" => {
                let op = if l.kind == "Sigmoid" {
                    "Sigmoid"
                } else {
                    "Tanh"
                };
                let x = self.input(l, 0)?;
                let y = self.output(l, 0)?;
                self.g.node(op, &[&x], &[&y], Vec::new());
            }
            "Swish" => {
                let x = self.input(l, 0)?;
                let s = self.g.fresh(&l.name);
                self.g.node("Sigmoid", &[&x], &[&s], Vec::new());
                let y = self.output(l, 0)?;
                self.g.node("Mul", &[&x, &s], &[&y], Vec::new());
            }
            "PixelShuffle" => {
                let x = self.input(l, 0)?;
                let y = self.output(l, 0)?;
                // ncnn mode 0 is PyTorch's pixel_shuffle, ONNX's CRD ordering.
                let mode = if l.int(1, 0) == 0 { "CRD" } else { "DCR" };
                self.g.node(
                    "DepthToSpace",
                    &[&x],
                    &[&y],
                    vec![
                        ("blocksize", Attr::Int(l.int(0, 1) as i64)),
                        ("mode", Attr::Str(mode)),
                    ],
                );
            }
            "Scale" => self.scale(l)?,
            other => bail!(
                "layer type '{other}' is not supported by the importer (supported: Input, Convolution, \
                 ConvolutionDepthWise, Deconvolution, InnerProduct, Pooling, BinaryOp, Eltwise, Split, \
                 Concat, Crop, Interp, PReLU, ReLU, PixelShuffle, Sigmoid, TanH, Swish, MemoryData, Scale)"
            ),
        }
        Ok(())
    }

    fn memory_data(&mut self, l: &Layer) -> Result<()> {
        let (w, h, c) = (l.int(0, 0) as i64, l.int(1, 0) as i64, l.int(2, 0) as i64);
        ensure!(l.int(11, 0) == 0, "4-D MemoryData is not supported");
        let dims = match (c, h) {
            (c, h) if c > 0 => vec![1, c, h.max(1), w.max(1)],
            (_, h) if h > 0 => vec![1, 1, h, w.max(1)],
            _ => vec![1, w.max(1), 1, 1],
        };
        let count = dims.iter().product::<i64>() as usize;
        let data = self.weights.raw_f32(count, "MemoryData values")?;
        let value = self.g.constant(&l.name, &dims, &data);
        let blob = &l.outputs[0];
        self.blobs.insert(blob.clone(), value);
        Ok(())
    }

    /// Adds the activation fused into Convolution/Deconvolution/InnerProduct.
    fn fused_activation(&mut self, l: &Layer, x: String) -> Result<String> {
        let params = l.array(10).unwrap_or(&[]);
        let (op, attrs): (&str, Vec<(&str, Attr)>) = match l.int(9, 0) {
            0 => return Ok(x),
            1 => ("Relu", vec![]),
            2 => (
                "LeakyRelu",
                vec![("alpha", Attr::Float(params.first().copied().unwrap_or(0.0)))],
            ),
            4 => ("Sigmoid", vec![]),
            3 => {
                let (lo, hi) = (params.first().copied(), params.get(1).copied());
                let lo = self.g.constant("clip_min", &[], &[lo.unwrap_or(f32::MIN)]);
                let hi = self.g.constant("clip_max", &[], &[hi.unwrap_or(f32::MAX)]);
                let y = self.g.fresh(&l.name);
                self.g.node("Clip", &[&x, &lo, &hi], &[&y], Vec::new());
                return Ok(y);
            }
            other => bail!("fused activation type {other} is not supported"),
        };
        let y = self.g.fresh(&l.name);
        self.g.node(op, &[&x], &[&y], attrs);
        Ok(y)
    }

    /// Routes the last value of a layer to its output blob.
    fn finish_into_output(&mut self, l: &Layer, value: String) {
        self.blobs.insert(l.outputs[0].clone(), value);
    }

    fn pads(l: &Layer) -> Result<[i64; 4]> {
        let left = l.int(4, 0) as i64;
        ensure!(
            left >= 0,
            "automatic ('same') padding {left} is not supported"
        );
        let top = l.int(14, left as i32) as i64;
        let right = l.int(15, left as i32) as i64;
        let bottom = l.int(16, top as i32) as i64;
        Ok([top, left, bottom, right])
    }

    fn conv_geometry(l: &Layer) -> ([i64; 2], [i64; 2], [i64; 2]) {
        let kw = l.int(1, 0) as i64;
        let kh = l.int(11, kw as i32) as i64;
        let dw = l.int(2, 1) as i64;
        let dh = l.int(12, dw as i32) as i64;
        let sw = l.int(3, 1) as i64;
        let sh = l.int(13, sw as i32) as i64;
        ([kh, kw], [dh, dw], [sh, sw])
    }

    /// `weight_data_size` checked against `out_c` kernels of `kh`x`kw`;
    /// returns it and the input channels per output it implies.
    fn kernel_weights(l: &Layer, out_c: i64, kh: i64, kw: i64) -> Result<(i64, i64)> {
        let size = l.int(6, 0) as i64;
        ensure!(
            out_c > 0 && kh > 0 && kw > 0 && size % (out_c * kh * kw) == 0,
            "weight_data_size {size} does not fit {out_c} outputs of {kh}x{kw}"
        );
        Ok((size, size / (out_c * kh * kw)))
    }

    /// The part Convolution and Deconvolution share: the optional bias, the
    /// node with its geometry, and the fused activation.
    /// `out_total` is `out_c` with the padded channels (their bias is zero).
    fn emit_conv(
        &mut self,
        l: &Layer,
        op: &str,
        (x, w): (String, String),
        (out_c, out_total): (i64, i64),
        extra: (&'static str, Attr),
    ) -> Result<()> {
        let ([kh, kw], dil, stride) = Self::conv_geometry(l);
        let mut inputs = vec![x, w];
        if l.int(5, 0) != 0 {
            let mut bias = self
                .weights
                .raw_f32(out_c as usize, &format!("{} bias", l.kind))?;
            bias.resize(out_total as usize, 0.0);
            inputs.push(self.g.constant(&l.name, &[out_total], &bias));
        }
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let y = self.g.fresh(&l.name);
        self.g.node(
            op,
            &refs,
            &[&y],
            vec![
                ("kernel_shape", Attr::Ints(vec![kh, kw])),
                ("dilations", Attr::Ints(dil.to_vec())),
                ("strides", Attr::Ints(stride.to_vec())),
                ("pads", Attr::Ints(Self::pads(l)?.to_vec())),
                extra,
            ],
        );
        let y = self.fused_activation(l, y)?;
        self.finish_into_output(l, y);
        Ok(())
    }

    fn convolution(&mut self, l: &Layer) -> Result<()> {
        let x = self.input(l, 0)?;
        let out_c = l.int(0, 0) as i64;
        let ([kh, kw], _, _) = Self::conv_geometry(l);
        let group = if l.kind == "ConvolutionDepthWise" {
            l.int(7, 1) as i64
        } else {
            1
        };
        ensure!(l.int(8, 0) == 0, "int8 quantised weights are not supported");
        let pad_value = l.float(18, 0.0);
        ensure!(pad_value == 0.0, "non-zero pad value is not supported");
        let (size, in_per_group) = Self::kernel_weights(l, out_c, kh, kw)?;
        let weights = self.weights.tagged(size as usize, "Convolution weights")?;
        let (weights, out_total, in_total) =
            self.padded_weights(l, weights, out_c, in_per_group)?;
        let w = self
            .g
            .constant(&l.name, &[out_total, in_total, kh, kw], &weights);
        self.emit_conv(
            l,
            "Conv",
            (x, w),
            (out_c, out_total),
            ("group", Attr::Int(group)),
        )
    }

    /// Weights stored `[out][in][kh][kw]`, padded as the plan says: zero
    /// filters for added output channels, zero weights for added input
    /// channels. Returns them with the padded output and input counts.
    fn padded_weights(
        &self,
        l: &Layer,
        weights: Vec<f32>,
        out_c: i64,
        in_c: i64,
    ) -> Result<(Vec<f32>, i64, i64)> {
        let in_layout = self.plan.layout(&l.inputs[0]);
        let out_total = self
            .plan
            .layout(&l.outputs[0])
            .map_or(out_c, |o| o.total as i64);
        if in_layout.is_none() && out_total == out_c {
            return Ok((weights, out_c, in_c));
        }
        if let Some(i) = in_layout {
            ensure!(
                i.positions.len() as i64 == in_c,
                "the channel padding plan gives input '{}' {} channels, the weights {in_c}",
                l.inputs[0],
                i.positions.len()
            );
        }
        let in_total = in_layout.map_or(in_c, |i| i.total as i64);
        let plane = weights.len() / (out_c * in_c) as usize;
        let padded = channel_pad::pad_weights(
            &weights,
            out_c as usize,
            in_c as usize,
            plane,
            out_total as usize,
            in_layout,
        );
        Ok((padded, out_total, in_total))
    }

    fn deconvolution(&mut self, l: &Layer) -> Result<()> {
        let x = self.input(l, 0)?;
        let out_c = l.int(0, 0) as i64;
        let ([kh, kw], _, _) = Self::conv_geometry(l);
        ensure!(
            l.int(20, 0) == 0 && l.int(21, 0) == 0,
            "fixed output size is not supported"
        );
        let (size, in_c) = Self::kernel_weights(l, out_c, kh, kw)?;
        let stored = self
            .weights
            .tagged(size as usize, "Deconvolution weights")?;
        let (stored, out_total, in_c) = self.padded_weights(l, stored, out_c, in_c)?;
        let (out_c, unpadded_out_c) = (out_total, out_c);
        // ncnn stores [out][in][kh][kw]; ONNX ConvTranspose wants [in][out][kh][kw].
        let plane = (kh * kw) as usize;
        let mut weights = vec![0.0f32; stored.len()];
        for o in 0..out_c as usize {
            for i in 0..in_c as usize {
                let src = (o * in_c as usize + i) * plane;
                let dst = (i * out_c as usize + o) * plane;
                weights[dst..dst + plane].copy_from_slice(&stored[src..src + plane]);
            }
        }
        let w = self.g.constant(&l.name, &[in_c, out_c, kh, kw], &weights);
        let output_padding = vec![l.int(19, 0) as i64, l.int(18, 0) as i64];
        self.emit_conv(
            l,
            "ConvTranspose",
            (x, w),
            (unpadded_out_c, out_c),
            ("output_padding", Attr::Ints(output_padding)),
        )
    }

    /// Flatten (ncnn's C,H,W order) → Gemm → back to `[1, N, 1, 1]`.
    fn inner_product(&mut self, l: &Layer) -> Result<()> {
        let x = self.input(l, 0)?;
        let n = l.int(0, 0) as i64;
        let size = l.int(2, 0) as i64;
        ensure!(
            n > 0 && size % n == 0,
            "weight_data_size {size} does not fit {n} outputs"
        );
        let weights = self.weights.tagged(size as usize, "InnerProduct weights")?;
        let w = self.g.constant(&l.name, &[n, size / n], &weights);
        let flat = self.g.fresh(&l.name);
        self.g
            .node("Flatten", &[&x], &[&flat], vec![("axis", Attr::Int(1))]);
        let mut inputs = vec![flat, w];
        if l.int(1, 0) != 0 {
            let bias = self.weights.raw_f32(n as usize, "InnerProduct bias")?;
            inputs.push(self.g.constant(&l.name, &[n], &bias));
        }
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let gemm = self.g.fresh(&l.name);
        self.g
            .node("Gemm", &refs, &[&gemm], vec![("transB", Attr::Int(1))]);
        let shape = self.g.constant_i64("shape", &[1, n, 1, 1]);
        let y = self.g.fresh(&l.name);
        self.g.node("Reshape", &[&gemm, &shape], &[&y], Vec::new());
        let y = self.fused_activation(l, y)?;
        self.finish_into_output(l, y);
        Ok(())
    }

    fn pooling(&mut self, l: &Layer) -> Result<()> {
        let x = self.input(l, 0)?;
        let y = self.output(l, 0)?;
        let max = match l.int(0, 0) {
            0 => true,
            1 => false,
            other => bail!("pooling type {other} is not supported"),
        };
        ensure!(l.int(7, 0) == 0, "adaptive pooling is not supported");
        if l.int(4, 0) != 0 {
            let op = if max {
                "GlobalMaxPool"
            } else {
                "GlobalAveragePool"
            };
            self.g.node(op, &[&x], &[&y], Vec::new());
            return Ok(());
        }
        let kw = l.int(1, 0) as i64;
        let kh = l.int(11, kw as i32) as i64;
        let sw = l.int(2, 1) as i64;
        let sh = l.int(12, sw as i32) as i64;
        let left = l.int(3, 0) as i64;
        let right = l.int(14, left as i32) as i64;
        let top = l.int(13, left as i32) as i64;
        let bottom = l.int(15, top as i32) as i64;
        let ceil_mode = match l.int(5, 0) {
            0 => 1, // ncnn "full padding" rounds the output size up
            1 => 0,
            other => bail!("pooling pad mode {other} is not supported"),
        };
        let mut attrs = vec![
            ("kernel_shape", Attr::Ints(vec![kh, kw])),
            ("strides", Attr::Ints(vec![sh, sw])),
            ("pads", Attr::Ints(vec![top, left, bottom, right])),
            ("ceil_mode", Attr::Int(ceil_mode)),
        ];
        if !max {
            attrs.push(("count_include_pad", Attr::Int(l.int(6, 0) as i64)));
        }
        let op = if max { "MaxPool" } else { "AveragePool" };
        self.g.node(op, &[&x], &[&y], attrs);
        Ok(())
    }

    fn binary_op(&mut self, l: &Layer) -> Result<()> {
        let a = self.input(l, 0)?;
        let b = if l.int(1, 0) != 0 {
            self.scalar_for(&l.inputs[0], "scalar", l.float(2, 0.0))
        } else {
            self.input(l, 1)?
        };
        let (op, swap) = match l.int(0, 0) {
            0 => ("Add", false),
            1 => ("Sub", false),
            2 => ("Mul", false),
            3 => ("Div", false),
            4 => ("Max", false),
            5 => ("Min", false),
            6 => ("Pow", false),
            7 => ("Sub", true),
            8 => ("Div", true),
            other => bail!("binary operation {other} is not supported"),
        };
        let y = self.output(l, 0)?;
        let (a, b) = if swap { (b, a) } else { (a, b) };
        self.g.node(op, &[&a, &b], &[&y], Vec::new());
        Ok(())
    }

    fn eltwise(&mut self, l: &Layer) -> Result<()> {
        let inputs = (0..l.inputs.len())
            .map(|i| self.input(l, i))
            .collect::<Result<Vec<_>>>()?;
        ensure!(inputs.len() >= 2, "Eltwise needs at least two inputs");
        let op = match l.int(0, 1) {
            0 => "Mul",
            1 => "Add",
            2 => "Max",
            other => bail!("eltwise operation {other} is not supported"),
        };
        let coeffs = l.array(1).filter(|c| !c.is_empty());
        let mut terms = Vec::with_capacity(inputs.len());
        for (i, x) in inputs.into_iter().enumerate() {
            match coeffs {
                Some(c) if op == "Add" && c.get(i).copied().unwrap_or(1.0) != 1.0 => {
                    let k = self.scalar_for(&l.inputs[i], "coeff", c[i]);
                    let scaled = self.g.fresh(&l.name);
                    self.g.node("Mul", &[&x, &k], &[&scaled], Vec::new());
                    terms.push(scaled);
                }
                _ => terms.push(x),
            }
        }
        let mut acc = terms[0].clone();
        for term in &terms[1..] {
            let next = self.g.fresh(&l.name);
            self.g.node(op, &[&acc, term], &[&next], Vec::new());
            acc = next;
        }
        self.finish_into_output(l, acc);
        Ok(())
    }

    fn crop(&mut self, l: &Layer) -> Result<()> {
        let x = self.input(l, 0)?;
        if let (Some(starts), Some(ends)) = (l.array(9), l.array(10)) {
            let axes: Vec<i64> = match l.array(11) {
                Some(a) => a.iter().map(|&a| onnx_axis(a as i64)).collect(),
                None => (0..starts.len() as i64).map(onnx_axis).collect(),
            };
            let to_i64 = |v: &f32| {
                let v = *v as i64;
                if v == -233 { i64::MAX } else { v }
            };
            let starts = self
                .g
                .constant_i64("starts", &starts.iter().map(to_i64).collect::<Vec<_>>());
            let ends = self
                .g
                .constant_i64("ends", &ends.iter().map(to_i64).collect::<Vec<_>>());
            let axes = self.g.constant_i64("axes", &axes);
            let y = self.output(l, 0)?;
            self.g
                .node("Slice", &[&x, &starts, &ends, &axes], &[&y], Vec::new());
            return Ok(());
        }
        let (woff, hoff, coff) = (l.int(0, 0) as i64, l.int(1, 0) as i64, l.int(2, 0) as i64);
        let offsets = [coff, hoff, woff];
        let starts = self.g.constant_i64("starts", &offsets);
        let axes = self.g.constant_i64("axes", &[1, 2, 3]);
        let ends = if l.inputs.len() >= 2 {
            // Crop to the reference blob's size, at the offsets.
            let reference = self.input(l, 1)?;
            let shape = self.g.fresh("shape");
            self.g.node("Shape", &[&reference], &[&shape], Vec::new());
            let (from, to) = (
                self.g.constant_i64("from", &[1]),
                self.g.constant_i64("to", &[4]),
            );
            let chw = self.g.fresh("chw");
            self.g
                .node("Slice", &[&shape, &from, &to], &[&chw], Vec::new());
            let off = self.g.constant_i64("offsets", &offsets);
            let ends = self.g.fresh("ends");
            self.g.node("Add", &[&chw, &off], &[&ends], Vec::new());
            ends
        } else {
            let (outw, outh, outc) = (l.int(3, 0) as i64, l.int(4, 0) as i64, l.int(5, 0) as i64);
            let end = |off: i64, out: i64, off2: i64| {
                if out > 0 {
                    off + out
                } else if off2 > 0 {
                    -off2
                } else {
                    i64::MAX
                }
            };
            let ends = [
                end(coff, outc, l.int(8, 0) as i64),
                end(hoff, outh, l.int(7, 0) as i64),
                end(woff, outw, l.int(6, 0) as i64),
            ];
            self.g.constant_i64("ends", &ends)
        };
        let y = self.output(l, 0)?;
        self.g
            .node("Slice", &[&x, &starts, &ends, &axes], &[&y], Vec::new());
        Ok(())
    }

    fn interp(&mut self, l: &Layer) -> Result<()> {
        let x = self.input(l, 0)?;
        ensure!(
            l.int(3, 0) == 0 && l.int(4, 0) == 0,
            "fixed output size is not supported, only scale factors"
        );
        let (hs, ws) = (l.float(1, 1.0), l.float(2, 1.0));
        let align = l.int(6, 0) != 0;
        let mut attrs = match l.int(0, 0) {
            1 => vec![
                ("mode", Attr::Str("nearest")),
                ("coordinate_transformation_mode", Attr::Str("asymmetric")),
                ("nearest_mode", Attr::Str("floor")),
            ],
            2 => vec![("mode", Attr::Str("linear"))],
            3 => vec![
                ("mode", Attr::Str("cubic")),
                ("cubic_coeff_a", Attr::Float(-0.75)),
            ],
            other => bail!("interpolation type {other} is not supported"),
        };
        if l.int(0, 0) != 1 {
            let mode = if align { "align_corners" } else { "half_pixel" };
            attrs.push(("coordinate_transformation_mode", Attr::Str(mode)));
        }
        let scales = self.g.constant("scales", &[4], &[1.0, 1.0, hs, ws]);
        let y = self.output(l, 0)?;
        self.g.node("Resize", &[&x, "", &scales], &[&y], attrs);
        Ok(())
    }

    /// Per-channel values of a layer placed at its padded input's channels.
    fn spread(&self, l: &Layer, values: Vec<f32>) -> Vec<f32> {
        match self.plan.layout(&l.inputs[0]) {
            Some(layout) if values.len() > 1 => layout.spread(&values, 0.0),
            _ => values,
        }
    }

    fn scale(&mut self, l: &Layer) -> Result<()> {
        let x = self.input(l, 0)?;
        let size = l.int(0, 0);
        let bias_term = l.int(1, 0) != 0;
        let factor = if size == -233 {
            ensure!(
                !bias_term,
                "Scale with a blob factor and a bias is not supported"
            );
            self.input(l, 1)?
        } else {
            ensure!(size > 0, "scale_data_size {size} is not supported");
            let data = self.weights.raw_f32(size as usize, "Scale factors")?;
            let data = self.spread(l, data);
            self.g
                .constant(&l.name, &[1, data.len() as i64, 1, 1], &data)
        };
        let scaled = self.g.fresh(&l.name);
        self.g.node("Mul", &[&x, &factor], &[&scaled], Vec::new());
        let y = if bias_term {
            let bias = self.weights.raw_f32(size as usize, "Scale bias")?;
            let bias = self.spread(l, bias);
            let b = self
                .g
                .constant(&l.name, &[1, bias.len() as i64, 1, 1], &bias);
            let y = self.g.fresh(&l.name);
            self.g.node("Add", &[&scaled, &b], &[&y], Vec::new());
            y
        } else {
            scaled
        };
        self.finish_into_output(l, y);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_layer_is_named_in_the_error() {
        let param = "7767517\n2 2\nInput in 0 1 data\nFancyOp f 1 1 data out\n";
        let err = format!("{:#}", ncnn_to_onnx(param, &[], "t").unwrap_err());
        assert!(err.contains("FancyOp layer 'f' (line 4)"), "{err}");
        assert!(err.contains("not supported"), "{err}");
    }

    #[test]
    fn leftover_weights_are_an_error() {
        let param = "7767517\n2 2\nInput in 0 1 data\nReLU r 1 1 data out\n";
        let err = format!("{:#}", ncnn_to_onnx(param, &[0; 8], "t").unwrap_err());
        assert!(err.contains("left over"), "{err}");
    }

    /// A small net with every kind of layer the padding has to get right:
    /// 24 channels (padded to 32) through Swish, a fused LeakyReLU, SPAN's
    /// sigmoid gate, a residual Add, PReLU and Scale with per-channel data, a
    /// Deconvolution, a Concat (the padded channels move) and a PixelShuffle
    /// (its conv is not padded). Weights fp32, deterministic.
    fn synthetic_net() -> (String, Vec<u8>) {
        let param = "7767517
17 22
Input in 0 1 x
Convolution c1 1 1 x a 0=24 1=3 4=1 5=1 6=648
Split sp 1 3 a a1 a2 a3
Swish sw 1 1 a1 b
Convolution c2 1 1 b c 0=24 1=3 4=1 5=1 6=5184 9=2 -23310=1,1.000000e-01
Split sp2 1 2 c c1 c2
Sigmoid sg 1 1 c1 d
BinaryOp sub 1 1 d e 0=1 1=1 2=5.000000e-01
BinaryOp add 2 1 c2 a2 f 0=0
BinaryOp mul 2 1 f e g 0=2
PReLU pr 1 1 g h 0=24
Scale sc 1 1 h i 0=24 1=1
Deconvolution dc 1 1 i j 0=24 1=2 3=2 5=1 6=2304
Interp up 1 1 a3 k 0=1 1=2.000000e+00 2=2.000000e+00
Concat cat 2 1 j k l
Convolution c3 1 1 l m 0=12 1=1 5=1 6=576
PixelShuffle ps 1 1 m y 0=2
";
        let mut state = 12345u32;
        let mut values = |n: usize, scale: f32| -> Vec<u8> {
            (0..n)
                .flat_map(|_| {
                    state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    let v = ((state >> 8) as f32 / (1 << 24) as f32 - 0.5) * scale;
                    v.to_le_bytes()
                })
                .collect()
        };
        let mut bin = Vec::new();
        let tag = 0u32.to_le_bytes();
        for (weights, biases, scale) in [(648, 24, 0.6), (5184, 24, 0.2)] {
            bin.extend_from_slice(&tag);
            bin.extend(values(weights, scale));
            bin.extend(values(biases, 0.5));
        }
        bin.extend(values(24, 0.5)); // PReLU slopes
        bin.extend(values(48, 2.0)); // Scale factors, bias
        for (weights, biases, scale) in [(2304, 24, 0.3), (576, 12, 0.3)] {
            bin.extend_from_slice(&tag);
            bin.extend(values(weights, scale));
            bin.extend(values(biases, 0.5));
        }
        (param.to_string(), bin)
    }

    #[test]
    fn the_synthetic_net_is_padded_where_it_may_be() {
        let (param, _) = synthetic_net();
        let plan = channel_pad::plan(&parse_param(&param).unwrap(), CHANNEL_MULTIPLE);
        for blob in ["a", "a3", "c", "e", "g", "i", "j", "k"] {
            assert_eq!(plan.layout(blob).map(|l| l.total), Some(32), "{blob}");
        }
        assert_eq!(plan.layout("l").map(|l| l.total), Some(64));
        assert!(plan.layout("m").is_none() && plan.layout("y").is_none());
    }

    /// Padded and unpadded imports of the synthetic net give the same
    /// output in ONNX Runtime (needs the runtime: `upscaled models fetch`).
    #[test]
    fn padding_and_the_blocked_layout_keep_the_outputs() {
        use crate::models::{models_dir, runtime};
        let (param, bin) = synthetic_net();
        let plain_options = ImportOptions::default().plain();
        let import = |o| ncnn_to_onnx_with(&param, &bin, "synthetic", o).unwrap();
        let plain = import(plain_options);
        let variants = [
            ("padded", import(plain_options.padded())),
            ("blocked", import(ImportOptions::default())),
            (
                "blocked and padded",
                import(ImportOptions::default().padded()),
            ),
        ];
        let has = |onnx: &[u8], op: &[u8]| onnx.windows(op.len()).any(|w| w == op);
        assert!(variants[0].1.len() > plain.len(), "nothing was padded");
        assert!(
            has(&plain, b"PRelu") && !has(&variants[1].1, b"PRelu"),
            "PRelu not rewritten"
        );
        let models = models_dir();
        if std::env::var_os("ORT_DYLIB_PATH").is_none() && !runtime::library_path(&models).is_file()
        {
            eprintln!("SKIPPED: ONNX Runtime is not installed (run `upscaled models fetch`)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let shape = [1, 3, 9, 11];
        let input: Vec<f32> = (0..3 * 9 * 11)
            .map(|i| (i * 37 % 101) as f32 / 100.0)
            .collect();
        let run = |name: &str, onnx: &[u8]| {
            let path = dir.path().join(format!("{name}.onnx"));
            std::fs::write(&path, onnx).unwrap();
            let session = runtime::session(&models, &path, 1).unwrap();
            session.run(shape, &input).unwrap()
        };
        let (shape_b, b) = run("plain", &plain);
        assert_eq!(shape_b, [1, 3, 36, 44]);
        let scale = b.iter().map(|v| v.abs()).fold(0.0, f32::max);
        assert!(
            scale > 0.1,
            "the net's output is too small to tell: {scale}"
        );
        for (name, onnx) in &variants {
            let (shape_a, a) = run(name, onnx);
            assert_eq!(shape_a, shape_b, "{name}");
            let diff = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f32::max);
            assert!(
                diff <= 1e-5 * scale,
                "{name}: max abs difference {diff} (output up to {scale})"
            );
        }
    }

    #[test]
    fn short_weights_are_an_error() {
        let param =
            "7767517\n2 2\nInput in 0 1 data\nConvolution c 1 1 data out 0=3 1=3 5=1 6=81\n";
        let err = format!("{:#}", ncnn_to_onnx(param, &[0; 16], "t").unwrap_err());
        assert!(err.contains("Convolution layer 'c'"), "{err}");
    }
}
