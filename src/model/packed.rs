//! Weight-only matrices for CPU inference: the weights stay as stored (GGML
//! Q8_0 blocks, or f16) and are read in place from the memory-mapped model
//! file; activations stay f32. Written by hand because candle's quantized
//! matmul also rounds the *activations* to 8 bits, and SmolLM2's hidden states
//! (a few huge outlier channels) do not survive that: with only the output
//! head quantized that way it answers "L'Étoile, la Marseillaise…" instead of
//! "The capital of France is Paris.".
//!
//! - One row of input (decoding a token) is memory-bound: each weight is read
//!   once and multiplied as it is widened to f32 ([`dot`]). Q8_0 reads 1.06
//!   bytes per weight, f16 2, against 4 for the f32 copies used before.
//! - A few rows (a typed question, Whisper's start tokens) share each read:
//!   a weight row is widened in registers and multiplied into up to 8 input
//!   rows' sums at once ([`dot_rows`]).
//! - Many rows (a long prompt, audio frames) are compute-bound: each thread
//!   widens a strip of weight rows to f32 once and multiplies the strip
//!   against every input row with the `gemm` crate's cache-blocked kernel.
//!
//! Work is split over [`super::cpu_pool`], whose calling thread takes a share.

use super::cpu_pool::SharedOut;
use super::mapped::MappedBytes;
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use std::ops::Range;

const BLOCK: usize = 32;
/// Bytes of one GGML Q8_0 block: f16 scale, then 32 int8 values.
const BLOCK_BYTES: usize = 2 + BLOCK;

/// How a matrix's rows are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// GGML Q8_0 blocks (32 int8 values and an f16 scale).
    Q8_0,
    /// IEEE half floats.
    F16,
}

impl Format {
    fn row_bytes(self, cols: usize) -> usize {
        match self {
            Format::Q8_0 => cols / BLOCK * BLOCK_BYTES,
            Format::F16 => cols * 2,
        }
    }
}
/// Below this many multiply-adds a product runs on the calling thread:
/// waking the pool costs more than a small matrix-vector product.
const PARALLEL_MIN_MACS: usize = 1 << 18;
/// From this many input rows on, weights are widened once per strip and
/// multiplied by the f32 gemm kernel instead of grouped dot products.
/// Widening costs a pass over all weights, which grouped dots skip. With
/// gemm's AVX-512 kernels (Cargo.toml), SmolLM2 prefill of 16 / 24 / 32 /
/// 40 / 48 / 56 tokens took 60–64 / 67–80 / 82–85 / 106–162 / 138–171 /
/// 161–163 ms with grouped dots against 68–83 / 69–77 / 84–87 / 94–104 /
/// 119–127 / 129–139 ms with gemm (medians of 15, three alternations, 2
/// threads): a tie at 24–32, gemm ahead from 40 on.
const GEMM_MIN_ROWS: usize = 32;
/// Strips per thread in a gemm product. Each strip packs all the input rows
/// again, so fewer strips pack less: with 2 instead of the 4 that dot
/// products use (`cpu_pool::BALANCED_CHUNKS`), SmolLM2 prefill of 128
/// tokens took 204–210 ms against 221–227 (medians of 12, four alternating
/// runs, 2 threads), and 32 / 64 / 512 tokens were no slower (three
/// alternating runs each); with 1 it varied more (204–245), a late thread's
/// strip left to wait for.
const GEMM_CHUNKS_PER_THREAD: usize = 2;
/// Input rows whose dot products share one read of a weight row.
const GROUP: usize = 8;
/// Weight bytes multiplied by one group of inputs before the next group
/// comes in ([`PackedMatrix::strip_dots`]); well inside a 1–2 MB L2.
const ROW_TILE_BYTES: usize = 64 << 10;
/// How far ahead of its reads the decode kernel ([`dot_q8_avx512`]) asks for
/// weights. Decode streams every weight once a token, and the hardware
/// prefetcher alone left it waiting on memory: 2 KB ahead lifted SmolLM2
/// decode from 60 to 87–92 tok/s (medians of 7, 2 threads, one process;
/// 1–6 KB all gave 84–95).
const PREFETCH_AHEAD: usize = 2048;

#[derive(Debug, Clone)]
pub struct PackedMatrix {
    rows: usize,
    cols: usize,
    format: Format,
    /// The stored rows, in the mapped model file.
    blocks: MappedBytes,
}

fn check_size(format: Format, len: usize, rows: usize, cols: usize) -> candle_core::Result<()> {
    if (format == Format::Q8_0 && !cols.is_multiple_of(BLOCK)) || len != rows * format.row_bytes(cols) {
        candle_core::bail!("{len} bytes are not a {rows}x{cols} matrix stored as {format:?}");
    }
    Ok(())
}

