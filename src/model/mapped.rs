//! Tensors read in place from the memory-mapped model file. The mapping lives
//! as long as any tensor that points into it, so a model's block-quantized
//! matrices and embedding tables are never copied, and processes running the
//! same file share those pages.

use candle_core::{DType, Device, Shape, Tensor};
use std::ops::{Deref, Range};
use std::sync::Arc;

/// A byte range of a mapped file.
#[derive(Debug, Clone)]
pub struct MappedBytes {
    map: Arc<memmap2::Mmap>,
    range: Range<usize>,
}

impl MappedBytes {
    pub fn new(map: Arc<memmap2::Mmap>, range: Range<usize>) -> candle_core::Result<Self> {
        if range.start > range.end || range.end > map.len() {
            candle_core::bail!("bytes {range:?} lie beyond the end of the mapped file ({} bytes)", map.len());
        }
        Ok(Self { map, range })
    }

    /// Drops these pages from memory once they have been copied; they are read
    /// back from the file if touched again. So a load never holds a large
    /// tensor and its copy at once. Small ranges are left alone: each call
    /// flushes TLBs on every core, and the ~1000 norms, biases and adapter
    /// factors of the default model cost 40 ms of load that way.
    pub(crate) fn release(&self) {
        const WORTH_RELEASING: usize = 1 << 20;
        #[cfg(unix)]
        if self.range.len() >= WORTH_RELEASING {
            let page = 4096;
            let start = self.range.start / page * page;
            // SAFETY: the mapping is a read-only view of a file: dropped pages are
            // read back from the file if touched again, so no data is lost.
            unsafe {
                let _ =
                    self.map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, self.range.end - start);
            }
        }
    }
}

impl Deref for MappedBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.map[self.range.clone()]
    }
}

/// UTF-8 text held in memory, or still in the mapped file: a model's tokenizers,
/// whose 3.3 MB are read to build the tokenizers and then not again.
#[derive(Debug, Clone)]
pub enum SharedText {
    Owned(Arc<str>),
    /// Checked as UTF-8 when mapped.
    Mapped(MappedBytes),
}

impl SharedText {
    pub fn mapped(bytes: MappedBytes) -> Result<Self, std::str::Utf8Error> {
        std::str::from_utf8(&bytes)?;
        Ok(Self::Mapped(bytes))
    }

    /// Drops mapped text's pages from memory ([`MappedBytes::release`]); read back if used again.
    pub fn release(&self) {
        if let Self::Mapped(bytes) = self {
            bytes.release();
        }
    }
}

impl Deref for SharedText {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            Self::Owned(text) => text,
            // SAFETY: checked as UTF-8 in `SharedText::mapped`; the mapped file does not change
            // under a running kioku (see `MappedModel::open`).
            Self::Mapped(bytes) => unsafe { std::str::from_utf8_unchecked(bytes) },
        }
    }
}

impl From<String> for SharedText {
    fn from(text: String) -> Self {
        Self::Owned(text.into())
    }
}

/// A dense tensor, still in the file.
#[derive(Debug, Clone)]
pub struct MappedTensor {
    bytes: MappedBytes,
    dtype: DType,
    shape: Shape,
}

impl MappedTensor {
    pub fn new(bytes: MappedBytes, dtype: DType, shape: Shape) -> candle_core::Result<Self> {
        if bytes.len() != shape.elem_count() * dtype.size_in_bytes() {
            candle_core::bail!("{} bytes do not hold a {dtype:?} tensor of shape {shape:?}", bytes.len());
        }
        Ok(Self { bytes, dtype, shape })
    }

    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn bytes(&self) -> &MappedBytes {
        &self.bytes
    }

