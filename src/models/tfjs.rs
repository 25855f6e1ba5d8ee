//! TensorFlow.js "layers" models → ONNX. The npm package `nsfwjs` ships its
//! MobileNetV2 as two browserified JavaScript modules: one whose export is the
//! model JSON (a Keras functional model plus a weights manifest) written as a
//! minified object literal, and one whose export is the weights as a base64
//! string, uint8-quantised per tensor. This module reads both without running
//! any JavaScript and writes the network as ONNX.
//!
//! Keras is NHWC; the ONNX graph is NCHW throughout, so kernels are transposed
//! on the way (HWIO → OIHW), and a Flatten is only accepted after the spatial
//! size has become 1x1, where both layouts agree.

use std::collections::HashMap;

use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use serde_json::{Map, Value};

use super::onnx::{Attr, GraphBuilder};

pub const INPUT: &str = "input";
pub const OUTPUT: &str = "output";
/// The name of the extra output with a hidden layer's activations.
pub const EMBEDDING: &str = "embedding";

/// The value a browserified module assigns to `module.exports`, parsed from
/// the object-literal subset that minifiers emit (unquoted keys, `.5`,
/// `!0`/`!1` for true/false).
pub fn module_export(js: &str) -> Result<Value> {
    // The wrapper's own `module.exports=e()` comes first; the payload is the
    // assignment inside the bundled function `[function(e,a,n){a.exports=...`.
    let body = js
        .find("[function(")
        .context("not a browserified module: no bundled function")?;
    let start = js[body..]
        .find(".exports=")
        .map(|i| body + i + ".exports=".len())
        .context("the bundled function assigns no exports")?;
    let mut parser = Literal {
        text: js.as_bytes(),
        at: start,
    };
    parser.value()
}

struct Literal<'a> {
    text: &'a [u8],
    at: usize,
}

impl Literal<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn fail<T>(&self, what: &str) -> Result<T> {
        let end = (self.at + 24).min(self.text.len());
        bail!(
            "{what} at byte {} (near {:?})",
            self.at,
            String::from_utf8_lossy(&self.text[self.at.min(end)..end])
        )
    }

    fn eat(&mut self, byte: u8) -> Result<()> {
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            self.fail(&format!("expected '{}'", byte as char))
        }
    }

    fn value(&mut self) -> Result<Value> {
        match self.peek() {
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => Ok(Value::String(self.string()?)),
            Some(b'!') => {
                // `!0` is true and `!1` is false.
                let v = match self.text.get(self.at + 1) {
                    Some(b'0') => true,
                    Some(b'1') => false,
                    _ => return self.fail("unsupported expression"),
                };
                self.at += 2;
                Ok(Value::Bool(v))
            }
            Some(b'-' | b'.' | b'0'..=b'9') => self.number(),
            _ => match self.word().as_str() {
                "null" => Ok(Value::Null),
                "true" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                _ => self.fail("unsupported value"),
            },
        }
    }

    fn word(&mut self) -> String {
        let start = self.at;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$')
        {
            self.at += 1;
        }
        String::from_utf8_lossy(&self.text[start..self.at]).into_owned()
    }

    fn number(&mut self) -> Result<Value> {
        let start = self.at;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'))
        {
            self.at += 1;
        }
        let text = std::str::from_utf8(&self.text[start..self.at])?;
        // JavaScript allows `.5` and `-.5`; Rust's parser wants the zero.
        let fixed = text.replacen("-.", "-0.", 1);
        let fixed = if fixed.starts_with('.') {
            format!("0{fixed}")
        } else {
            fixed
        };
        if let Ok(i) = fixed.parse::<i64>() {
            return Ok(Value::from(i));
        }
        match fixed.parse::<f64>() {
            Ok(f) => Ok(Value::from(f)),
            Err(_) => self.fail("bad number"),
        }
    }

    fn string(&mut self) -> Result<String> {
        self.eat(b'"')?;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return self.fail("unterminated string"),
                Some(b'"') => break,
                Some(b'\\') => {
                    let escaped = self.text.get(self.at + 1).copied();
                    out.push(match escaped {
                        Some(b'n') => b'\n',
                        Some(b't') => b'\t',
                        Some(c @ (b'"' | b'\\' | b'/')) => c,
                        _ => return self.fail("unsupported escape"),
                    });
                    self.at += 2;
                }
                Some(b) => {
                    out.push(b);
                    self.at += 1;
                }
            }
        }
        self.at += 1;
        Ok(String::from_utf8(out)?)
    }

    fn object(&mut self) -> Result<Value> {
        self.eat(b'{')?;
        let mut map = Map::new();
        while self.peek() != Some(b'}') {
            let key = if self.peek() == Some(b'"') {
                self.string()?
            } else {
                self.word()
            };
            if key.is_empty() {
                return self.fail("expected a key");
            }
            self.eat(b':')?;
            map.insert(key, self.value()?);
            if self.peek() == Some(b',') {
                self.at += 1;
            }
        }
        self.at += 1;
        Ok(Value::Object(map))
    }

    fn array(&mut self) -> Result<Value> {
        self.eat(b'[')?;
        let mut items = Vec::new();
        while self.peek() != Some(b']') {
            items.push(self.value()?);
            if self.peek() == Some(b',') {
                self.at += 1;
            }
        }
        self.at += 1;
        Ok(Value::Array(items))
    }
}