impl PackedMatrix {
    /// A (rows, cols) matrix stored as `format` in a mapped file, used in place.
    pub fn mapped(format: Format, bytes: MappedBytes, rows: usize, cols: usize) -> candle_core::Result<Self> {
        check_size(format, bytes.len(), rows, cols)?;
        Ok(Self { rows, cols, format, blocks: bytes })
    }

    pub fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    fn row_bytes(&self) -> usize {
        self.format.row_bytes(self.cols)
    }

    fn row(&self, r: usize) -> &[u8] {
        &self.blocks[r * self.row_bytes()..(r + 1) * self.row_bytes()]
    }

    /// The f32 matrix these blocks encode (for training, which needs dense weights).
    pub fn dequantize(&self, device: &candle_core::Device) -> candle_core::Result<Tensor> {
        let mut values = vec![0f32; self.rows * self.cols];
        widen(self.format, &self.blocks, &mut values);
        Tensor::from_vec(values, (self.rows, self.cols), device)
    }

    /// `xs` (..., cols) f32 -> (..., rows), i.e. `xs · Wᵀ`.
    pub fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        xs.contiguous()?.apply_op1_no_bwd(self)
    }

    /// `out[t·rows + r] = xs[t] · W[r]` for the `n` rows of `xs`.
    fn matmul_rows(&self, xs: &[f32], n: usize, out: &mut [f32]) {
        let out = SharedOut::new(out);
        let gemm = n >= GEMM_MIN_ROWS;
        let strip = |range: Range<usize>| {
            // SAFETY: every call writes only the columns in its own `range`.
            unsafe {
                if gemm {
                    self.strip_gemm(xs, n, range, out);
                } else {
                    self.strip_dots(xs, n, range, out);
                }
            }
        };
        if self.rows * self.cols * n < PARALLEL_MIN_MACS {
            strip(0..self.rows);
        } else {
            let chunks_per_thread = if gemm { GEMM_CHUNKS_PER_THREAD } else { super::cpu_pool::BALANCED_CHUNKS };
            super::cpu_pool::global().for_each_chunk(self.rows, chunks_per_thread, &strip);
        }
    }

    /// Output columns `range` by dot products. With several input rows, each
    /// weight row is read once per [`GROUP`] of input rows and multiplied into
    /// all of their sums ([`dot_rows`]). The rows go in tiles of about
    /// [`ROW_TILE_BYTES`], and each group of inputs passes over a whole tile:
    /// the group stays in L1 and the tile in L2. Row by row, every row
    /// re-read all `n` inputs from L2 (74 KB at 32 tokens for 612 bytes of
    /// weights). With the split sums of [`dot_rows_q8_avx512`], prefill of
    /// 32 / 48 tokens went from 159 / 236 to 119 / 177 ms (medians of 10,
    /// 2 threads, in one process).
    unsafe fn strip_dots(&self, xs: &[f32], n: usize, range: Range<usize>, out: SharedOut) {
        let xs = &xs[..n * self.cols];
        if n == 1 {
            for r in range {
                *out.at(r) = dot(self.format, self.row(r), xs);
            }
            return;
        }
        let tile_rows = (ROW_TILE_BYTES / self.row_bytes()).max(1);
        for tile_start in range.clone().step_by(tile_rows) {
            let tile = tile_start..(tile_start + tile_rows).min(range.end);
            for (g, group) in xs.chunks(GROUP * self.cols).enumerate() {
                let inputs = group.len() / self.cols;
                for r in tile.clone() {
                    let mut sums = [0f32; GROUP];
                    let sums = &mut sums[..inputs];
                    dot_rows(self.format, self.row(r), group, sums);
                    for (i, &sum) in sums.iter().enumerate() {
                        *out.at((g * GROUP + i) * self.rows + r) = sum;
                    }
                }
            }
        }
    }

    /// Output columns `range`: widen those weight rows to f32 once, then one
    /// cache-blocked f32 product against all `n` input rows.
    unsafe fn strip_gemm(&self, xs: &[f32], n: usize, range: Range<usize>, out: SharedOut) {
        thread_local! {
            static STRIP: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        STRIP.with_borrow_mut(|strip| {
            let (rows, k) = (range.len(), self.cols);
            strip.resize(rows * k, 0.0);
            widen(self.format, &self.blocks[range.start * self.row_bytes()..range.end * self.row_bytes()], strip);
            // out (n × rows, row stride self.rows) = xs (n × k) · stripᵀ (k × rows)
            gemm::gemm(
                n,
                rows,
                k,
                out.at(range.start),
                1,
                self.rows as isize,
                false,
                xs.as_ptr(),
                1,
                k as isize,
                strip.as_ptr(),
                k as isize,
                1,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        });
    }
}

impl CustomOp1 for PackedMatrix {
    fn name(&self) -> &'static str {
        "packed-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        self.cpu_matmul(storage, layout, &[])
    }
}

