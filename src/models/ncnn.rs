//! Reading ncnn models: the `.param` text (layers and their keys) and the
//! `.bin` weights, which carry no structure of their own and are read in layer
//! order as the importer asks for them.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail, ensure};

/// One value of a layer key: `k=v` holds a scalar, `-233NN=n,v1,..,vn` an array.
#[derive(Clone, Debug, PartialEq)]
pub enum ParamValue {
    Int(i32),
    Float(f32),
    Array(Vec<f32>),
}

#[derive(Clone, Debug)]
pub struct Layer {
    pub kind: String,
    pub name: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub params: BTreeMap<i32, ParamValue>,
    /// 1-based line in the `.param` file, for error messages.
    pub line: usize,
}

impl Layer {
    pub fn int(&self, key: i32, default: i32) -> i32 {
        match self.params.get(&key) {
            Some(ParamValue::Int(v)) => *v,
            Some(ParamValue::Float(v)) => *v as i32,
            _ => default,
        }
    }

    pub fn float(&self, key: i32, default: f32) -> f32 {
        match self.params.get(&key) {
            Some(ParamValue::Float(v)) => *v,
            Some(ParamValue::Int(v)) => *v as f32,
            _ => default,
        }
    }

    pub fn array(&self, key: i32) -> Option<&[f32]> {
        match self.params.get(&key) {
            Some(ParamValue::Array(v)) => Some(v),
            _ => None,
        }
    }

    /// `Type name (line N)`, how errors name a layer.
    pub fn describe(&self) -> String {
        format!("{} layer '{}' (line {})", self.kind, self.name, self.line)
    }
}

pub fn parse_param(text: &str) -> Result<Vec<Layer>> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, magic) = lines.next().context("empty .param file")?;
    ensure!(
        magic.trim() == "7767517",
        "not an ncnn .param file (first line is '{}', expected 7767517)",
        magic.trim()
    );
    let (_, counts) = lines
        .next()
        .context(".param file has no layer count line")?;
    let layer_count: usize = counts
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .context("bad layer count line in .param")?;
    let mut layers = Vec::with_capacity(layer_count);
    for (index, line) in lines {
        let line_no = index + 1;
        let mut fields = line.split_whitespace();
        let mut next = |what: &str| {
            fields
                .next()
                .with_context(|| format!("line {line_no}: missing {what}"))
        };
        let kind = next("layer type")?.to_string();
        let name = next("layer name")?.to_string();
        let n_in: usize = next("input count")?
            .parse()
            .with_context(|| format!("line {line_no}: bad input count"))?;
        let n_out: usize = next("output count")?
            .parse()
            .with_context(|| format!("line {line_no}: bad output count"))?;
        let mut blobs = Vec::with_capacity(n_in + n_out);
        for _ in 0..n_in + n_out {
            blobs.push(next("blob name")?.to_string());
        }
        let outputs = blobs.split_off(n_in);
        let mut params = BTreeMap::new();
        for pair in fields {
            let (key, value) = pair
                .split_once('=')
                .with_context(|| format!("line {line_no}: '{pair}' is not key=value"))?;
            let key: i32 = key
                .parse()
                .with_context(|| format!("line {line_no}: bad key '{key}'"))?;
            let (key, value) = if key <= -23300 {
                let mut items = value.split(',');
                let n: usize = items
                    .next()
                    .and_then(|n| n.parse().ok())
                    .with_context(|| format!("line {line_no}: bad array length in '{pair}'"))?;
                let values = items
                    .map(|v| v.parse::<f32>())
                    .collect::<Result<Vec<_>, _>>()
                    .with_context(|| format!("line {line_no}: bad array value in '{pair}'"))?;
                ensure!(
                    values.len() == n,
                    "line {line_no}: array '{pair}' declares {n} values"
                );
                (-key - 23300, ParamValue::Array(values))
            } else if value.contains(['.', 'e', 'E']) {
                let v = value
                    .parse()
                    .with_context(|| format!("line {line_no}: bad value in '{pair}'"))?;
                (key, ParamValue::Float(v))
            } else {
                let v = value
                    .parse()
                    .with_context(|| format!("line {line_no}: bad value in '{pair}'"))?;
                (key, ParamValue::Int(v))
            };
            params.insert(key, value);
        }
        layers.push(Layer {
            kind,
            name,
            inputs: blobs,
            outputs,
            params,
            line: line_no,
        });
    }
    ensure!(
        layers.len() == layer_count,
        ".param declares {layer_count} layers but has {}",
        layers.len()
    );
    Ok(layers)
}

