//! A minimal, hand-written subset of the ONNX protobuf schema (`onnx/onnx.proto`, package `onnx`),
//! enough to write and read back the graphs shopmind exports.
//!
//! Field numbers and wire types follow the official schema exactly; fields we never use are left
//! out (a decoder skips them). The schema is proto2: singular numeric fields are `Option` so that an
//! explicit zero (e.g. `keepdims = 0`) is written and distinguishable from "absent", and repeated
//! numeric fields are packed only where the schema says `[packed = true]`. Singular string fields
//! are plain `String`s: an empty string means absent, which is how ONNX treats them.

use prost::Message;

/// ONNX IR version 8 (2021-07-30), the version of the graphs we export.
pub const IR_VERSION: i64 = 8;
/// The default ONNX operator set version our graphs import.
pub const OPSET_VERSION: i64 = 17;

/// `TensorProto.DataType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum DataType {
    Undefined = 0,
    Float = 1,
    Uint8 = 2,
    Int8 = 3,
    Uint16 = 4,
    Int16 = 5,
    Int32 = 6,
    Int64 = 7,
    String = 8,
    Bool = 9,
    Float16 = 10,
    Double = 11,
    Uint32 = 12,
    Uint64 = 13,
    Complex64 = 14,
    Complex128 = 15,
    Bfloat16 = 16,
}

/// `AttributeProto.AttributeType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum AttributeType {
    Undefined = 0,
    Float = 1,
    Int = 2,
    String = 3,
    Tensor = 4,
    Graph = 5,
    Floats = 6,
    Ints = 7,
    Strings = 8,
    Tensors = 9,
    Graphs = 10,
    SparseTensor = 11,
    SparseTensors = 12,
}

/// `ModelProto`: the top-level container of an ONNX file.
#[derive(Clone, PartialEq, Message)]
pub struct ModelProto {
    #[prost(int64, optional, tag = "1")]
    pub ir_version: Option<i64>,
    #[prost(string, tag = "2")]
    pub producer_name: String,
    #[prost(string, tag = "3")]
    pub producer_version: String,
    #[prost(string, tag = "4")]
    pub domain: String,
    #[prost(int64, optional, tag = "5")]
    pub model_version: Option<i64>,
    #[prost(string, tag = "6")]
    pub doc_string: String,
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
    #[prost(message, repeated, tag = "14")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

/// Only the metadata of a `ModelProto`: decoding skips the graph without copying it.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct ModelMetadataView {
    #[prost(message, repeated, tag = "14")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

/// `OperatorSetIdProto`: an imported operator set; an empty domain is the default ONNX domain.
#[derive(Clone, PartialEq, Message)]
pub struct OperatorSetIdProto {
    #[prost(string, tag = "1")]
    pub domain: String,
    #[prost(int64, optional, tag = "2")]
    pub version: Option<i64>,
}

/// `StringStringEntryProto`: one key/value pair of a map.
#[derive(Clone, PartialEq, Message)]
pub struct StringStringEntryProto {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `GraphProto`: nodes (topologically sorted), initializers, inputs and outputs.
#[derive(Clone, PartialEq, Message)]
pub struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    #[prost(string, tag = "10")]
    pub doc_string: String,
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "13")]
    pub value_info: Vec<ValueInfoProto>,
}

/// `NodeProto`: one operator call.
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
    #[prost(string, tag = "6")]
    pub doc_string: String,
    #[prost(string, tag = "7")]
    pub domain: String,
}