impl PackedMatrix {
    /// `x·Wᵀ + Σ B·(A·x)` over the terms, for contiguous f32 input.
    fn cpu_matmul(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
        terms: &[(&LowRank, f32)],
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else { candle_core::bail!("the packed matmul takes f32 input") };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("the packed matmul needs contiguous input")
        };
        let dims = layout.dims();
        if dims.last() != Some(&self.cols) {
            candle_core::bail!("packed matmul: input {dims:?} does not end in {}", self.cols);
        }
        let xs = &data[start..end];
        let n = xs.len() / self.cols;
        let mut out = vec![0f32; n * self.rows];
        self.matmul_rows(xs, n, &mut out);
        for (term, scale) in terms {
            term.add_to(xs, *scale, &mut out)?;
        }
        let mut out_dims = dims.to_vec();
        *out_dims.last_mut().unwrap() = self.rows;
        Ok((CpuStorage::F32(out), Shape::from(out_dims)))
    }

    /// Like [`PackedMatrix::forward`], plus scaled low-rank terms in the same op.
    pub fn forward_with(&self, xs: &Tensor, terms: &[(&LowRank, f32)]) -> candle_core::Result<Tensor> {
        if terms.is_empty() {
            return self.forward(xs);
        }
        xs.contiguous()?.apply_op1_no_bwd(&WithLowRank { matrix: self, terms })
    }
}

/// A fixed low-rank term `B·(A·x)` (an applied LoRA adapter, its scale in B)
/// on the host. Added inside the packed op: as candle ops, the ~6 tiny ops per
/// module cost more than the rank-16 arithmetic and halved decode speed.
#[derive(Debug)]
pub struct LowRank {
    /// A (rank, cols) and B (rows, rank), f32 and contiguous on the CPU: the
    /// adapter's own tensors, shared rather than copied.
    a: Tensor,
    b: Tensor,
}

/// The f32 values of a contiguous CPU tensor, read under its storage lock.
fn with_host<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match (&*storage, layout.contiguous_offsets()) {
        (candle_core::Storage::Cpu(CpuStorage::F32(values)), Some((start, end))) => Ok(f(&values[start..end])),
        _ => candle_core::bail!("a low-rank term needs contiguous f32 factors on the CPU"),
    }
}

impl LowRank {
    /// From A (rank, in) and B (out, rank); f32 CPU factors are shared, not copied.
    pub fn new(a: &Tensor, b: &Tensor) -> candle_core::Result<Self> {
        let host = |t: &Tensor| t.to_device(&candle_core::Device::Cpu)?.to_dtype(candle_core::DType::F32)?.contiguous();
        Ok(Self { a: host(a)?, b: host(b)? })
    }

    /// `out[t] += scale·B·(A·xs[t])` for each row t of `xs`.
    fn add_to(&self, xs: &[f32], scale: f32, out: &mut [f32]) -> candle_core::Result<()> {
        let (rank, cols) = self.a.dims2()?;
        let rows = self.b.dim(0)?;
        with_host(&self.a, |a| {
            with_host(&self.b, |b| {
                let mut low = vec![0f32; rank];
                for (x, y) in xs.chunks_exact(cols).zip(out.chunks_exact_mut(rows)) {
                    for (l, a_row) in low.iter_mut().zip(a.chunks_exact(cols)) {
                        *l = scale * dot_f32(a_row, x);
                    }
                    for (y, b_row) in y.iter_mut().zip(b.chunks_exact(rank)) {
                        *y += dot_f32(b_row, &low);
                    }
                }
            })
        })?
    }
}

struct WithLowRank<'a> {
    matrix: &'a PackedMatrix,
    terms: &'a [(&'a LowRank, f32)],
}

impl CustomOp1 for WithLowRank<'_> {
    fn name(&self) -> &'static str {
        "packed-matmul-low-rank"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        self.matrix.cpu_matmul(storage, layout, self.terms)
    }
}