    /// An f16 tensor as f32 on the CPU, converted in one pass from the mapped bytes; the file's
    /// pages are released as by [`MappedTensor::load`]. Through a stored-dtype copy and a cast, as
    /// before, the stored silence keys and values (8 × 1.1 MiB) took 24 ms to read, against
    /// 12 ms this way (release build, 3 runs each), most of it faulting in the fresh f32 pages.
    pub fn load_f16_as_f32(&self) -> candle_core::Result<Tensor> {
        if self.dtype != DType::F16 {
            candle_core::bail!("{:?} is not f16", self.dtype);
        }
        let mut values = vec![0f32; self.shape.elem_count()];
        widen_f16(&self.bytes, &mut values);
        self.bytes.release();
        Tensor::from_vec(values, self.shape.clone(), &Device::Cpu)
    }

    /// A copy on `device`, in the stored dtype; the file's pages are released.
    pub fn load(&self, device: &Device) -> candle_core::Result<Tensor> {
        let tensor = Tensor::from_raw_buffer(&self.bytes, self.dtype, self.shape.dims(), device)?;
        self.bytes.release();
        Ok(tensor)
    }

    /// Rows `ids` of a 2-D f16 or f32 table as f32 (ids.len(), cols), read in place.
    pub fn rows_f32(&self, ids: &[u32]) -> candle_core::Result<Tensor> {
        let (rows, cols) = self.shape.dims2()?;
        let row_bytes = cols * self.dtype.size_in_bytes();
        let mut out = vec![0f32; ids.len() * cols];
        for (&id, values) in ids.iter().zip(out.chunks_exact_mut(cols)) {
            let id = id as usize;
            if id >= rows {
                candle_core::bail!("token id {id} is outside the embedding table's {rows} rows");
            }
            let row = &self.bytes[id * row_bytes..(id + 1) * row_bytes];
            match self.dtype {
                DType::F16 => widen_f16(row, values),
                DType::F32 => {
                    for (v, b) in values.iter_mut().zip(row.chunks_exact(4)) {
                        *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    }
                }
                other => candle_core::bail!("an embedding table stored as {other:?} cannot be read in place"),
            }
        }
        Tensor::from_vec(out, (ids.len(), cols), &Device::Cpu)
    }
}

/// Little-endian f16 `bytes` into `out` as f32: with the CPU's conversion instructions
/// where the bytes are 2-aligned, as mapped tensors are, else value by value.
fn widen_f16(bytes: &[u8], out: &mut [f32]) {
    // SAFETY: every bit pattern is a valid f16; only the aligned middle is reinterpreted.
    match unsafe { bytes.align_to::<half::f16>() } {
        ([], halves, []) => {
            use half::slice::HalfFloatSliceExt;
            halves.convert_to_f32_slice(out);
        }
        _ => {
            for (v, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *v = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
    }
}

/// `bytes` after `offset` bytes of padding, in a mapped temporary file.
#[cfg(test)]
pub(crate) fn in_mapped_file(offset: usize, bytes: &[u8]) -> Arc<memmap2::Mmap> {
    use std::io::Write;
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(&vec![0u8; offset]).unwrap();
    file.write_all(bytes).unwrap();
    Arc::new(unsafe { memmap2::Mmap::map(&file) }.unwrap())
}

/// A token embedding table that serves row lookups only.
#[derive(Debug, Clone)]
pub enum Embedding {
    /// On the compute device (GPUs, and tables that are also trained or used as the head).
    Loaded(Tensor),
    /// In the mapped file (CPU): only the rows looked up are ever read.
    Mapped(MappedTensor),
}

impl Embedding {
    /// Rows for `ids` (any shape), as `dtype`: shape (ids.elem_count(), dim).
    pub fn lookup(&self, ids: &Tensor, dtype: DType) -> candle_core::Result<Tensor> {
        let ids = ids.flatten_all()?;
        match self {
            Embedding::Loaded(table) => table.embedding(&ids)?.to_dtype(dtype),
            Embedding::Mapped(table) => {
                table.rows_f32(&ids.to_vec1::<u32>()?)?.to_device(ids.device())?.to_dtype(dtype)
            }
        }
    }
}