/// The weights of a tfjs model: the shards' bytes concatenated, read in
/// manifest order, dequantised to f32 and looked up by name.
pub struct Weights {
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

impl Weights {
    /// `shards` are the base64 strings of the weight modules, in order.
    pub fn decode(manifest: &Value, shards: &[String]) -> Result<Self> {
        let mut bytes = Vec::new();
        for (i, shard) in shards.iter().enumerate() {
            bytes.extend(
                base64::engine::general_purpose::STANDARD
                    .decode(shard.trim())
                    .with_context(|| format!("weight shard {} is not base64", i + 1))?,
            );
        }
        let groups = manifest
            .as_array()
            .context("weightsManifest is not a list")?;
        let mut tensors = HashMap::new();
        let mut at = 0usize;
        for spec in groups
            .iter()
            .flat_map(|g| g["weights"].as_array().into_iter().flatten())
        {
            let name = spec["name"].as_str().context("a weight has no name")?;
            let shape: Vec<usize> = spec["shape"]
                .as_array()
                .with_context(|| format!("weight {name} has no shape"))?
                .iter()
                .map(|d| d.as_u64().map(|d| d as usize))
                .collect::<Option<_>>()
                .with_context(|| format!("weight {name} has a bad shape"))?;
            let count: usize = shape.iter().product();
            let q = &spec["quantization"];
            let values: Vec<f32> = match q["dtype"].as_str() {
                Some("uint8") => {
                    let (min, scale) = (
                        q["min"].as_f64().context("quantisation without min")?,
                        q["scale"].as_f64().context("quantisation without scale")?,
                    );
                    let raw = bytes
                        .get(at..at + count)
                        .with_context(|| format!("weights end before {name}"))?;
                    at += count;
                    raw.iter()
                        .map(|&b| (min + scale * b as f64) as f32)
                        .collect()
                }
                None if spec["dtype"] == "float32" => {
                    let raw = bytes
                        .get(at..at + 4 * count)
                        .with_context(|| format!("weights end before {name}"))?;
                    at += 4 * count;
                    raw.chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect()
                }
                other => bail!("weight {name}: unsupported storage {other:?}"),
            };
            tensors.insert(name.to_string(), (shape, values));
        }
        ensure!(
            at == bytes.len(),
            "{} bytes of weights were left over: the shards do not match the manifest",
            bytes.len() - at
        );
        Ok(Self { tensors })
    }