pub(crate) fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    match simd() {
        // SAFETY: `simd` detected the features the kernel is compiled for.
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 | Simd::Avx2 => unsafe { dot_f32_avx2(a, b) },
        _ => dot_f32_inline(a, b),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_f32_avx2(a: &[f32], b: &[f32]) -> f32 {
    dot_f32_inline(a, b)
}

/// Sixteen independent partial sums, so the compiler can vectorise the loop.
/// Inlined into callers compiled for wider vectors, as [`dot_f32`] is not.
#[inline(always)]
pub(crate) fn dot_f32_inline(a: &[f32], b: &[f32]) -> f32 {
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

/// `a` · an f16 row `b`. `F16C`: with the CPU's F16C and FMA instructions, which
/// the caller's target features must include; otherwise value by value.
#[inline(always)]
pub(crate) fn dot_f16<const F16C: bool>(a: &[f32], b: &[half::f16]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if F16C {
        use std::arch::x86_64::*;
        let (a_chunks, b_chunks) = (a.chunks_exact(8), b.chunks_exact(8));
        let tail: f32 = a_chunks.remainder().iter().zip(b_chunks.remainder()).map(|(x, y)| x * y.to_f32()).sum();
        // SAFETY: the caller is compiled with F16C and FMA (see above); loads stay within each chunk.
        unsafe {
            let mut acc = _mm256_setzero_ps();
            for (x, y) in a_chunks.zip(b_chunks) {
                let y = _mm256_cvtph_ps(_mm_loadu_si128(y.as_ptr() as *const __m128i));
                acc = _mm256_fmadd_ps(_mm256_loadu_ps(x.as_ptr()), y, acc);
            }
            let mut lanes = [0f32; 8];
            _mm256_storeu_ps(lanes.as_mut_ptr(), acc);
            return lanes.iter().sum::<f32>() + tail;
        }
    }
    a.iter().zip(b).map(|(x, y)| x * y.to_f32()).sum()
}

/// `out += p · row` for an f16 row; `F16C` as in [`dot_f16`].
#[inline(always)]
pub(crate) fn add_scaled_f16<const F16C: bool>(out: &mut [f32], p: f32, row: &[half::f16]) {
    #[cfg(target_arch = "x86_64")]
    if F16C {
        use std::arch::x86_64::*;
        let mut out_chunks = out.chunks_exact_mut(8);
        let mut row_chunks = row.chunks_exact(8);
        // SAFETY: as in `dot_f16`.
        unsafe {
            let scale = _mm256_set1_ps(p);
            for (o, x) in (&mut out_chunks).zip(&mut row_chunks) {
                let x = _mm256_cvtph_ps(_mm_loadu_si128(x.as_ptr() as *const __m128i));
                _mm256_storeu_ps(o.as_mut_ptr(), _mm256_fmadd_ps(scale, x, _mm256_loadu_ps(o.as_ptr())));
            }
        }
        out_chunks.into_remainder().iter_mut().zip(row_chunks.remainder()).for_each(|(o, x)| *o += p * x.to_f32());
        return;
    }
    out.iter_mut().zip(row).for_each(|(o, x)| *o += p * x.to_f32());
}

fn f16_bits_to_f32(lo: u8, hi: u8) -> f32 {
    half::f16::from_le_bytes([lo, hi]).to_f32()
}

/// Stored rows -> their f32 values.
fn widen(format: Format, bytes: &[u8], out: &mut [f32]) {
    match format {
        Format::Q8_0 => {
            for (block, values) in bytes.chunks_exact(BLOCK_BYTES).zip(out.chunks_exact_mut(BLOCK)) {
                let d = f16_bits_to_f32(block[0], block[1]);
                for (v, &q) in values.iter_mut().zip(&block[2..]) {
                    *v = q as i8 as f32 * d;
                }
            }
        }
        Format::F16 => {
            #[cfg(target_arch = "x86_64")]
            if simd() == Simd::Avx512 {
                // SAFETY: `simd` detected the features the kernel is compiled for.
                return unsafe { widen_f16_avx512(bytes, out) };
            }
            for (v, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *v = f16_bits_to_f32(b[0], b[1]);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn widen_f16_avx512(bytes: &[u8], out: &mut [f32]) {
    use std::arch::x86_64::*;
    let n = out.len().min(bytes.len() / 2);
    let mut i = 0;
    while i + 16 <= n {
        _mm512_storeu_ps(
            out.as_mut_ptr().add(i),
            _mm512_cvtph_ps(_mm256_loadu_si256(bytes.as_ptr().add(2 * i) as *const __m256i)),
        );
        i += 16;
    }
    for (v, b) in out[i..n].iter_mut().zip(bytes[2 * i..].chunks_exact(2)) {
        *v = f16_bits_to_f32(b[0], b[1]);
    }
}

/// One stored row · each of `sums.len()` (at most [`GROUP`]) input rows
/// packed in `xs`.
fn dot_rows(format: Format, row: &[u8], xs: &[f32], sums: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if simd() == Simd::Avx512 {
        macro_rules! grouped {
            ($kernel:ident) => {
                // SAFETY: `simd` detected the features the kernels are compiled for.
                unsafe {
                    match sums.len() {
                        1 => $kernel::<1>(row, xs, sums),
                        2 => $kernel::<2>(row, xs, sums),
                        3 => $kernel::<3>(row, xs, sums),
                        4 => $kernel::<4>(row, xs, sums),
                        5 => $kernel::<5>(row, xs, sums),
                        6 => $kernel::<6>(row, xs, sums),
                        7 => $kernel::<7>(row, xs, sums),
                        _ => $kernel::<GROUP>(row, xs, sums),
                    }
                }
            };
        }
        return match format {
            Format::Q8_0 => grouped!(dot_rows_q8_avx512),
            Format::F16 => grouped!(dot_rows_f16_avx512),
        };
    }
    let cols = xs.len() / sums.len();
    for (sum, x) in sums.iter_mut().zip(xs.chunks_exact(cols)) {
        *sum = dot(format, row, x);
    }
}

/// [`dot_rows`] for Q8_0: each block is widened and scaled once, then
/// multiplied into G running sums (G ≤ 8 keeps them all in registers).
/// Each sum is kept as two, one per half block, so that no sum waits on two
/// dependent FMAs a block: alone, that made the kernel 17 % faster (20 → 23.5
/// G multiply-adds/s on one thread, a 1536×576 matrix, 8 and 32 inputs).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,f16c")]
unsafe fn dot_rows_q8_avx512<const G: usize>(blocks: &[u8], xs: &[f32], sums: &mut [f32]) {
    use std::arch::x86_64::*;
    let cols = xs.len() / G;
    let mut acc = [_mm512_setzero_ps(); G];
    let mut acc_hi = [_mm512_setzero_ps(); G];
    for i in 0..blocks.len() / BLOCK_BYTES {
        let b = blocks.as_ptr().add(i * BLOCK_BYTES);
        let d =
            _mm512_set1_ps(_mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(u16::from_le_bytes([*b, *b.add(1)]) as i32))));
        let lo =
            _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(b.add(2) as *const __m128i))));
        let hi =
            _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(b.add(18) as *const __m128i))));
        for (j, (acc, acc_hi)) in acc.iter_mut().zip(acc_hi.iter_mut()).enumerate() {
            let x = xs.as_ptr().add(j * cols + i * BLOCK);
            *acc = _mm512_fmadd_ps(lo, _mm512_loadu_ps(x), *acc);
            *acc_hi = _mm512_fmadd_ps(hi, _mm512_loadu_ps(x.add(16)), *acc_hi);
        }
    }
    for ((sum, acc), acc_hi) in sums.iter_mut().zip(acc).zip(acc_hi) {
        *sum = _mm512_reduce_add_ps(_mm512_add_ps(acc, acc_hi));
    }
}

