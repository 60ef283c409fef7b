//! A reader for the safetensors format: an 8-byte little-endian header length, a JSON header
//! mapping tensor names to `{dtype, shape, data_offsets}`, then the tensors' bytes.

use std::collections::HashMap;

use serde::Deserialize;

use crate::error::{EncoderError, Result};

#[derive(Deserialize)]
struct Entry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [usize; 2],
}

/// A float32 tensor, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Tensor {
    /// The transpose of a 2-D tensor (`[rows, cols]` -> `[cols, rows]`).
    pub fn transposed(&self) -> Result<Tensor> {
        let [rows, cols] = self.shape[..] else {
            return Err(EncoderError::Weights(format!(
                "cannot transpose a tensor of shape {:?}",
                self.shape
            )));
        };
        let mut data = vec![0.0; rows * cols];
        for r in 0..rows {
            for c in 0..cols {
                data[c * rows + r] = self.data[r * cols + c];
            }
        }
        Ok(Tensor { shape: vec![cols, rows], data })
    }
}

/// The float32 tensors of a safetensors file, by name. Tensors of other types are skipped.
pub fn read_f32_tensors(bytes: &[u8]) -> Result<HashMap<String, Tensor>> {
    let bad = |m: &str| EncoderError::Weights(format!("not a safetensors file: {m}"));
    let len_bytes: [u8; 8] =
        bytes.get(..8).and_then(|b| b.try_into().ok()).ok_or_else(|| bad("too short"))?;
    let header_len = usize::try_from(u64::from_le_bytes(len_bytes)).map_err(|_| bad("header too long"))?;
    let header_end = 8usize.checked_add(header_len).ok_or_else(|| bad("header too long"))?;
    let header = bytes.get(8..header_end).ok_or_else(|| bad("header runs past the end"))?;
    let entries: HashMap<String, serde_json::Value> =
        serde_json::from_slice(header).map_err(|e| bad(&format!("header is not JSON: {e}")))?;
    let data = &bytes[header_end..];
    let mut tensors = HashMap::new();
    for (name, value) in entries {
        if name == "__metadata__" {
            continue;
        }
        let entry: Entry =
            serde_json::from_value(value).map_err(|e| bad(&format!("tensor `{name}`: {e}")))?;
        if entry.dtype != "F32" {
            continue;
        }
        let [start, end] = entry.data_offsets;
        let raw = data
            .get(start..end)
            .ok_or_else(|| bad(&format!("tensor `{name}`: offsets {start}..{end} out of range")))?;
        let count: usize = entry.shape.iter().product();
        if raw.len() != count * 4 {
            return Err(bad(&format!("tensor `{name}`: {} bytes for shape {:?}", raw.len(), entry.shape)));
        }
        let values = raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        tensors.insert(name, Tensor { shape: entry.shape, data: values });
    }
    Ok(tensors)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn file(header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn reads_float_tensors_and_skips_others() {
        let mut data = Vec::new();
        for v in [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0] {
            data.extend_from_slice(&v.to_le_bytes());
        }
        data.extend_from_slice(&7i64.to_le_bytes());
        let header = r#"{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"ids":{"dtype":"I64","shape":[1],"data_offsets":[24,32]}}"#;
        let tensors = read_f32_tensors(&file(header, &data)).unwrap();
        assert_eq!(tensors.len(), 1);
        let w = &tensors["w"];
        assert_eq!(w.shape, vec![2, 3]);
        assert_eq!(w.data, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let t = w.transposed().unwrap();
        assert_eq!(t.shape, vec![3, 2]);
        assert_eq!(t.data, vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    }

    #[test]
    fn rejects_truncated_files_and_bad_offsets() {
        assert!(read_f32_tensors(&[1, 2, 3]).is_err());
        let header = r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}}"#;
        let err = read_f32_tensors(&file(header, &[0; 8])).unwrap_err();
        assert!(err.to_string().contains("out of range"), "{err}");
        let header = r#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#;
        assert!(read_f32_tensors(&file(header, &[0; 8])).is_err());
    }
}