    fn get(&self, layer: &str, param: &str) -> Result<&(Vec<usize>, Vec<f32>)> {
        let name = format!("{layer}/{param}");
        self.tensors
            .get(&name)
            .with_context(|| format!("weight {name} is missing"))
    }
}

/// Converts a Keras functional model (the `modelTopology` of a tfjs model
/// JSON) with its weights to serialised ONNX. The graph's input is NCHW RGB
/// at the model's fixed size; the output is the last layer as `[1, C, 1, 1]`,
/// followed by one more output, [`EMBEDDING`], for each layer named in
/// `also_output` (a hidden layer whose activations another model reads).
pub fn keras_to_onnx(
    topology: &Value,
    weights: &Weights,
    name: &str,
    also_output: &[&str],
) -> Result<Vec<u8>> {
    let config = &topology["model_config"]["config"];
    let layers = config["layers"]
        .as_array()
        .context("modelTopology has no model_config.config.layers")?;
    let mut importer = Keras {
        g: GraphBuilder::default(),
        values: HashMap::new(),
        spatial: HashMap::new(),
        weights,
    };
    for layer in layers {
        let lname = layer["name"].as_str().unwrap_or("?");
        let class = layer["class_name"].as_str().unwrap_or("?");
        importer
            .layer(layer)
            .with_context(|| format!("importing Keras layer {lname} ({class})"))?;
    }
    let out = config["output_layers"][0][0]
        .as_str()
        .context("the model names no output layer")?;
    let last = importer.value(out)?;
    let shape = importer.g.constant_i64("shape", &[1, -1, 1, 1]);
    importer
        .g
        .node("Reshape", &[&last, &shape], &[OUTPUT], Vec::new());
    importer.g.output(OUTPUT);
    for (i, layer) in also_output.iter().enumerate() {
        let value = importer.value(layer)?;
        let output = if i == 0 {
            EMBEDDING.to_string()
        } else {
            format!("{EMBEDDING}{i}")
        };
        importer
            .g
            .node("Reshape", &[&value, &shape], &[&output], Vec::new());
        importer.g.output(&output);
    }
    Ok(importer
        .g
        .finish(name, &format!("imported from the tfjs Keras model {name}")))
}

struct Keras<'a> {
    g: GraphBuilder,
    /// Keras layer name → ONNX value name.
    values: HashMap<String, String>,
    /// Keras layer name → its output's spatial size (height, width).
    spatial: HashMap<String, (i64, i64)>,
    weights: &'a Weights,
}

/// `[a, b]` as integers.
fn two(v: &Value) -> Option<[i64; 2]> {
    match v.as_array().map(|a| a.as_slice()) {
        Some([a, b]) => Some([a.as_i64()?, b.as_i64()?]),
        _ => None,
    }
}

fn pair(config: &Value, key: &str) -> Result<[i64; 2]> {
    two(&config[key]).with_context(|| format!("'{key}' is not a pair of integers"))
}