/// [`dot_rows`] for f16 rows: 16 halves widened once, multiplied into G sums.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,f16c")]
unsafe fn dot_rows_f16_avx512<const G: usize>(row: &[u8], xs: &[f32], sums: &mut [f32]) {
    use std::arch::x86_64::*;
    let cols = xs.len() / G;
    let w = row.as_ptr() as *const u16;
    let mut acc = [_mm512_setzero_ps(); G];
    let mut i = 0;
    while i + 16 <= cols {
        let wv = _mm512_cvtph_ps(_mm256_loadu_si256(w.add(i) as *const __m256i));
        for (j, acc) in acc.iter_mut().enumerate() {
            *acc = _mm512_fmadd_ps(wv, _mm512_loadu_ps(xs.as_ptr().add(j * cols + i)), *acc);
        }
        i += 16;
    }
    for (j, (sum, acc)) in sums.iter_mut().zip(acc).enumerate() {
        *sum = _mm512_reduce_add_ps(acc) + dot_f16_portable(&row[2 * i..], &xs[j * cols + i..(j + 1) * cols]);
    }
}

/// The widest kernels this CPU runs; each level implies the ones below.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Simd {
    /// AVX-512F with AVX2, FMA and F16C.
    Avx512,
    /// AVX2 with FMA and F16C.
    Avx2,
    Portable,
}

/// Whether kernels compiled for AVX2 and FMA may run here.
pub(crate) fn has_avx2_fma() -> bool {
    matches!(simd(), Simd::Avx512 | Simd::Avx2)
}

fn simd() -> Simd {
    static DETECTED: std::sync::OnceLock<Simd> = std::sync::OnceLock::new();
    *DETECTED.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c")
        {
            return if std::is_x86_feature_detected!("avx512f") { Simd::Avx512 } else { Simd::Avx2 };
        }
        Simd::Portable
    })
}

