//! Weight-only 8-bit matrices for CPU inference, written by hand because
//! candle's quantized matmul also rounds the *activations* to 8 bits, and
//! SmolLM2's hidden states (a few huge outlier channels) do not survive that:
//! with only the output head quantized that way it answers "L'Étoile, la
//! Marseillaise…" instead of "The capital of France is Paris.". Here weights
//! are GGML Q8_0 blocks (32 int8 values + one scale) and activations stay f32.
//! Decoding one token is memory-bound, so reading 1 byte per weight instead of
//! 4 is what makes it fast.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use rayon::prelude::*;

const BLOCK: usize = 32;
/// Below this many multiply-adds a product runs on the calling thread.
const PARALLEL_MIN_MACS: usize = 1 << 20;
/// Bytes of one GGML Q8_0 block: f16 scale, then 32 int8 values.
const BLOCK_BYTES: usize = 2 + BLOCK;

#[derive(Debug)]
pub struct Q8Matrix {
    rows: usize,
    cols: usize,
    /// One scale per block, row-major.
    scales: Vec<f32>,
    quants: Vec<i8>,
}

impl Q8Matrix {
    /// Parses GGML Q8_0 blocks for a (rows, cols) matrix.
    pub fn from_ggml_q8_0(bytes: &[u8], rows: usize, cols: usize) -> candle_core::Result<Self> {
        if cols % BLOCK != 0 || bytes.len() != rows * cols / BLOCK * BLOCK_BYTES {
            candle_core::bail!("{} bytes are not Q8_0 blocks of a {rows}x{cols} matrix", bytes.len());
        }
        let n_blocks = bytes.len() / BLOCK_BYTES;
        let (mut scales, mut quants) = (Vec::with_capacity(n_blocks), Vec::with_capacity(n_blocks * BLOCK));
        for block in bytes.chunks_exact(BLOCK_BYTES) {
            scales.push(half::f16::from_le_bytes([block[0], block[1]]).to_f32());
            quants.extend(block[2..].iter().map(|&q| q as i8));
        }
        Ok(Self { rows, cols, scales, quants })
    }

    pub fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// The f32 matrix these blocks encode (for training, which needs dense weights).
    pub fn dequantize(&self, device: &candle_core::Device) -> candle_core::Result<Tensor> {
        let values: Vec<f32> =
            self.quants.chunks_exact(BLOCK).zip(&self.scales).flat_map(|(q, &d)| q.iter().map(move |&v| v as f32 * d)).collect();
        Tensor::from_vec(values, (self.rows, self.cols), device)
    }

    /// `xs` (..., cols) f32 -> (..., rows), i.e. `xs · Wᵀ`.
    pub fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        xs.contiguous()?.apply_op1_no_bwd(self)
    }

    fn matmul_rows(&self, xs: &[f32], n: usize, out: &mut [f32]) {
        let blocks_per_row = self.cols / BLOCK;
        // Each task owns a run of output rows for every input row: weights
        // are read from memory once, whatever the number of input rows.
        const ROWS_PER_TASK: usize = 64;
        let mut by_task: Vec<Vec<f32>> = vec![Vec::new(); self.rows.div_ceil(ROWS_PER_TASK)];
        let work = |(task, result): (usize, &mut Vec<f32>)| {
            let rows = task * ROWS_PER_TASK..((task + 1) * ROWS_PER_TASK).min(self.rows);
            result.resize(rows.len() * n, 0.0);
            for (i, r) in rows.enumerate() {
                let quants = &self.quants[r * self.cols..(r + 1) * self.cols];
                let scales = &self.scales[r * blocks_per_row..(r + 1) * blocks_per_row];
                for (t, x) in xs.chunks_exact(self.cols).enumerate() {
                    result[i * n + t] = dot(quants, scales, x);
                }
            }
        };
        // Waking the thread pool costs more than a small matrix-vector product.
        if self.quants.len() * n < PARALLEL_MIN_MACS {
            by_task.iter_mut().enumerate().for_each(work);
        } else {
            by_task.par_iter_mut().enumerate().for_each(work);
        }
        for (task, result) in by_task.iter().enumerate() {
            for (i, row_values) in result.chunks_exact(n).enumerate() {
                let r = task * ROWS_PER_TASK + i;
                for (t, &v) in row_values.iter().enumerate() {
                    out[t * self.rows + r] = v;
                }
            }
        }
    }
}

