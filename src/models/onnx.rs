//! The small part of the ONNX protobuf schema the importer writes, declared by
//! hand with prost (field numbers as in onnx.proto), plus a graph builder.

use prost::Message;

#[derive(Clone, PartialEq, Message)]
pub struct ModelProto {
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    #[prost(string, tag = "2")]
    pub producer_name: String,
    #[prost(string, tag = "3")]
    pub producer_version: String,
    #[prost(string, tag = "6")]
    pub doc_string: String,
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct OperatorSetIdProto {
    #[prost(string, tag = "1")]
    pub domain: String,
    #[prost(int64, tag = "2")]
    pub version: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(string, tag = "4")]
    pub op_type: String,
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct AttributeProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(float, tag = "2")]
    pub f: f32,
    #[prost(int64, tag = "3")]
    pub i: i64,
    #[prost(bytes = "vec", tag = "4")]
    pub s: Vec<u8>,
    #[prost(float, repeated, tag = "7")]
    pub floats: Vec<f32>,
    #[prost(int64, repeated, tag = "8")]
    pub ints: Vec<i64>,
    #[prost(int32, tag = "20")]
    pub r#type: i32,
}

#[derive(Clone, PartialEq, Message)]
pub struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    pub dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    #[prost(string, tag = "8")]
    pub name: String,
    #[prost(bytes = "vec", tag = "9")]
    pub raw_data: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ValueInfoProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TypeProto {
    #[prost(message, optional, tag = "1")]
    pub tensor_type: Option<TensorTypeProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TensorTypeProto {
    #[prost(int32, tag = "1")]
    pub elem_type: i32,
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TensorShapeProto {
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<Dimension>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Dimension {
    #[prost(int64, optional, tag = "1")]
    pub dim_value: Option<i64>,
    #[prost(string, optional, tag = "2")]
    pub dim_param: Option<String>,
}

const FLOAT: i32 = 1;
const INT64: i32 = 7;
const ATTR_FLOAT: i32 = 1;
const ATTR_INT: i32 = 2;
const ATTR_STRING: i32 = 3;
const ATTR_FLOATS: i32 = 6;
const ATTR_INTS: i32 = 7;

/// An attribute value for [`GraphBuilder::node`].
pub enum Attr {
    Int(i64),
    Float(f32),
    Ints(Vec<i64>),
    Floats(Vec<f32>),
    Str(&'static str),
}

fn attribute(name: &str, value: Attr) -> AttributeProto {
    let mut a = AttributeProto {
        name: name.to_string(),
        ..Default::default()
    };
    match value {
        Attr::Int(i) => (a.i, a.r#type) = (i, ATTR_INT),
        Attr::Float(f) => (a.f, a.r#type) = (f, ATTR_FLOAT),
        Attr::Ints(v) => (a.ints, a.r#type) = (v, ATTR_INTS),
        Attr::Floats(v) => (a.floats, a.r#type) = (v, ATTR_FLOATS),
        Attr::Str(s) => (a.s, a.r#type) = (s.as_bytes().to_vec(), ATTR_STRING),
    }
    a
}

/// Builds a graph with one float NCHW input of free height and width.
#[derive(Default)]
pub struct GraphBuilder {
    graph: GraphProto,
    counter: usize,
}

impl GraphBuilder {
    /// A fresh name for an intermediate value.
    pub fn fresh(&mut self, hint: &str) -> String {
        self.counter += 1;
        format!("{hint}__{}", self.counter)
    }

    pub fn node(&mut self, op: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<(&str, Attr)>) {
        let name = self.fresh(op);
        self.graph.node.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            name,
            op_type: op.to_string(),
            attribute: attrs.into_iter().map(|(n, v)| attribute(n, v)).collect(),
        });
    }

    /// Adds a float constant and returns its name.
    pub fn constant(&mut self, hint: &str, dims: &[i64], values: &[f32]) -> String {
        debug_assert_eq!(dims.iter().product::<i64>() as usize, values.len());
        let name = self.fresh(hint);
        self.graph.initializer.push(TensorProto {
            dims: dims.to_vec(),
            data_type: FLOAT,
            name: name.clone(),
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        });
        name
    }

    /// Adds an int64 constant (shapes, slice bounds) and returns its name.
    pub fn constant_i64(&mut self, hint: &str, values: &[i64]) -> String {
        let name = self.fresh(hint);
        self.graph.initializer.push(TensorProto {
            dims: vec![values.len() as i64],
            data_type: INT64,
            name: name.clone(),
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        });
        name
    }

    fn image_value(name: &str, channels: Option<i64>) -> ValueInfoProto {
        let dim = |v: Option<i64>, p: &str| Dimension {
            dim_value: v,
            dim_param: v.is_none().then(|| p.to_string()),
        };
        ValueInfoProto {
            name: name.to_string(),
            r#type: Some(TypeProto {
                tensor_type: Some(TensorTypeProto {
                    elem_type: FLOAT,
                    shape: Some(TensorShapeProto {
                        dim: vec![
                            dim(Some(1), "n"),
                            dim(channels, "c"),
                            dim(None, "h"),
                            dim(None, "w"),
                        ],
                    }),
                }),
            }),
        }
    }

    pub fn input(&mut self, name: &str, channels: i64) {
        self.graph
            .input
            .push(Self::image_value(name, Some(channels)));
    }

    pub fn output(&mut self, name: &str) {
        self.graph.output.push(Self::image_value(name, None));
    }

    /// Serialises the model (IR 8, opset 17: both well inside what ONNX
    /// Runtime 1.32 reads).
    pub fn finish(self, name: &str, doc: &str) -> Vec<u8> {
        let mut graph = self.graph;
        graph.name = name.to_string();
        ModelProto {
            ir_version: 8,
            producer_name: "upscaled".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            doc_string: doc.to_string(),
            graph: Some(graph),
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: 17,
            }],
        }
        .encode_to_vec()
    }
}
