//! The few ops that exist in two flavours: candle's fused kernels (fast, but
//! they return no gradient) and plain tensor-op versions that backpropagate.
//! Every model calls these instead of candle directly, so switching a model to
//! the training path is one flag, not a rewrite (docs/DESIGN.md, "Training
//! through candle: ops without gradients").

use super::cpu_pool::SharedOut;
use super::mapped::MappedTensor;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Storage, Tensor, D};

/// Which kernels a forward pass may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Path {
    /// Fused inference kernels; no gradients flow through them.
    #[default]
    Fast,
    /// Plain tensor ops only, so backward reaches every trainable tensor.
    Trainable,
}

pub fn softmax(xs: &Tensor, path: Path) -> Result<Tensor> {
    match path {
        Path::Fast => candle_nn::ops::softmax_last_dim(xs),
        Path::Trainable => candle_nn::ops::softmax(xs, D::Minus1),
    }
}

pub fn layer_norm(xs: &Tensor, weight: &Tensor, bias: &Tensor, eps: f32, path: Path) -> Result<Tensor> {
    match path {
        Path::Fast => candle_nn::ops::layer_norm(xs, weight, bias, eps),
        Path::Trainable => candle_nn::ops::layer_norm_slow(xs, weight, bias, eps),
    }
}

pub fn rms_norm(xs: &Tensor, weight: &Tensor, eps: f32, path: Path) -> Result<Tensor> {
    match path {
        Path::Fast => candle_nn::ops::rms_norm(xs, weight, eps),
        Path::Trainable => candle_nn::ops::rms_norm_slow(xs, weight, eps),
    }
}

/// Rotate-half rotary embedding (the HF layout kioku uses everywhere).
/// `xs` is (batch, heads, seq, head_dim); `cos`/`sin` are (seq, head_dim/2).
pub fn rope(xs: &Tensor, cos: &Tensor, sin: &Tensor, path: Path) -> Result<Tensor> {
    match path {
        Path::Fast => candle_nn::rotary_emb::rope(&xs.contiguous()?, cos, sin),
        Path::Trainable => candle_nn::rotary_emb::rope_slow(xs, cos, sin),
    }
}

/// Scaled dot-product attention on (batch, heads, seq, head_dim) tensors.
/// `mask` is added to the scores (0 or -inf), broadcast over batch and heads.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>, path: Path) -> Result<Tensor> {
    let scale = 1.0 / (q.dim(D::Minus1)? as f64).sqrt();
    if path == Path::Fast && mask.is_none() {
        if let Some(out) = few_queries_in_place(q, &[KvSegment::Tensors(k.clone(), v.clone())], scale as f32)? {
            return Ok(out);
        }
    }
    // For a batch of one, candle's matmul reads K and V in place, whatever
    // their strides within a matrix: a cache's view, or K transposed. Copying
    // them first copied the whole cache at every decoding step (Whisper's
    // cross-attention: 1500 positions × 4 layers per token).
    let in_place = |t: Tensor| if t.dim(0)? == 1 { Ok(t) } else { t.contiguous() };
    let scores = (q.contiguous()?.matmul(&in_place(k.t()?)?)? * scale)?;
    let scores = match mask {
        Some(mask) => scores.broadcast_add(mask)?,
        None => scores,
    };
    softmax(&scores, path)?.matmul(&in_place(v.clone())?)
}

/// Keys and values of consecutive positions, each (1, heads, positions, head_dim).
#[derive(Debug, Clone)]
pub enum KvSegment {
    Tensors(Tensor, Tensor),
    /// f16 keys and values still in the mapped model file, read from
    /// position `from` on: Whisper's stored silence, which as f32 copies held
    /// 18 MB for the life of the process.
    Mapped {
        k: MappedTensor,
        v: MappedTensor,
        from: usize,
    },
}

impl KvSegment {
    /// The same keys and values from position `from` on.
    pub fn tail(&self, from: usize) -> Result<Self> {
        Ok(match self {
            KvSegment::Tensors(k, v) => {
                let tail = |t: &Tensor| t.narrow(2, from, t.dim(2)? - from);
                KvSegment::Tensors(tail(k)?, tail(v)?)
            }
            KvSegment::Mapped { k, v, from: start } => {
                KvSegment::Mapped { k: k.clone(), v: v.clone(), from: start + from }
            }
        })
    }

    /// The shapes of the keys and of the values.
    fn shapes(&self) -> (&Shape, &Shape) {
        match self {
            KvSegment::Tensors(k, v) => (k.shape(), v.shape()),
            KvSegment::Mapped { k, v, .. } => (k.shape(), v.shape()),
        }
    }