/// `AttributeProto`: a named attribute of a node; `type` says which value field is set.
#[derive(Clone, PartialEq, Message)]
pub struct AttributeProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(float, optional, tag = "2")]
    pub f: Option<f32>,
    #[prost(int64, optional, tag = "3")]
    pub i: Option<i64>,
    #[prost(bytes = "vec", optional, tag = "4")]
    pub s: Option<Vec<u8>>,
    #[prost(message, optional, tag = "5")]
    pub t: Option<TensorProto>,
    #[prost(message, optional, boxed, tag = "6")]
    pub g: Option<Box<GraphProto>>,
    #[prost(float, repeated, packed = "false", tag = "7")]
    pub floats: Vec<f32>,
    #[prost(int64, repeated, packed = "false", tag = "8")]
    pub ints: Vec<i64>,
    #[prost(bytes = "vec", repeated, tag = "9")]
    pub strings: Vec<Vec<u8>>,
    #[prost(string, tag = "13")]
    pub doc_string: String,
    #[prost(enumeration = "AttributeType", optional, tag = "20")]
    pub r#type: Option<i32>,
}

/// `TensorProto`: a constant tensor (an initializer or an attribute value). Data is row-major,
/// either in `raw_data` (little-endian, fixed width) or in the typed field for its `data_type`.
#[derive(Clone, PartialEq, Message)]
pub struct TensorProto {
    #[prost(int64, repeated, packed = "false", tag = "1")]
    pub dims: Vec<i64>,
    #[prost(int32, optional, tag = "2")]
    pub data_type: Option<i32>,
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    #[prost(int32, repeated, tag = "5")]
    pub int32_data: Vec<i32>,
    #[prost(bytes = "vec", repeated, tag = "6")]
    pub string_data: Vec<Vec<u8>>,
    #[prost(int64, repeated, tag = "7")]
    pub int64_data: Vec<i64>,
    #[prost(string, tag = "8")]
    pub name: String,
    #[prost(bytes = "vec", optional, tag = "9")]
    pub raw_data: Option<Vec<u8>>,
    #[prost(double, repeated, tag = "10")]
    pub double_data: Vec<f64>,
    #[prost(uint64, repeated, tag = "11")]
    pub uint64_data: Vec<u64>,
    #[prost(string, tag = "12")]
    pub doc_string: String,
}

/// `ValueInfoProto`: the name and type of a graph input, output or intermediate value.
#[derive(Clone, PartialEq, Message)]
pub struct ValueInfoProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
    #[prost(string, tag = "3")]
    pub doc_string: String,
}

/// `TypeProto`; only the tensor variant of its `value` oneof is modelled.
#[derive(Clone, PartialEq, Message)]
pub struct TypeProto {
    #[prost(oneof = "type_proto::Value", tags = "1")]
    pub value: Option<type_proto::Value>,
    #[prost(string, tag = "6")]
    pub denotation: String,
}

/// Nested messages of [`TypeProto`].
pub mod type_proto {
    use super::TensorShapeProto;

    /// `TypeProto.Tensor`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Tensor {
        #[prost(int32, optional, tag = "1")]
        pub elem_type: Option<i32>,
        #[prost(message, optional, tag = "2")]
        pub shape: Option<TensorShapeProto>,
    }

    /// `TypeProto.value`.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        #[prost(message, tag = "1")]
        TensorType(Tensor),
    }
}

/// `TensorShapeProto`: one entry per dimension.
#[derive(Clone, PartialEq, Message)]
pub struct TensorShapeProto {
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<tensor_shape_proto::Dimension>,
}

/// Nested messages of [`TensorShapeProto`].
pub mod tensor_shape_proto {
    /// `TensorShapeProto.Dimension`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Dimension {
        #[prost(oneof = "dimension::Value", tags = "1, 2")]
        pub value: Option<dimension::Value>,
        #[prost(string, tag = "3")]
        pub denotation: String,
    }

    /// Nested types of [`Dimension`].
    pub mod dimension {
        /// `TensorShapeProto.Dimension.value`: a fixed size or a symbolic name.
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Value {
            #[prost(int64, tag = "1")]
            DimValue(i64),
            #[prost(string, tag = "2")]
            DimParam(String),
        }
    }
}

/// A dimension of a graph input or output: fixed, or named and chosen at run time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dim {
    Fixed(i64),
    Symbolic(String),
}