/// Sequential reader over the `.bin` weights.
pub struct WeightReader<'a> {
    data: &'a [u8],
    pos: usize,
}

const TAG_FP16: u32 = 0x0130_6B47;
const TAG_FP32: u32 = 0;

impl<'a> WeightReader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    fn take(&mut self, bytes: usize, what: &str) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(bytes)
            .filter(|&e| e <= self.data.len());
        let Some(end) = end else {
            bail!(
                ".bin ends at byte {} while reading {what} ({bytes} bytes from {})",
                self.data.len(),
                self.pos
            );
        };
        let slice = &self.data[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    /// Raw fp32 values with no tag (biases, slopes, MemoryData, Scale).
    pub fn raw_f32(&mut self, count: usize, what: &str) -> Result<Vec<f32>> {
        let bytes = self.take(count * 4, what)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// Tagged weights (Convolution, Deconvolution, InnerProduct): a 4-byte tag
    /// says fp16 (padded to 4 bytes after) or fp32.
    pub fn tagged(&mut self, count: usize, what: &str) -> Result<Vec<f32>> {
        let tag_bytes = self.take(4, what)?;
        let tag = u32::from_le_bytes([tag_bytes[0], tag_bytes[1], tag_bytes[2], tag_bytes[3]]);
        match tag {
            TAG_FP16 => {
                let bytes = self.take(count * 2, what)?;
                let values = bytes
                    .chunks_exact(2)
                    .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect();
                let padding = (4 - (count * 2) % 4) % 4;
                self.take(padding, what)?;
                Ok(values)
            }
            TAG_FP32 => self.raw_f32(count, what),
            other => bail!(
                "{what}: unsupported weight storage tag {other:#010x} (only fp16 and fp32 are supported)"
            ),
        }
    }

    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_layers_scalars_and_arrays() {
        let text = "7767517\n2 2\nInput in 0 1 data\nCrop c 1 1 data out -23309=2,4,4 -23310=2,-4,-4 0=3 2=2.5e-01\n";
        let layers = parse_param(text).unwrap();
        assert_eq!(layers.len(), 2);
        let crop = &layers[1];
        assert_eq!(crop.inputs, ["data"]);
        assert_eq!(crop.outputs, ["out"]);
        assert_eq!(crop.array(9), Some(&[4.0, 4.0][..]));
        assert_eq!(crop.array(10), Some(&[-4.0, -4.0][..]));
        assert_eq!(crop.int(0, 0), 3);
        assert_eq!(crop.float(2, 0.0), 0.25);
        assert_eq!(crop.line, 4);
    }

    #[test]
    fn rejects_wrong_magic_and_count() {
        assert!(parse_param("123\n1 1\nInput in 0 1 data\n").is_err());
        assert!(parse_param("7767517\n2 1\nInput in 0 1 data\n").is_err());
    }

    #[test]
    fn reads_fp16_with_padding_then_fp32() {
        let mut bin = Vec::new();
        bin.extend_from_slice(&TAG_FP16.to_le_bytes());
        for v in [1.0f32, -2.0, 0.5] {
            bin.extend_from_slice(&half::f16::from_f32(v).to_le_bytes());
        }
        bin.extend_from_slice(&[0, 0]); // pad 6 bytes to 8
        bin.extend_from_slice(&3.25f32.to_le_bytes());
        let mut r = WeightReader::new(&bin);
        assert_eq!(r.tagged(3, "w").unwrap(), [1.0, -2.0, 0.5]);
        assert_eq!(r.raw_f32(1, "b").unwrap(), [3.25]);
        assert_eq!(r.remaining(), 0);
        assert!(r.raw_f32(1, "past end").is_err());
    }
}