    /// As tensors on `device`, in `dtype`: mapped ones are copied.
    pub fn to_tensors(&self, device: &candle_core::Device, dtype: DType) -> Result<(Tensor, Tensor)> {
        match self {
            KvSegment::Tensors(k, v) => Ok((k.clone(), v.clone())),
            KvSegment::Mapped { k, v, from } => {
                let read = |m: &MappedTensor| {
                    let t = m.load(device)?.to_dtype(dtype)?;
                    t.narrow(2, *from, t.dim(2)? - from)
                };
                Ok((read(k)?, read(v)?))
            }
        }
    }
}

/// Unmasked attention over keys and values held as consecutive segments of
/// positions, as if concatenated along the position axis.
/// Whisper's cross-attention keeps the clip's own keys apart from the stored
/// silence's: concatenating them wrote 18 MB per transcription (4 layers ×
/// K and V × 1500 positions) into fresh pages, about a third of the time
/// spent before the first transcript token.
pub fn attention_over(q: &Tensor, segments: &[KvSegment], path: Path) -> Result<Tensor> {
    let scale = 1.0 / (q.dim(D::Minus1)? as f64).sqrt();
    if path == Path::Fast {
        if let Some(out) = few_queries_in_place(q, segments, scale as f32)? {
            return Ok(out);
        }
    }
    let segments =
        segments.iter().map(|segment| segment.to_tensors(q.device(), q.dtype())).collect::<Result<Vec<_>>>()?;
    let joined =
        |pick: fn(&(Tensor, Tensor)) -> &Tensor| Tensor::cat(&segments.iter().map(pick).collect::<Vec<_>>(), 2);
    attention(q, &joined(|(k, _)| k)?, &joined(|(_, v)| v)?, None, path)
}

/// Query rows per head up to which [`few_queries_in_place`] runs; more (an
/// encoder's frames) are a real matrix product, where candle's gemm wins.
const FEW_QUERIES: usize = 16;

/// The values of a K or V matrix, as stored.
#[derive(Clone, Copy)]
enum RowData<'a> {
    F32(&'a [f32]),
    F16(&'a [half::f16]),
}

/// One head-major K or V matrix read in place: row `t` of head `h`.
struct HeadRows<'a> {
    data: RowData<'a>,
    start: usize,
    head_stride: usize,
    row_stride: usize,
    dim: usize,
    len: usize,
}

impl<'a> HeadRows<'a> {
    /// `None` unless `storage` is f32 on the CPU with contiguous rows.
    fn new(storage: &'a Storage, layout: &Layout) -> Option<Self> {
        let Storage::Cpu(CpuStorage::F32(data)) = storage else { return None };
        let (dims, strides) = (layout.dims(), layout.stride());
        (dims.len() == 4 && strides[3] == 1).then(|| Self {
            data: RowData::F32(data),
            start: layout.start_offset(),
            head_stride: strides[1],
            row_stride: strides[2],
            dim: dims[3],
            len: dims[2],
        })
    }

    /// Rows `from..` of a contiguous f16 (1, heads, positions, dim) tensor in the
    /// mapped file; `None` for any other dtype or shape.
    fn mapped(tensor: &'a MappedTensor, from: usize) -> Option<Self> {
        let &[1, _, positions, dim] = tensor.shape().dims() else { return None };
        if tensor.dtype() != DType::F16 || from > positions {
            return None;
        }
        // SAFETY: every bit pattern is a valid f16; only an exactly aligned view is used.
        let ([], data, []) = (unsafe { tensor.bytes().align_to::<half::f16>() }) else { return None };
        Some(Self {
            data: RowData::F16(data),
            start: from * dim,
            head_stride: positions * dim,
            row_stride: dim,
            dim,
            len: positions - from,
        })
    }

    #[inline(always)]
    fn at(&self, h: usize, t: usize) -> std::ops::Range<usize> {
        let at = self.start + h * self.head_stride + t * self.row_stride;
        at..at + self.dim
    }
}