/// One stored row · `x`.
fn dot(format: Format, row: &[u8], x: &[f32]) -> f32 {
    // SAFETY (each unsafe arm): `simd` detected the features the kernel is compiled for.
    match (format, simd()) {
        #[cfg(target_arch = "x86_64")]
        (Format::Q8_0, Simd::Avx512) => unsafe { dot_q8_avx512(row, x) },
        #[cfg(target_arch = "x86_64")]
        (Format::Q8_0, Simd::Avx2) => unsafe { dot_q8_avx2(row, x) },
        (Format::Q8_0, _) => dot_q8_portable(row, x),
        #[cfg(target_arch = "x86_64")]
        (Format::F16, Simd::Avx512) => unsafe { dot_f16_avx512(row, x) },
        #[cfg(target_arch = "x86_64")]
        (Format::F16, Simd::Avx2) => unsafe { dot_f16_avx2(row, x) },
        (Format::F16, _) => dot_f16_portable(row, x),
    }
}

/// 16 halves widened per instruction, two running sums.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dot_f16_avx512(row: &[u8], x: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let (w, xp, n) = (row.as_ptr() as *const u16, x.as_ptr(), x.len());
    let (mut even, mut odd) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    let mut i = 0;
    while i + 32 <= n {
        even = _mm512_fmadd_ps(
            _mm512_cvtph_ps(_mm256_loadu_si256(w.add(i) as *const __m256i)),
            _mm512_loadu_ps(xp.add(i)),
            even,
        );
        odd = _mm512_fmadd_ps(
            _mm512_cvtph_ps(_mm256_loadu_si256(w.add(i + 16) as *const __m256i)),
            _mm512_loadu_ps(xp.add(i + 16)),
            odd,
        );
        i += 32;
    }
    _mm512_reduce_add_ps(_mm512_add_ps(even, odd)) + dot_f16_portable(&row[2 * i..], &x[i..])
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_f16_avx2(row: &[u8], x: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let (w, xp, n) = (row.as_ptr() as *const u16, x.as_ptr(), x.len());
    let mut total = _mm256_setzero_ps();
    let mut i = 0;
    while i + 8 <= n {
        total = _mm256_fmadd_ps(
            _mm256_cvtph_ps(_mm_loadu_si128(w.add(i) as *const __m128i)),
            _mm256_loadu_ps(xp.add(i)),
            total,
        );
        i += 8;
    }
    let sum = _mm_add_ps(_mm256_castps256_ps128(total), _mm256_extractf128_ps(total, 1));
    let sum = _mm_add_ps(sum, _mm_movehl_ps(sum, sum));
    _mm_cvtss_f32(_mm_add_ss(sum, _mm_shuffle_ps(sum, sum, 1))) + dot_f16_portable(&row[2 * i..], &x[i..])
}

fn dot_f16_portable(row: &[u8], x: &[f32]) -> f32 {
    row.chunks_exact(2).zip(x).map(|(b, &x)| f16_bits_to_f32(b[0], b[1]) * x).sum()
}

/// 16 lanes: each half block is widened i8 -> i32 -> f32 and multiplied
/// into a per-block sum, which is scaled once. Two running totals hide the
/// latency of the scaling multiply-add.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,f16c")]
unsafe fn dot_q8_avx512(blocks: &[u8], x: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    // Macros rather than closures, which would not inherit the target features.
    macro_rules! scaled_block {
        ($i:expr, $total:expr) => {{
            let b = blocks.as_ptr().add($i * BLOCK_BYTES);
            let xs = x.as_ptr().add($i * BLOCK);
            let d = _mm512_set1_ps(_mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(
                u16::from_le_bytes([*b, *b.add(1)]) as i32
            ))));
            let lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(b.add(2) as *const __m128i)));
            let hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(b.add(18) as *const __m128i)));
            let sum = _mm512_fmadd_ps(hi, _mm512_loadu_ps(xs.add(16)), _mm512_mul_ps(lo, _mm512_loadu_ps(xs)));
            _mm512_fmadd_ps(d, sum, $total)
        }};
    }
    let n = blocks.len() / BLOCK_BYTES;
    let (mut even, mut odd) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    let mut i = 0;
    while i + 1 < n {
        // A hint only: it never faults, even past the end of the mapping.
        _mm_prefetch::<_MM_HINT_T0>(blocks.as_ptr().wrapping_add(i * BLOCK_BYTES + PREFETCH_AHEAD) as *const i8);
        even = scaled_block!(i, even);
        odd = scaled_block!(i + 1, odd);
        i += 2;
    }
    if i < n {
        even = scaled_block!(i, even);
    }
    _mm512_reduce_add_ps(_mm512_add_ps(even, odd))
}

