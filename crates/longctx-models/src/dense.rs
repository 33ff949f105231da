//! Dense f32 products on slices through gemm's kernels (AVX-512 where the CPU has it), for the
//! training kernels that work on raw buffers (frozen projections, attention blocks).

use candle_core::{CpuStorage, Layout, Storage, Tensor};

/// The contiguous f32 values of a CPU storage under `layout`; `what` names the operand in
/// errors.
pub(crate) fn f32_slice<'a>(storage: &'a CpuStorage, layout: &Layout, what: &str) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else { candle_core::bail!("{what}: f32 values expected") };
    let Some((a, b)) = layout.contiguous_offsets() else { candle_core::bail!("{what}: contiguous values expected") };
    Ok(&data[a..b])
}

/// `f` applied to the contiguous f32 values of a tensor on the CPU (e.g. a frozen weight held
/// by an op).
pub(crate) fn with_f32<R>(t: &Tensor, what: &str, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else { candle_core::bail!("{what}: a CPU tensor expected") };
    Ok(f(f32_slice(cpu, layout, what)?))
}

/// A matrix view of a slice: element `(i, j)` is `data[i · rs + j · cs]` (a transposed view
/// swaps the strides).
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    pub(crate) data: &'a [f32],
    pub(crate) rs: usize,
    pub(crate) cs: usize,
}

impl<'a> View<'a> {
    /// Row-major rows of `cols` values.
    pub(crate) fn rows(data: &'a [f32], cols: usize) -> Self {
        Self { data, rs: cols, cs: 1 }
    }

    /// The transpose of [`View::rows`]: element `(i, j)` is `data[j · cols + i]`.
    pub(crate) fn transposed(data: &'a [f32], cols: usize) -> Self {
        Self { data, rs: 1, cs: cols }
    }
}

fn stride(s: usize) -> isize {
    isize::try_from(s).expect("a stride fits in isize")
}

/// `c = alpha · a · b` with `a` `[m, k]`, `b` `[k, n]` and `c` row-major `[m, n]`, or
/// `c += alpha · a · b` when `accumulate`; on rayon's threads when `parallel`.
pub(crate) fn product(
    c: &mut [f32],
    (m, n, k): (usize, usize, usize),
    a: View<'_>,
    b: View<'_>,
    alpha: f32,
    accumulate: bool,
    parallel: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(c.len() >= m * n, "product: the output has {} values for [{m}, {n}]", c.len());
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(0.0);
        }
        return;
    }
    assert!(a.data.len() > (m - 1) * a.rs + (k - 1) * a.cs, "product: lhs out of bounds");
    assert!(b.data.len() > (k - 1) * b.rs + (n - 1) * b.cs, "product: rhs out of bounds");
    let threads = rayon::current_num_threads();
    let parallelism = if parallel && threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    // SAFETY: every element gemm reads or writes is within the slices (checked above), and `c`
    // is borrowed exclusively.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            stride(n),
            accumulate,
            a.data.as_ptr(),
            stride(a.cs),
            stride(a.rs),
            b.data.as_ptr(),
            stride(b.cs),
            stride(b.rs),
            1.0,
            alpha,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_of_views_equal_the_plain_sums() {
        let (m, n, k) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| i as f32 * 0.5 - 3.0).collect();
        let bt: Vec<f32> = (0..n * k).map(|i| (i % 5) as f32 - 1.5).collect(); // [n, k]
        let mut c = vec![1f32; m * n];
        product(&mut c, (m, n, k), View::rows(&a, k), View::transposed(&bt, k), 2.0, true, false);
        for i in 0..m {
            for j in 0..n {
                let want = 1.0 + 2.0 * (0..k).map(|t| a[i * k + t] * bt[j * k + t]).sum::<f32>();
                assert!((c[i * n + j] - want).abs() < 1e-5);
            }
        }
    }
}