/// Unmasked attention of a few query rows (decoding a token; GQA puts a
/// head group's queries side by side) for a batch of one, on the CPU in f32.
/// K and V are read in place from their strided cache views, segment after
/// segment, and each query row's scores, softmax and weighted sum stay in one
/// thread's cache. With candle's matmul, softmax and matmul per layer,
/// SmolLM2's decode took 9.3 ms per token at context 37 and 16.6 ms at 512;
/// with this, 10.3 and 12–14 ms (60 -> 73–82 tok/s at 512,
/// `examples/anchor_probe --depths 512`). `None` when the tensors do not fit
/// this path.
fn few_queries_in_place(q: &Tensor, segments: &[KvSegment], scale: f32) -> Result<Option<Tensor>> {
    // K and V that are neither f32 on the CPU nor mapped f16 are turned away by `HeadRows`.
    if !(q.device().is_cpu() && q.dtype() == DType::F32) {
        return Ok(None);
    }
    let (batch, heads, rows, dim) = q.dims4()?;
    if batch != 1 || rows > FEW_QUERIES {
        return Ok(None);
    }
    let fits = |(k, v): (&Shape, &Shape)| {
        let (k, v) = (k.dims(), v.dims());
        k.len() == 4 && k == v && (k[0], k[1], k[3]) == (1, heads, dim)
    };
    if !segments.iter().all(|segment| fits(segment.shapes())) {
        return Ok(None);
    }
    let q = q.contiguous()?;
    let (q_storage, q_layout) = q.storage_and_layout();
    let Storage::Cpu(CpuStorage::F32(qs)) = &*q_storage else { return Ok(None) };
    let qs = &qs[q_layout.start_offset()..q_layout.start_offset() + heads * rows * dim];
    // Tensors' storage stays locked while their rows are read; mapped rows need no lock.
    let guards: Vec<_> = segments
        .iter()
        .map(|segment| match segment {
            KvSegment::Tensors(k, v) => Some([k.storage_and_layout(), v.storage_and_layout()]),
            KvSegment::Mapped { .. } => None,
        })
        .collect();
    let pairs = segments.iter().zip(&guards).map(|(segment, guard)| match (segment, guard) {
        (KvSegment::Mapped { k, v, from }, _) => Some((HeadRows::mapped(k, *from)?, HeadRows::mapped(v, *from)?)),
        (_, Some([(k, k_layout), (v, v_layout)])) => Some((HeadRows::new(k, k_layout)?, HeadRows::new(v, v_layout)?)),
        (KvSegment::Tensors(..), None) => None,
    });
    let Some(kv) = pairs.collect::<Option<Vec<_>>>() else { return Ok(None) };
    let segments = Segments { len: kv.iter().map(|(k, _)| k.len).sum(), kv, scale };
    let mut out = vec![0f32; heads * rows * dim];
    let out_rows = SharedOut::new(&mut out);
    let task = |items: std::ops::Range<usize>| {
        let mut scores = vec![0f32; segments.len];
        for item in items {
            // SAFETY: each item writes only its own row of `out`, which outlives the task.
            let row = unsafe { std::slice::from_raw_parts_mut(out_rows.at(item * dim), dim) };
            attend_row(&segments, &qs[item * dim..(item + 1) * dim], item / rows, &mut scores, row);
        }
    };
    if heads * rows * segments.len * dim < 1 << 16 {
        task(0..heads * rows);
    } else {
        super::cpu_pool::global().for_each_chunk(heads * rows, super::cpu_pool::BALANCED_CHUNKS, &task);
    }
    drop((guards, q_storage));
    Ok(Some(Tensor::from_vec(out, (1, heads, rows, dim), q.device())?))
}

/// The keys and values one attention reads, segment after segment.
struct Segments<'a> {
    kv: Vec<(HeadRows<'a>, HeadRows<'a>)>,
    /// Positions in all segments together.
    len: usize,
    scale: f32,
}