impl CustomOp1 for Q8Matrix {
    fn name(&self) -> &'static str {
        "q8-weight-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        self.cpu_matmul(storage, layout, &[])
    }
}

impl Q8Matrix {
    /// `x·Wᵀ + Σ B·(A·x)` over the terms, for contiguous f32 input.
    fn cpu_matmul(&self, storage: &CpuStorage, layout: &Layout, terms: &[(&LowRank, f32)]) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else { candle_core::bail!("q8 matmul takes f32 input") };
        let Some((start, end)) = layout.contiguous_offsets() else { candle_core::bail!("q8 matmul needs contiguous input") };
        let dims = layout.dims();
        if dims.last() != Some(&self.cols) {
            candle_core::bail!("q8 matmul: input {dims:?} does not end in {}", self.cols);
        }
        let xs = &data[start..end];
        let n = xs.len() / self.cols;
        let mut out = vec![0f32; n * self.rows];
        self.matmul_rows(xs, n, &mut out);
        for (term, scale) in terms {
            term.add_to(xs, *scale, &mut out);
        }
        let mut out_dims = dims.to_vec();
        *out_dims.last_mut().unwrap() = self.rows;
        Ok((CpuStorage::F32(out), Shape::from(out_dims)))
    }

    /// Like [`Q8Matrix::forward`], plus scaled low-rank terms in the same op.
    pub fn forward_with(&self, xs: &Tensor, terms: &[(&LowRank, f32)]) -> candle_core::Result<Tensor> {
        if terms.is_empty() {
            return self.forward(xs);
        }
        xs.contiguous()?.apply_op1_no_bwd(&WithLowRank { matrix: self, terms })
    }
}

/// A fixed low-rank term `B·(A·x)` (an applied LoRA adapter, its scale in B)
/// on the host. Added inside the q8 op: as candle ops, the ~6 tiny ops per
/// module cost more than the rank-16 arithmetic and halved decode speed.
#[derive(Debug)]
pub struct LowRank {
    rank: usize,
    /// (rank, cols), row-major
    a: Vec<f32>,
    /// (rows, rank), row-major
    b: Vec<f32>,
}

impl LowRank {
    /// From A (rank, in) and B (out, rank).
    pub fn new(a: &Tensor, b: &Tensor) -> candle_core::Result<Self> {
        let host = |t: &Tensor| t.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>();
        Ok(Self { rank: a.dim(0)?, a: host(a)?, b: host(b)? })
    }

    /// `out[t] += scale·B·(A·xs[t])` for each row t of `xs`.
    fn add_to(&self, xs: &[f32], scale: f32, out: &mut [f32]) {
        let cols = self.a.len() / self.rank;
        let rows = self.b.len() / self.rank;
        let mut low = vec![0f32; self.rank];
        for (x, y) in xs.chunks_exact(cols).zip(out.chunks_exact_mut(rows)) {
            for (l, a_row) in low.iter_mut().zip(self.a.chunks_exact(cols)) {
                *l = scale * dot_f32(a_row, x);
            }
            for (y, b_row) in y.iter_mut().zip(self.b.chunks_exact(self.rank)) {
                *y += dot_f32(b_row, &low);
            }
        }
    }
}

struct WithLowRank<'a> {
    matrix: &'a Q8Matrix,
    terms: &'a [(&'a LowRank, f32)],
}

impl CustomOp1 for WithLowRank<'_> {
    fn name(&self) -> &'static str {
        "q8-weight-matmul-low-rank"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        self.matrix.cpu_matmul(storage, layout, self.terms)
    }
}

fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return unsafe { dot_f32_avx2(a, b) };
        }
    }
    dot_f32_portable(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_f32_avx2(a: &[f32], b: &[f32]) -> f32 {
    dot_f32_portable(a, b)
}

/// Sixteen independent partial sums, so the compiler can vectorise the loop.
#[inline(always)]
fn dot_f32_portable(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = a_chunks.remainder().iter().zip(b_chunks.remainder()).map(|(x, y)| x * y).sum();
    let mut acc = [0f32; LANES];
    for (x, y) in a_chunks.zip(b_chunks) {
        for j in 0..LANES {
            acc[j] += x[j] * y[j];
        }
    }
    acc.iter().sum::<f32>() + tail
}

fn dot(quants: &[i8], scales: &[f32], x: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the features this function is compiled for were just detected.
            return unsafe { dot_avx512(quants, scales, x) };
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: as above.
            return unsafe { dot_avx2(quants, scales, x) };
        }
    }
    dot_portable(quants, scales, x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dot_avx512(quants: &[i8], scales: &[f32], x: &[f32]) -> f32 {
    dot_portable(quants, scales, x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(quants: &[i8], scales: &[f32], x: &[f32]) -> f32 {
    dot_portable(quants, scales, x)
}

/// Written so the compiler vectorises it: 16 independent lanes per block.
#[inline(always)]
fn dot_portable(quants: &[i8], scales: &[f32], x: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut total = [0f32; LANES];
    for ((q, xs), &d) in quants.chunks_exact(BLOCK).zip(x.chunks_exact(BLOCK)).zip(scales) {
        let mut acc = [0f32; LANES];
        for (ql, xl) in q.chunks_exact(LANES).zip(xs.chunks_exact(LANES)) {
            for j in 0..LANES {
                acc[j] += ql[j] as f32 * xl[j];
            }
        }
        for j in 0..LANES {
            total[j] += d * acc[j];
        }
    }
    total.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::Device;

    #[test]
    fn matches_dense_matmul_on_dequantized_weights() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (200, 96), &dev).unwrap();
        let blocks = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
        let q = Q8Matrix::from_ggml_q8_0(&blocks.data().unwrap(), 200, 96).unwrap();
        let dense = q.dequantize(&dev).unwrap();
        let reference = blocks.dequantize(&dev).unwrap();
        assert_eq!(dense.to_vec2::<f32>().unwrap(), reference.to_vec2::<f32>().unwrap());
        for n in [1, 3, 17] {
            let x = Tensor::randn(0f32, 1.0, (1, n, 96), &dev).unwrap();
            let want = x.broadcast_matmul(&dense.t().unwrap()).unwrap();
            let got = q.forward(&x).unwrap();
            assert_eq!(got.dims(), &[1, n, 200]);
            let diff = (want - got).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
            assert!(diff < 1e-4, "n={n}: diff {diff}");
        }
    }

    #[test]
    fn low_rank_terms_add_b_times_a_times_x() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (64, 96), &dev).unwrap();
        let q = Q8Matrix::from_ggml_q8_0(&QTensor::quantize(&w, GgmlDType::Q8_0).unwrap().data().unwrap(), 64, 96).unwrap();
        let (a, b) = (Tensor::randn(0f32, 0.1, (4, 96), &dev).unwrap(), Tensor::randn(0f32, 0.1, (64, 4), &dev).unwrap());
        let (a2, b2) = (Tensor::randn(0f32, 0.1, (2, 96), &dev).unwrap(), Tensor::randn(0f32, 0.1, (64, 2), &dev).unwrap());
        let (term, term2) = (LowRank::new(&a, &b).unwrap(), LowRank::new(&a2, &b2).unwrap());
        let x = Tensor::randn(0f32, 1.0, (1, 5, 96), &dev).unwrap();
        let lora = |a: &Tensor, b: &Tensor| x.broadcast_matmul(&a.t().unwrap()).unwrap().broadcast_matmul(&b.t().unwrap()).unwrap();
        let want = ((q.forward(&x).unwrap() + lora(&a, &b)).unwrap() + (lora(&a2, &b2) * 0.5).unwrap()).unwrap();
        let got = q.forward_with(&x, &[(&term, 1.0), (&term2, 0.5)]).unwrap();
        let diff = (want - got).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-4, "diff {diff}");
    }

    #[test]
    fn rejects_bytes_of_the_wrong_size() {
        assert!(Q8Matrix::from_ggml_q8_0(&[0u8; 33], 1, 32).is_err());
        assert!(Q8Matrix::from_ggml_q8_0(&[0u8; 34], 1, 30).is_err());
    }
}