/// 8 lanes, four quarter blocks per block.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q8_avx2(blocks: &[u8], x: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let mut total = _mm256_setzero_ps();
    for (block, xs) in blocks.chunks_exact(BLOCK_BYTES).zip(x.chunks_exact(BLOCK)) {
        let d = _mm256_set1_ps(_mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(
            u16::from_le_bytes([block[0], block[1]]) as i32,
        ))));
        let mut acc = _mm256_setzero_ps();
        for j in 0..4 {
            let q = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(
                block.as_ptr().add(2 + 8 * j) as *const __m128i
            )));
            acc = _mm256_fmadd_ps(q, _mm256_loadu_ps(xs.as_ptr().add(8 * j)), acc);
        }
        total = _mm256_fmadd_ps(d, acc, total);
    }
    let sum = _mm_add_ps(_mm256_castps256_ps128(total), _mm256_extractf128_ps(total, 1));
    let sum = _mm_add_ps(sum, _mm_movehl_ps(sum, sum));
    _mm_cvtss_f32(_mm_add_ss(sum, _mm_shuffle_ps(sum, sum, 1)))
}

fn dot_q8_portable(blocks: &[u8], x: &[f32]) -> f32 {
    blocks
        .chunks_exact(BLOCK_BYTES)
        .zip(x.chunks_exact(BLOCK))
        .map(|(block, xs)| {
            f16_bits_to_f32(block[0], block[1])
                * block[2..].iter().zip(xs).map(|(&q, &x)| q as i8 as f32 * x).sum::<f32>()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::super::mapped::in_mapped_file;
    use super::*;
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::Device;

    /// A (rows, cols) matrix of GGML Q8_0 blocks, mapped as the model file's are.
    fn q8_matrix(bytes: &[u8], rows: usize, cols: usize) -> candle_core::Result<PackedMatrix> {
        PackedMatrix::mapped(Format::Q8_0, MappedBytes::new(in_mapped_file(0, bytes), 0..bytes.len())?, rows, cols)
    }

    #[test]
    fn matches_dense_matmul_on_dequantized_weights() {
        let dev = Device::Cpu;
        // The second matrix's rows span several row tiles in each thread's strip.
        for (rows, cols, tolerance) in [(200, 96, 1e-4), (600, 1024, 1e-3)] {
            let w = Tensor::randn(0f32, 1.0, (rows, cols), &dev).unwrap();
            let blocks = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
            let q = q8_matrix(&blocks.data().unwrap(), rows, cols).unwrap();
            let dense = q.dequantize(&dev).unwrap();
            let reference = blocks.dequantize(&dev).unwrap();
            assert_eq!(dense.to_vec2::<f32>().unwrap(), reference.to_vec2::<f32>().unwrap());
            for n in [1, 3, 17] {
                let x = Tensor::randn(0f32, 1.0, (1, n, cols), &dev).unwrap();
                let want = x.broadcast_matmul(&dense.t().unwrap()).unwrap();
                let got = q.forward(&x).unwrap();
                assert_eq!(got.dims(), &[1, n, rows]);
                let diff = (want - got).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
                let diff = diff.to_scalar::<f32>().unwrap();
                assert!(diff < tolerance, "{rows}x{cols}, n={n}: diff {diff}");
            }
        }
    }

    #[test]
    fn low_rank_terms_add_b_times_a_times_x() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (64, 96), &dev).unwrap();
        let q = q8_matrix(&QTensor::quantize(&w, GgmlDType::Q8_0).unwrap().data().unwrap(), 64, 96).unwrap();
        let (a, b) =
            (Tensor::randn(0f32, 0.1, (4, 96), &dev).unwrap(), Tensor::randn(0f32, 0.1, (64, 4), &dev).unwrap());
        let (a2, b2) =
            (Tensor::randn(0f32, 0.1, (2, 96), &dev).unwrap(), Tensor::randn(0f32, 0.1, (64, 2), &dev).unwrap());
        let (term, term2) = (LowRank::new(&a, &b).unwrap(), LowRank::new(&a2, &b2).unwrap());
        let x = Tensor::randn(0f32, 1.0, (1, 5, 96), &dev).unwrap();
        let lora = |a: &Tensor, b: &Tensor| {
            x.broadcast_matmul(&a.t().unwrap()).unwrap().broadcast_matmul(&b.t().unwrap()).unwrap()
        };
        let want = ((q.forward(&x).unwrap() + lora(&a, &b)).unwrap() + (lora(&a2, &b2) * 0.5).unwrap()).unwrap();
        let got = q.forward_with(&x, &[(&term, 1.0), (&term2, 0.5)]).unwrap();
        let diff =
            (want - got).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-4, "diff {diff}");
    }

    #[test]
    fn rejects_bytes_of_the_wrong_size() {
        assert!(q8_matrix(&[0u8; 33], 1, 32).is_err());
        assert!(q8_matrix(&[0u8; 34], 1, 30).is_err());
    }

    #[test]
    fn kernels_agree_on_every_path() {
        let dev = Device::Cpu;
        // Wide enough to go through the thread pool, odd block count for the AVX-512 tail.
        let (rows, cols) = (1024, 32 * 19);
        let w = Tensor::randn(0f32, 1.0, (rows, cols), &dev).unwrap();
        let q = q8_matrix(&QTensor::quantize(&w, GgmlDType::Q8_0).unwrap().data().unwrap(), rows, cols).unwrap();
        let dense = q.dequantize(&dev).unwrap();
        let x: Vec<f32> = Tensor::randn(0f32, 1.0, cols, &dev).unwrap().to_vec1().unwrap();
        let row = q.row(7);
        let want = dot_q8_portable(row, &x);
        assert!((dot(Format::Q8_0, row, &x) - want).abs() < 1e-3);
        #[cfg(target_arch = "x86_64")]
        if simd() != Simd::Portable {
            assert!((unsafe { dot_q8_avx2(row, &x) } - want).abs() < 1e-3);
        }
        for n in [1, 2, GROUP + 1, GEMM_MIN_ROWS - 1, GEMM_MIN_ROWS] {
            let xs = Tensor::randn(0f32, 1.0, (n, cols), &dev).unwrap();
            let want = xs.matmul(&dense.t().unwrap()).unwrap();
            let diff = (want - q.forward(&xs).unwrap())
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(diff < 1e-3, "n={n}: diff {diff}");
        }
    }

    #[test]
    fn mapped_blocks_are_used_in_place() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (8, 64), &dev).unwrap();
        let bytes = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap().data().unwrap().to_vec();
        let map = in_mapped_file(5, &bytes);
        let mapped =
            PackedMatrix::mapped(Format::Q8_0, MappedBytes::new(map.clone(), 5..5 + bytes.len()).unwrap(), 8, 64)
                .unwrap();
        assert_eq!(mapped.row(0).as_ptr(), map[5..].as_ptr(), "the rows are read from the mapping itself");
        let reference = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap().dequantize(&dev).unwrap();
        assert_eq!(mapped.dequantize(&dev).unwrap().to_vec2::<f32>().unwrap(), reference.to_vec2::<f32>().unwrap());
        assert!(MappedBytes::new(map.clone(), 6..6 + bytes.len()).is_err(), "a range past the end of the file");
        assert!(
            PackedMatrix::mapped(Format::Q8_0, MappedBytes::new(map, 5..4 + bytes.len()).unwrap(), 8, 64).is_err(),
            "a short range"
        );
    }

    #[test]
    fn f16_rows_match_the_dense_product_on_every_path() {
        let dev = Device::Cpu;
        // 1000 columns: not a multiple of 32, so the vector loops' tails run too.
        let (rows, cols) = (600, 1000);
        let w = Tensor::randn(0f32, 1.0, (rows, cols), &dev).unwrap().to_dtype(candle_core::DType::F16).unwrap();
        let bytes: Vec<u8> =
            w.flatten_all().unwrap().to_vec1::<half::f16>().unwrap().iter().flat_map(|h| h.to_le_bytes()).collect();
        let m = PackedMatrix::mapped(
            Format::F16,
            MappedBytes::new(in_mapped_file(0, &bytes), 0..bytes.len()).unwrap(),
            rows,
            cols,
        )
        .unwrap();
        let dense = w.to_dtype(candle_core::DType::F32).unwrap();
        assert_eq!(m.dequantize(&dev).unwrap().to_vec2::<f32>().unwrap(), dense.to_vec2::<f32>().unwrap());
        let x: Vec<f32> = Tensor::randn(0f32, 1.0, cols, &dev).unwrap().to_vec1().unwrap();
        let want = dot_f16_portable(m.row(3), &x);
        assert!((dot(Format::F16, m.row(3), &x) - want).abs() < 1e-3);
        #[cfg(target_arch = "x86_64")]
        if simd() != Simd::Portable {
            assert!((unsafe { dot_f16_avx2(m.row(3), &x) } - want).abs() < 1e-3);
        }
        for n in [1, 3, 2 * GROUP + 1, GEMM_MIN_ROWS + 1] {
            let xs = Tensor::randn(0f32, 1.0, (1, n, cols), &dev).unwrap();
            let want = xs.broadcast_matmul(&dense.t().unwrap()).unwrap();
            let diff = (want - m.forward(&xs).unwrap())
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(diff < 1e-3, "n={n}: diff {diff}");
        }
    }
}