impl Dim {
    /// How [`crate::TensorSpec`] writes it: the number, or the symbol.
    pub fn to_spec(&self) -> String {
        match self {
            Dim::Fixed(n) => n.to_string(),
            Dim::Symbolic(s) => s.clone(),
        }
    }
}

/// A float tensor, stored as little-endian `raw_data`.
pub fn float_tensor(name: &str, dims: &[i64], data: &[f32]) -> TensorProto {
    let mut raw = Vec::with_capacity(data.len() * 4);
    for v in data {
        raw.extend_from_slice(&v.to_le_bytes());
    }
    TensorProto {
        name: name.to_owned(),
        dims: dims.to_vec(),
        data_type: Some(DataType::Float as i32),
        raw_data: Some(raw),
        ..Default::default()
    }
}

/// An int64 tensor, stored in `int64_data`.
pub fn int64_tensor(name: &str, dims: &[i64], data: &[i64]) -> TensorProto {
    TensorProto {
        name: name.to_owned(),
        dims: dims.to_vec(),
        data_type: Some(DataType::Int64 as i32),
        int64_data: data.to_vec(),
        ..Default::default()
    }
}

impl TensorProto {
    /// The elements of a float tensor, from `raw_data` or `float_data`; `None` for other types.
    pub fn f32_values(&self) -> Option<Vec<f32>> {
        if self.data_type != Some(DataType::Float as i32) {
            return None;
        }
        match &self.raw_data {
            Some(raw) => {
                let chunks = raw.chunks_exact(4);
                if !chunks.remainder().is_empty() {
                    return None;
                }
                Some(chunks.map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
            }
            None => Some(self.float_data.clone()),
        }
    }

    /// The elements of an int64 tensor, from `raw_data` or `int64_data`; `None` for other types.
    pub fn i64_values(&self) -> Option<Vec<i64>> {
        if self.data_type != Some(DataType::Int64 as i32) {
            return None;
        }
        match &self.raw_data {
            Some(raw) => {
                let chunks = raw.chunks_exact(8);
                if !chunks.remainder().is_empty() {
                    return None;
                }
                Some(
                    chunks
                        .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                        .collect(),
                )
            }
            None => Some(self.int64_data.clone()),
        }
    }
}

/// A node of the default ONNX domain.
pub fn node(op_type: &str, inputs: &[&str], outputs: &[&str], attributes: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: op_type.to_owned(),
        input: inputs.iter().map(|s| (*s).to_owned()).collect(),
        output: outputs.iter().map(|s| (*s).to_owned()).collect(),
        attribute: attributes,
        ..Default::default()
    }
}

/// An `INT` attribute; zero is written explicitly.
pub fn attr_int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.to_owned(),
        r#type: Some(AttributeType::Int as i32),
        i: Some(value),
        ..Default::default()
    }
}

/// An `INTS` attribute.
pub fn attr_ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.to_owned(),
        r#type: Some(AttributeType::Ints as i32),
        ints: values.to_vec(),
        ..Default::default()
    }
}

/// A `FLOAT` attribute.
pub fn attr_float(name: &str, value: f32) -> AttributeProto {
    AttributeProto {
        name: name.to_owned(),
        r#type: Some(AttributeType::Float as i32),
        f: Some(value),
        ..Default::default()
    }
}

/// A `GRAPH` attribute (the branches of `If`); the subgraph may read the outer graph's values.
pub fn attr_graph(name: &str, graph: GraphProto) -> AttributeProto {
    AttributeProto {
        name: name.to_owned(),
        r#type: Some(AttributeType::Graph as i32),
        g: Some(Box::new(graph)),
        ..Default::default()
    }
}