/// One query row of head `h` against every segment: `out` gets the
/// softmax-weighted sum of V. Compiled for AVX2 where the CPU has it: built
/// for the baseline x86-64, the weighted sum ran four lanes wide.
fn attend_row(segments: &Segments, query: &[f32], h: usize, scores: &mut [f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if super::packed::has_avx2_fma() {
        // SAFETY: the CPU has the features the function is compiled for.
        return unsafe { attend_row_avx2(segments, query, h, scores, out) };
    }
    attend_row_with::<false>(segments, query, h, scores, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn attend_row_avx2(segments: &Segments, query: &[f32], h: usize, scores: &mut [f32], out: &mut [f32]) {
    attend_row_with::<true>(segments, query, h, scores, out)
}

/// [`attend_row`]; `F16C`: f16 rows are widened with the CPU's F16C instructions.
#[inline(always)]
fn attend_row_with<const F16C: bool>(
    segments: &Segments,
    query: &[f32],
    h: usize,
    scores: &mut [f32],
    out: &mut [f32],
) {
    use super::packed::{add_scaled_f16, dot_f16, dot_f32_inline};
    // Each segment's dtype is matched once, outside its loop over positions.
    let mut at = 0;
    for (k, _) in &segments.kv {
        let scores = scores[at..at + k.len].iter_mut().enumerate();
        match k.data {
            RowData::F32(data) => scores.for_each(|(t, s)| *s = dot_f32_inline(query, &data[k.at(h, t)])),
            RowData::F16(data) => scores.for_each(|(t, s)| *s = dot_f16::<F16C>(query, &data[k.at(h, t)])),
        }
        at += k.len;
    }
    let max = scores.iter().fold(f32::NEG_INFINITY, |max, &s| max.max(s)) * segments.scale;
    let mut sum = 0f32;
    for score in scores.iter_mut() {
        *score = (*score * segments.scale - max).exp();
        sum += *score;
    }
    out.fill(0.0);
    let mut at = 0;
    for (_, v) in &segments.kv {
        let weights = scores[at..at + v.len].iter().enumerate();
        match v.data {
            RowData::F32(data) => weights.for_each(|(t, &p)| {
                out.iter_mut().zip(&data[v.at(h, t)]).for_each(|(o, &x)| *o += p * x);
            }),
            RowData::F16(data) => weights.for_each(|(t, &p)| add_scaled_f16::<F16C>(out, p, &data[v.at(h, t)])),
        }
        at += v.len;
    }
    out.iter_mut().for_each(|o| *o /= sum);
}

/// Additive causal mask for `seq` new positions after `past` cached ones:
/// shape (seq, past + seq), 0 where a query may look, -inf elsewhere.
pub fn causal_mask(seq: usize, past: usize, dtype: DType, device: &candle_core::Device) -> Result<Tensor> {
    let total = past + seq;
    let mask: Vec<f32> =
        (0..seq).flat_map(|i| (0..total).map(move |j| if j > past + i { f32::NEG_INFINITY } else { 0.0 })).collect();
    Tensor::from_vec(mask, (seq, total), device)?.to_dtype(dtype)
}

/// `xs` (..., in) times the transpose of `w` (out, in), as one 2-D matmul
/// over all leading dims (no broadcast copies of the weight). A constant
/// weight under a trained input takes [`FrozenMatmul`] on the CPU.
pub(crate) fn matmul_t(xs: &Tensor, w: &Tensor) -> Result<Tensor> {
    let mut out_dims = xs.dims().to_vec();
    let rows = xs.reshape(((), xs.dim(D::Minus1)?))?;
    let ys = if xs.track_op() && !w.is_variable() && xs.device().is_cpu() && xs.dtype() == candle_core::DType::F32 {
        rows.contiguous()?.apply_op1(FrozenMatmul { weight: w.clone() })?
    } else {
        rows.matmul(&w.t()?)?
    };
    *out_dims.last_mut().expect("a linear layer's input has a feature dimension") = w.dim(0)?;
    ys.reshape(out_dims)
}

/// `x·Wᵀ` for a weight that does not train (a frozen base under a trained
/// projector or LoRA). candle's matmul backward also computes the weight's
/// gradient, a third of a backward pass's work, only to drop it; this op
/// returns the input's gradient alone. CPU f32 only; elsewhere plain matmul.
struct FrozenMatmul {
    weight: Tensor,
}

impl CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(data), Some((start, end))) = (storage, layout.contiguous_offsets()) else {
            candle_core::bail!("frozen-matmul needs contiguous f32 input");
        };
        let ys = Tensor::from_slice(&data[start..end], layout.shape(), &candle_core::Device::Cpu)?
            .matmul(&self.weight.t()?)?;
        let (ys_storage, ys_layout) = ys.storage_and_layout();
        match &*ys_storage {
            Storage::Cpu(cpu) => Ok((cpu.clone(), ys_layout.shape().clone())),
            _ => candle_core::bail!("frozen-matmul ran off the CPU"),
        }
    }

    fn bwd(&self, _xs: &Tensor, _ys: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad.matmul(&self.weight)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn few_queries_and_segments_match_candle_on_strided_cache_views() {
        let dev = Device::Cpu;
        // A cache of capacity 40 holding 33 positions, as a KV cache's view is.
        let cache = |seed: f64| (Tensor::randn(0f32, 1.0, (1, 3, 40, 64), &dev).unwrap() * seed).unwrap();
        let (k, v) = (cache(1.0).narrow(2, 0, 33).unwrap(), cache(0.5).narrow(2, 0, 33).unwrap());
        for rows in [1, 3, FEW_QUERIES] {
            let q = Tensor::randn(0f32, 1.0, (1, 3, rows, 64), &dev).unwrap();
            let scale = 0.125;
            let want = softmax(
                &(q.matmul(&k.t().unwrap().contiguous().unwrap()).unwrap() * scale as f64).unwrap(),
                Path::Trainable,
            )
            .unwrap()
            .matmul(&v.contiguous().unwrap())
            .unwrap();
            let got = few_queries_in_place(&q, &[KvSegment::Tensors(k.clone(), v.clone())], scale)
                .unwrap()
                .expect("fits the fast path");
            let diff =
                (want - got).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
            assert!(diff < 1e-5, "rows={rows}: diff {diff}");
        }
        let many = Tensor::randn(0f32, 1.0, (1, 3, FEW_QUERIES + 1, 64), &dev).unwrap();
        // Segments of positions attend as their concatenation, on both paths.
        let split = |t: &Tensor| [t.narrow(2, 0, 20).unwrap(), t.narrow(2, 20, 13).unwrap()];
        let ([k0, k1], [v0, v1]) = (split(&k), split(&v));
        let segments = [KvSegment::Tensors(k0, v0), KvSegment::Tensors(k1, v1)];
        let two = Tensor::randn(0f32, 1.0, (1, 3, 2, 64), &dev).unwrap();
        for (q, path) in [(&two, Path::Fast), (&many, Path::Fast), (&many, Path::Trainable)] {
            let want = attention(q, &k, &v, None, Path::Trainable).unwrap();
            let got = attention_over(q, &segments, path).unwrap();
            let diff =
                (want - got).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
            assert!(diff < 1e-5, "{path:?}, {} rows: diff {diff}", q.dim(2).unwrap());
        }
        assert!(
            few_queries_in_place(&many, &[KvSegment::Tensors(k.clone(), v.clone())], 0.125).unwrap().is_none(),
            "an encoder's many rows take candle's path"
        );
    }

    /// Whisper's stored silence: f16 keys and values read in place from a mapped file,
    /// from a position on, attend as their f32 copies do, on the fast path and the dense one.
    #[test]
    fn mapped_f16_segments_match_their_f32_copies() {
        use crate::model::mapped::{in_mapped_file, MappedBytes};
        let dev = Device::Cpu;
        // 68 values per row: eight lanes of F16C, then a tail of four.
        let (heads, positions, dim, from) = (3, 50, 68, 17);
        let stored = |seed: f64| {
            let t = (Tensor::randn(0f32, 1.0, (1, heads, positions, dim), &dev).unwrap() * seed).unwrap();
            t.to_dtype(DType::F16).unwrap()
        };
        let (k, v) = (stored(1.0), stored(0.5));
        let map = |t: &Tensor| {
            let values = t.flatten_all().unwrap().to_vec1::<half::f16>().unwrap();
            let bytes: Vec<u8> = values.iter().flat_map(|x| x.to_le_bytes()).collect();
            // An even offset, as the file's tensors are 2-aligned, but not a page's start.
            let bytes = MappedBytes::new(in_mapped_file(6, &bytes), 6..6 + bytes.len()).unwrap();
            MappedTensor::new(bytes, DType::F16, t.shape().clone()).unwrap()
        };
        let clip = || Tensor::randn(0f32, 1.0, (1, heads, 5, dim), &dev).unwrap();
        let (clip_k, clip_v) = (clip(), clip());
        let mapped = KvSegment::Mapped { k: map(&k), v: map(&v), from: 0 }.tail(from).unwrap();
        let copied =
            KvSegment::Tensors(k.to_dtype(DType::F32).unwrap(), v.to_dtype(DType::F32).unwrap()).tail(from).unwrap();
        let segments = |silence: KvSegment| [KvSegment::Tensors(clip_k.clone(), clip_v.clone()), silence];
        for rows in [1, 4] {
            let q = Tensor::randn(0f32, 1.0, (1, heads, rows, dim), &dev).unwrap();
            let want = attention_over(&q, &segments(copied.clone()), Path::Trainable).unwrap();
            for path in [Path::Fast, Path::Trainable] {
                let got = attention_over(&q, &segments(mapped.clone()), path).unwrap();
                let diff = (&want - got).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                assert!(diff < 1e-5, "{path:?}, {rows} rows: diff {diff}");
            }
        }
        assert!(matches!(mapped, KvSegment::Mapped { from: 17, .. }), "a mapped segment's tail stays in place");
    }
}