impl Keras<'_> {
    fn value(&self, layer: &str) -> Result<String> {
        self.values
            .get(layer)
            .cloned()
            .with_context(|| format!("layer {layer} is used before it is defined"))
    }

    /// The layer's inbound layer names.
    fn inputs(layer: &Value) -> Result<Vec<String>> {
        let nodes = layer["inbound_nodes"]
            .as_array()
            .context("no inbound_nodes")?;
        ensure!(nodes.len() == 1, "shared layers are not supported");
        nodes[0]
            .as_array()
            .context("bad inbound node")?
            .iter()
            .map(|n| {
                n[0].as_str()
                    .map(str::to_string)
                    .context("bad inbound node")
            })
            .collect()
    }

    fn layer(&mut self, layer: &Value) -> Result<()> {
        let name = layer["name"].as_str().context("a layer has no name")?;
        let class = layer["class_name"]
            .as_str()
            .context("a layer has no class")?;
        let c = &layer["config"];
        if class == "InputLayer" {
            let shape = c["batch_input_shape"]
                .as_array()
                .context("no input shape")?;
            let dims: Vec<i64> = shape[1..].iter().filter_map(Value::as_i64).collect();
            let [h, w, channels] = dims[..] else {
                bail!("input shape {shape:?} is not [None, H, W, C]");
            };
            self.g.input(INPUT, channels);
            self.values.insert(name.to_string(), INPUT.to_string());
            self.spatial.insert(name.to_string(), (h, w));
            return Ok(());
        }
        let inputs = Self::inputs(layer)?;
        let x = self.value(&inputs[0])?;
        let (h, w) = self.spatial.get(&inputs[0]).copied().unwrap_or((1, 1));
        let y = self.g.fresh(name);
        let mut size = (h, w);
        match class {
            "ZeroPadding2D" => {
                // [[top, bottom], [left, right]]
                let p = &c["padding"];
                let ([top, bottom], [left, right]) = two(&p[0])
                    .zip(two(&p[1]))
                    .context("padding is not [[top, bottom], [left, right]]")?;
                let pads = self
                    .g
                    .constant_i64("pads", &[0, 0, top, left, 0, 0, bottom, right]);
                self.g.node("Pad", &[&x, &pads], &[&y], Vec::new());
                size = (h + top + bottom, w + left + right);
            }
            "Conv2D" | "DepthwiseConv2D" => size = self.conv(name, class, c, &x, &y, (h, w))?,
            "BatchNormalization" => {
                let channels = self.weights.get(name, "moving_mean")?.0[0];
                let ones = vec![1.0; channels];
                let zeros = vec![0.0; channels];
                let param = |p: &str, default: &[f32]| -> Result<Vec<f32>> {
                    match self.weights.get(name, p) {
                        Ok((_, v)) => Ok(v.clone()),
                        Err(_)
                            if !c[if p == "gamma" { "scale" } else { "center" }]
                                .as_bool()
                                .unwrap_or(true) =>
                        {
                            Ok(default.to_vec())
                        }
                        Err(e) => Err(e),
                    }
                };
                let (gamma, beta) = (param("gamma", &ones)?, param("beta", &zeros)?);
                let mean = &self.weights.get(name, "moving_mean")?.1;
                let var = &self.weights.get(name, "moving_variance")?.1;
                let n = [channels as i64];
                let names = [
                    self.g.constant("gamma", &n, &gamma),
                    self.g.constant("beta", &n, &beta),
                    self.g.constant("mean", &n, mean),
                    self.g.constant("var", &n, var),
                ];
                let eps = c["epsilon"].as_f64().unwrap_or(1e-3) as f32;
                self.g.node(
                    "BatchNormalization",
                    &[&x, &names[0], &names[1], &names[2], &names[3]],
                    &[&y],
                    vec![("epsilon", Attr::Float(eps))],
                );
            }
            "ReLU" => {
                ensure!(
                    c["negative_slope"].as_f64().unwrap_or(0.0) == 0.0
                        && c["threshold"].as_f64().unwrap_or(0.0) == 0.0,
                    "only plain and capped ReLU are supported"
                );
                self.relu(&x, &y, c["max_value"].as_f64());
            }
            "Activation" => self.activation(c["activation"].as_str().unwrap_or(""), &x, &y)?,
            "Add" => {
                let others = inputs[1..]
                    .iter()
                    .map(|i| self.value(i))
                    .collect::<Result<Vec<_>>>()?;
                let mut acc = x.clone();
                for (i, other) in others.iter().enumerate() {
                    let out = if i + 1 == others.len() {
                        y.clone()
                    } else {
                        self.g.fresh(name)
                    };
                    self.g.node("Add", &[&acc, other], &[&out], Vec::new());
                    acc = out;
                }
            }
            "AveragePooling2D" | "MaxPooling2D" => {
                ensure!(c["padding"] == "valid", "only 'valid' pooling is supported");
                let k = pair(c, "pool_size")?;
                let s = pair(c, "strides").unwrap_or(k);
                let op = if class == "MaxPooling2D" {
                    "MaxPool"
                } else {
                    "AveragePool"
                };
                self.g.node(
                    op,
                    &[&x],
                    &[&y],
                    vec![
                        ("kernel_shape", Attr::Ints(k.to_vec())),
                        ("strides", Attr::Ints(s.to_vec())),
                    ],
                );
                size = ((h - k[0]) / s[0] + 1, (w - k[1]) / s[1] + 1);
            }
            "GlobalAveragePooling2D" => {
                self.g.node("GlobalAveragePool", &[&x], &[&y], Vec::new());
                size = (1, 1);
            }
            "Flatten" => {
                // NHWC and NCHW flatten alike only when nothing spatial is left.
                ensure!(
                    (h, w) == (1, 1),
                    "Flatten of a {h}x{w} map is not supported"
                );
                self.g.node("Identity", &[&x], &[&y], Vec::new());
            }
            "Dropout" => self.g.node("Identity", &[&x], &[&y], Vec::new()),
            "Dense" => {
                // A 1x1 convolution is a dense layer on [1, C, 1, 1].
                let (shape, kernel) = self.weights.get(name, "kernel")?;
                let [inputs_n, units] = shape[..] else {
                    bail!("Dense kernel has shape {shape:?}");
                };
                let mut oihw = vec![0f32; kernel.len()];
                for i in 0..inputs_n {
                    for o in 0..units {
                        oihw[o * inputs_n + i] = kernel[i * units + o];
                    }
                }
                let wname = self.g.constant(
                    &format!("{name}_kernel"),
                    &[units as i64, inputs_n as i64, 1, 1],
                    &oihw,
                );
                let mut conv_in = vec![x.clone(), wname];
                if c["use_bias"].as_bool().unwrap_or(true) {
                    let bias = &self.weights.get(name, "bias")?.1;
                    conv_in.push(
                        self.g
                            .constant(&format!("{name}_bias"), &[units as i64], bias),
                    );
                }
                let refs: Vec<&str> = conv_in.iter().map(String::as_str).collect();
                let z = self.g.fresh(name);
                self.g.node("Conv", &refs, &[&z], Vec::new());
                self.activation(c["activation"].as_str().unwrap_or("linear"), &z, &y)?;
            }
            other => bail!(
                "layer class {other} is not supported (supported: InputLayer, ZeroPadding2D, Conv2D, \
                 DepthwiseConv2D, BatchNormalization, ReLU, Activation, Add, AveragePooling2D, \
                 MaxPooling2D, GlobalAveragePooling2D, Flatten, Dropout, Dense)"
            ),
        }
        self.values.insert(name.to_string(), y);
        self.spatial.insert(name.to_string(), size);
        Ok(())
    }

    fn relu(&mut self, x: &str, y: &str, cap: Option<f64>) {
        match cap {
            Some(cap) => {
                let lo = self.g.constant("relu_min", &[], &[0.0]);
                let hi = self.g.constant("relu_max", &[], &[cap as f32]);
                self.g.node("Clip", &[x, &lo, &hi], &[y], Vec::new());
            }
            None => self.g.node("Relu", &[x], &[y], Vec::new()),
        }
    }

    fn activation(&mut self, kind: &str, x: &str, y: &str) -> Result<()> {
        match kind {
            "linear" => self.g.node("Identity", &[x], &[y], Vec::new()),
            "relu" => self.relu(x, y, None),
            "relu6" => self.relu(x, y, Some(6.0)),
            "sigmoid" => self.g.node("Sigmoid", &[x], &[y], Vec::new()),
            "softmax" => self
                .g
                .node("Softmax", &[x], &[y], vec![("axis", Attr::Int(1))]),
            other => bail!("activation '{other}' is not supported"),
        }
        Ok(())
    }

    /// Conv2D and DepthwiseConv2D; returns the output's spatial size.
    fn conv(
        &mut self,
        name: &str,
        class: &str,
        c: &Value,
        x: &str,
        y: &str,
        (h, w): (i64, i64),
    ) -> Result<(i64, i64)> {
        let depthwise = class == "DepthwiseConv2D";
        let param = if depthwise {
            "depthwise_kernel"
        } else {
            "kernel"
        };
        let (shape, kernel) = self.weights.get(name, param)?;
        let [kh, kw, cin, cout] = shape[..] else {
            bail!("{param} has shape {shape:?}");
        };
        let [sh, sw] = pair(c, "strides")?;
        ensure!(
            pair(c, "dilation_rate")? == [1, 1],
            "dilated convolutions are not supported"
        );
        // Keras stores [kh][kw][in][out] (depthwise: [kh][kw][channel][multiplier]).
        let (out_c, in_per_group, group) = if depthwise {
            (cin * cout, 1, cin as i64)
        } else {
            (cout, cin, 1)
        };
        let mut oihw = vec![0f32; kernel.len()];
        for ky in 0..kh {
            for kx in 0..kw {
                for i in 0..cin {
                    for o in 0..cout {
                        let src = ((ky * kw + kx) * cin + i) * cout + o;
                        let (oc, ic) = if depthwise { (i * cout + o, 0) } else { (o, i) };
                        oihw[((oc * in_per_group + ic) * kh + ky) * kw + kx] = kernel[src];
                    }
                }
            }
        }
        let dims = [out_c as i64, in_per_group as i64, kh as i64, kw as i64];
        let mut conv_in = vec![
            x.to_string(),
            self.g.constant(&format!("{name}_w"), &dims, &oihw),
        ];
        if c["use_bias"].as_bool().unwrap_or(true) {
            let bias = &self.weights.get(name, "bias")?.1;
            conv_in.push(self.g.constant(&format!("{name}_b"), &[out_c as i64], bias));
        }
        let (kh, kw) = (kh as i64, kw as i64);
        let (pads, size) = match c["padding"].as_str() {
            Some("valid") => ([0, 0, 0, 0], ((h - kh) / sh + 1, (w - kw) / sw + 1)),
            // TensorFlow's 'same' puts the odd pixel of padding at the end.
            Some("same") => {
                let (oh, ow) = ((h + sh - 1) / sh, (w + sw - 1) / sw);
                let ph = ((oh - 1) * sh + kh - h).max(0);
                let pw = ((ow - 1) * sw + kw - w).max(0);
                ([ph / 2, pw / 2, ph - ph / 2, pw - pw / 2], (oh, ow))
            }
            other => bail!("padding {other:?} is not supported"),
        };
        let refs: Vec<&str> = conv_in.iter().map(String::as_str).collect();
        let z = self.g.fresh(name);
        self.g.node(
            "Conv",
            &refs,
            &[&z],
            vec![
                ("kernel_shape", Attr::Ints(vec![kh, kw])),
                ("strides", Attr::Ints(vec![sh, sw])),
                ("pads", Attr::Ints(pads.to_vec())),
                ("group", Attr::Int(group)),
            ],
        );
        self.activation(c["activation"].as_str().unwrap_or("linear"), &z, y)?;
        Ok(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minified_literals_parse() {
        let js = r#"!function(e){module.exports=e()}(function(){return function e(){}({1:[function(e,a,n){a.exports={k:[.5,-.25,1e-3,3],"q":"a\"b",t:!0,f:!1,n:null}},{}]},{},[1])(1)});"#;
        let v = module_export(js).unwrap();
        assert_eq!(v["k"][0], 0.5);
        assert_eq!(v["k"][1], -0.25);
        assert_eq!(v["k"][2], 0.001);
        assert_eq!(v["k"][3], 3);
        assert_eq!(v["q"], "a\"b");
        assert_eq!(v["t"], true);
        assert_eq!(v["f"], false);
        assert!(v["n"].is_null());
        assert!(module_export("var x = 1;").is_err());
    }

    #[test]
    fn quantised_weights_dequantise_and_must_fill_the_shards() {
        let manifest = serde_json::json!([{"weights": [
            {"name": "d/kernel", "shape": [2, 1], "dtype": "float32",
             "quantization": {"min": -1.0, "scale": 0.5, "dtype": "uint8"}},
            {"name": "d/bias", "shape": [1], "dtype": "float32"}
        ]}]);
        let mut bytes = vec![0u8, 4];
        bytes.extend(2.5f32.to_le_bytes());
        let shard = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let w = Weights::decode(&manifest, &[shard]).unwrap();
        assert_eq!(w.get("d", "kernel").unwrap().1, vec![-1.0, 1.0]);
        assert_eq!(w.get("d", "bias").unwrap().1, vec![2.5]);
        bytes.push(7);
        let longer = base64::engine::general_purpose::STANDARD.encode(&bytes);
        assert!(Weights::decode(&manifest, &[longer]).is_err());
    }
}