/// A tensor-typed graph input or output.
pub fn tensor_value_info(name: &str, elem_type: DataType, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match d {
                Dim::Fixed(n) => tensor_shape_proto::dimension::Value::DimValue(*n),
                Dim::Symbolic(s) => tensor_shape_proto::dimension::Value::DimParam(s.clone()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.to_owned(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem_type as i32),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An operator set import; `""` is the default ONNX domain.
pub fn opset(domain: &str, version: i64) -> OperatorSetIdProto {
    OperatorSetIdProto { domain: domain.to_owned(), version: Some(version) }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn sample_model() -> ModelProto {
        ModelProto {
            ir_version: Some(IR_VERSION),
            producer_name: "shopmind".into(),
            producer_version: "0.1.0".into(),
            opset_import: vec![opset("", OPSET_VERSION)],
            metadata_props: vec![StringStringEntryProto { key: "k".into(), value: "v".into() }],
            graph: Some(GraphProto {
                name: "g".into(),
                node: vec![
                    node("Unsqueeze", &["x", "axes"], &["y"], vec![]),
                    node("ReduceSum", &["y", "axes"], &["z"], vec![attr_int("keepdims", 0)]),
                ],
                initializer: vec![
                    float_tensor("w", &[2, 2], &[1.0, -2.5, 0.0, 3.25]),
                    int64_tensor("axes", &[1], &[0]),
                ],
                input: vec![tensor_value_info("x", DataType::Float, &[Dim::Symbolic("n".into())])],
                output: vec![tensor_value_info("z", DataType::Float, &[Dim::Fixed(1)])],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn encode_decode_round_trip() {
        let model = sample_model();
        let bytes = model.encode_to_vec();
        let back = ModelProto::decode(bytes.as_slice()).unwrap();
        assert_eq!(back, model);
        let graph = back.graph.unwrap();
        assert_eq!(graph.initializer[0].f32_values().unwrap(), vec![1.0, -2.5, 0.0, 3.25]);
        assert_eq!(graph.initializer[1].i64_values().unwrap(), vec![0]);
        assert_eq!(graph.initializer[0].i64_values(), None);
    }

    #[test]
    fn explicit_zero_attribute_is_on_the_wire() {
        // keepdims = 0 must be present (field 3, varint 0), or ONNX Runtime sees no value.
        let bytes = attr_int("keepdims", 0).encode_to_vec();
        // name (tag 1, len 8) ... i (tag 3 varint: key byte 0x18, value 0) ... type (tag 20: 0xa0 0x01, 2)
        let expected: Vec<u8> = [&[0x0a, 8][..], b"keepdims", &[0x18, 0x00], &[0xa0, 0x01, 0x02]]
            .into_iter()
            .flatten()
            .copied()
            .collect();
        assert_eq!(bytes, expected);
    }

    #[test]
    fn field_numbers_match_onnx_proto() {
        // ModelProto: ir_version = 1, opset_import = 8, metadata_props = 14.
        let m = ModelProto {
            ir_version: Some(8),
            opset_import: vec![opset("", 17)],
            metadata_props: vec![StringStringEntryProto { key: "a".into(), value: "b".into() }],
            ..Default::default()
        };
        let bytes = m.encode_to_vec();
        assert_eq!(bytes, vec![0x08, 8, 0x42, 2, 0x10, 17, 0x72, 6, 0x0a, 1, b'a', 0x12, 1, b'b']);

        // TensorProto dims (1) are unpacked in proto2; int64_data (7) is packed.
        let t = int64_tensor("", &[2], &[1, 2]);
        assert_eq!(t.encode_to_vec(), vec![0x08, 2, 0x10, 7, 0x3a, 2, 1, 2]);

        // A symbolic dimension is dim_param (2), a fixed one dim_value (1).
        let v = tensor_value_info("x", DataType::Int64, &[Dim::Symbolic("h".into()), Dim::Fixed(0)]);
        let bytes = v.encode_to_vec();
        // ValueInfo.type(2) > TypeProto.tensor_type(1) > elem_type(1)=7, shape(2) > dim(1) x2
        let expected = vec![
            0x0a, 1, b'x', 0x12, 15, 0x0a, 13, 0x08, 7, 0x12, 9, 0x0a, 3, 0x12, 1, b'h', 0x0a, 2, 0x08, 0,
        ];
        assert_eq!(bytes, expected);
    }
}
