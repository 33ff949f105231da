//! `x · Wᵀ (+ b)` with a frozen weight `W`: the same product as `candle_nn::Linear`, whose
//! backward pass computes only the gradient of `x`. candle's matmul backward also computes the
//! gradient of the weight, which for LoRA training (the base weights frozen, the LM head
//! frozen) is a third of the compute of every projection, and a `vocab × hidden` matrix for
//! the head, thrown away.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};

use crate::dense::{f32_slice, product, with_f32, View};

/// The frozen product as a candle op on activations `[..., in]` → `[..., out]`.
struct FrozenMatmul {
    /// `[out, in]`.
    w: Tensor,
}

impl CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(_), DType::F32) = (storage, self.w.dtype()) else {
            // Other dtypes through candle's product (a copy of the activations).
            let x = match storage {
                CpuStorage::BF16(d) => Tensor::from_slice(d, layout.shape(), &candle_core::Device::Cpu)?,
                CpuStorage::F16(d) => Tensor::from_slice(d, layout.shape(), &candle_core::Device::Cpu)?,
                other => candle_core::bail!("frozen-matmul on {:?} activations", other.dtype()),
            };
            let y = x.broadcast_matmul(&self.w.t()?)?.flatten_all()?;
            let shape = Shape::from(out_dims(layout, self.w.dim(0)?));
            return Ok((
                match y.dtype() {
                    DType::BF16 => CpuStorage::BF16(y.to_vec1()?),
                    _ => CpuStorage::F16(y.to_vec1()?),
                },
                shape,
            ));
        };
        let x = f32_slice(storage, layout, "frozen-matmul activations")?;
        let (rows_out, cols) = self.w.dims2()?;
        let m = x.len() / cols;
        let mut y = vec![0f32; m * rows_out];
        with_f32(&self.w, "frozen-matmul weight", |w| {
            product(&mut y, (m, rows_out, cols), View::rows(x, cols), View::transposed(w, cols), 1.0, false, true);
        })?;
        Ok((CpuStorage::F32(y), Shape::from(out_dims(layout, rows_out))))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad_res.broadcast_matmul(&self.w)?))
    }
}

/// The activations' dimensions with the last replaced by `out`.
fn out_dims(layout: &Layout, out: usize) -> Vec<usize> {
    let mut dims = layout.shape().dims().to_vec();
    if let Some(last) = dims.last_mut() {
        *last = out;
    }
    dims
}

/// `linear.forward(x)`, through an op whose backward pass skips the weight's gradient when
/// `x` is being differentiated, the weight is no variable (frozen) and the device is the CPU.
pub fn forward(linear: &candle_nn::Linear, x: &Tensor) -> candle_core::Result<Tensor> {
    let w = linear.weight();
    let frozen = x.track_op() && !w.track_op() && !w.is_variable() && x.device().is_cpu() && x.dtype() == w.dtype();
    if !frozen {
        return candle_nn::Module::forward(linear, x);
    }
    let y = x.contiguous()?.apply_op1_arc(std::sync::Arc::new(Box::new(FrozenMatmul { w: w.clone() })))?;
    match linear.bias() {
        Some(b) => y.broadcast_add(b),
        None => Ok(y),
    }
}

/// The frozen weight `W` `[out, in]` of a LoRA-adapted projection: dense, or llama.cpp blocks
/// dequantized for each product and dropped after it (QLoRA).
#[derive(Clone)]
pub enum Frozen {
    /// A dense matrix (f32 for the fused op).
    Dense(Tensor),
    /// Q4_0/Q4_1/Q8_0 blocks.
    Quant(std::sync::Arc<crate::qmatmul::QuantMatrix>),
    /// NF4 (QLoRA's storage).
    Nf4(std::sync::Arc<crate::nf4::Nf4Matrix>),
}

impl Frozen {
    fn dims(&self) -> candle_core::Result<(usize, usize)> {
        match self {
            Self::Dense(w) => w.dims2(),
            Self::Quant(m) => Ok((m.rows(), m.cols())),
            Self::Nf4(m) => Ok((m.rows, m.cols)),
        }
    }

    /// `f` on the weights as f32, `[out, in]` row-major.
    fn with_f32<R>(&self, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
        match self {
            Self::Dense(w) => with_f32(w, "lora-matmul weight", f),
            Self::Quant(m) => Ok(f(&m.dequantize())),
            Self::Nf4(m) => Ok(f(&m.dequantize())),
        }
    }

    /// The weights as an f32 tensor (a dequantized copy for blocks).
    fn tensor(&self, device: &candle_core::Device) -> candle_core::Result<Tensor> {
        match self {
            Self::Dense(w) => Ok(w.clone()),
            Self::Quant(m) => Tensor::from_vec(m.dequantize(), (m.rows(), m.cols()), device),
            Self::Nf4(m) => Tensor::from_vec(m.dequantize(), (m.rows, m.cols), device),
        }
    }
}

/// `x · Ŵᵀ` for f32 activations over a frozen weight stored quantized (dequantized for the
/// product and dropped after it), differentiable in `x` (gradient `g · Ŵ`): QLoRA's products
/// without an adapter, llama.cpp blocks ([`crate::qmatmul::Products::Dequantized`]) and NF4.
struct FrozenProduct(Frozen);

impl CustomOp1 for FrozenProduct {
    fn name(&self) -> &'static str {
        "frozen-product"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_slice(storage, layout, "frozen-product activations")?;
        let (rows_out, cols) = self.0.dims()?;
        if layout.shape().dims().last() != Some(&cols) {
            candle_core::bail!("frozen-product: activations {:?}, weights with {cols} columns", layout.shape());
        }
        let m = x.len() / cols;
        let mut y = vec![0f32; m * rows_out];
        self.0.with_f32(|w| {
            product(&mut y, (m, rows_out, cols), View::rows(x, cols), View::transposed(w, cols), 1.0, false, true);
        })?;
        Ok((CpuStorage::F32(y), Shape::from(out_dims(layout, rows_out))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad_res.broadcast_matmul(&self.0.tensor(arg.device())?)?))
    }
}

/// `x · Ŵᵀ (+ bias)` over a frozen `w` (f32 activations, CPU), differentiable in `x`.
pub fn frozen_product(w: &Frozen, bias: Option<&Tensor>, x: &Tensor) -> candle_core::Result<Tensor> {
    let x = x.contiguous()?.to_dtype(DType::F32)?;
    let op = FrozenProduct(w.clone());
    let y = if x.track_op() { x.apply_op1_arc(std::sync::Arc::new(Box::new(op)))? } else { x.apply_op1_no_bwd(&op)? };
    match bias {
        Some(b) => y.broadcast_add(b),
        None => Ok(y),
    }
}

/// `x · Wᵀ + s · (x · Aᵀ) · Bᵀ` with `W` frozen and `A` `[r, in]`, `B` `[out, r]` trained: a
/// LoRA-adapted projection as one op, so that the update adds no intermediate tensors to the
/// graph (and no zeroed gradient buffers to the backward pass).
struct LoraMatmul {
    w: Frozen,
    scale: f64,
    /// Whether the input needs its gradient.
    input_grad: bool,
    /// Inverted-dropout mask on the update's input (shaped as the input), while training.
    mask: Option<Tensor>,
}

impl candle_core::CustomOp3 for LoraMatmul {
    fn name(&self) -> &'static str {
        "lora-matmul"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        a_s: &CpuStorage,
        al: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_slice(xs, xl, "lora-matmul x")?;
        let (a, b) = (f32_slice(a_s, al, "lora-matmul A")?, f32_slice(bs, bl, "lora-matmul B")?);
        let (out, cols) = self.w.dims()?;
        let r = a.len() / cols;
        let m = x.len() / cols;
        let mut y = vec![0f32; m * out];
        let mut xa = vec![0f32; m * r];
        self.w.with_f32(|w| {
            product(&mut y, (m, out, cols), View::rows(x, cols), View::transposed(w, cols), 1.0, false, true);
        })?;
        let dropped: Option<Vec<f32>> = match &self.mask {
            Some(mask) => {
                let mask: Vec<f32> = mask.flatten_all()?.to_vec1()?;
                Some(x.iter().zip(&mask).map(|(v, k)| v * k).collect())
            }
            None => None,
        };
        let x_update = dropped.as_deref().unwrap_or(x);
        product(&mut xa, (m, r, cols), View::rows(x_update, cols), View::transposed(a, cols), 1.0, false, true);
        product(&mut y, (m, out, r), View::rows(&xa, r), View::transposed(b, r), self.scale as f32, true, true);
        Ok((CpuStorage::F32(y), Shape::from(out_dims(xl, out))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // The arguments are graph nodes: detached, so that the gradients made here do not keep
        // the forward graph alive.
        let (x, a, b) = (&x.detach(), &a.detach(), &b.detach());
        let cols = x.dim(candle_core::D::Minus1)?;
        let out = grad.dim(candle_core::D::Minus1)?;
        let x2 = x.reshape(((), cols))?;
        let mask = self.mask.as_ref().map(|m| m.reshape(((), cols))).transpose()?;
        let x_update = match &mask {
            Some(m) => (&x2 * m)?,
            None => x2.clone(),
        };
        let g2 = grad.reshape(((), out))?;
        let gb = g2.matmul(b)?; // [m, r]
        let da = (gb.t()?.matmul(&x_update)? * self.scale)?; // [r, in]
        let xa = x_update.matmul(&a.t()?)?; // [m, r]
        let db = (g2.t()?.matmul(&xa)? * self.scale)?; // [out, r]
        let dx = if self.input_grad {
            let through_update = (gb.matmul(a)? * self.scale)?;
            let through_update = match &mask {
                Some(m) => (through_update * m)?,
                None => through_update,
            };
            Some((g2.matmul(&self.w.tensor(x.device())?)? + through_update)?.reshape(x.shape())?)
        } else {
            None
        };
        Ok((dx, Some(da), Some(db)))
    }
}

/// `x · Wᵀ (+ bias) + scale · ((x ∘ mask) · Aᵀ) · Bᵀ` for a frozen `w` and trained `a`, `b`
/// (f32, CPU), as one op; `mask` is an inverted-dropout mask shaped as `x` (training only).
/// `None` where it does not apply (other dtypes or devices, a trained `W`).
pub fn lora_forward(
    w: &Frozen,
    bias: Option<&Tensor>,
    a: &Tensor,
    b: &Tensor,
    scale: f64,
    x: &Tensor,
    mask: Option<Tensor>,
) -> candle_core::Result<Option<Tensor>> {
    let dense_f32 = match w {
        Frozen::Dense(w) => w.dtype() == DType::F32 && w.device().is_cpu() && !w.track_op() && !w.is_variable(),
        Frozen::Quant(_) | Frozen::Nf4(_) => true,
    };
    let all_f32 = [x, a, b].iter().all(|t| t.dtype() == DType::F32 && t.device().is_cpu());
    if !all_f32 || !dense_f32 || !(a.is_variable() || b.is_variable() || a.track_op() || b.track_op()) {
        return Ok(None);
    }
    let op = LoraMatmul { w: w.clone(), scale, input_grad: x.track_op() || x.is_variable(), mask };
    let y = x.contiguous()?.apply_op3(&a.contiguous()?, &b.contiguous()?, op)?;
    Ok(Some(match bias {
        Some(bias) => y.broadcast_add(bias)?,
        None => y,
    }))
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    #[test]
    fn the_input_gradient_equals_candles_and_no_weight_gradient_is_made() {
        let device = Device::Cpu;
        let w = Tensor::arange(0f32, 12.0, &device).unwrap().reshape((3, 4)).unwrap();
        let b = Tensor::new(&[0.5f32, -1.0, 2.0], &device).unwrap();
        let x =
            Var::from_tensor(&(Tensor::arange(0f32, 8.0, &device).unwrap().reshape((1, 2, 4)).unwrap() / 7.0).unwrap())
                .unwrap();
        let weights = Tensor::new(&[[1f32, 2.0, 3.0], [-1.0, 0.5, 0.25]], &device).unwrap().unsqueeze(0).unwrap();
        let linear = candle_nn::Linear::new(w.clone(), Some(b));
        let ours = forward(&linear, x.as_tensor()).unwrap();
        let plain = candle_nn::Module::forward(&linear, x.as_tensor()).unwrap();
        assert_eq!(ours.to_vec3::<f32>().unwrap(), plain.to_vec3::<f32>().unwrap());
        let g1 = (ours * &weights).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (plain * &weights).unwrap().sum_all().unwrap().backward().unwrap();
        let (a, c) = (g1.get(x.as_tensor()).unwrap(), g2.get(x.as_tensor()).unwrap());
        assert_eq!(a.to_vec3::<f32>().unwrap(), c.to_vec3::<f32>().unwrap());
        assert!(g1.get(&w).is_none(), "no gradient for the frozen weight");
    }

    #[test]
    fn the_fused_lora_product_and_its_gradients_equal_the_composed_ones() {
        let device = Device::Cpu;
        let t = |n: usize, shape: (usize, usize), seed: u64| {
            let data: Vec<f32> =
                (0..n as u64).map(|i| (((i * 2_654_435_761 + seed) % 1000) as f32 / 500.0) - 1.0).collect();
            Tensor::from_vec(data, shape, &device).unwrap()
        };
        let linear = candle_nn::Linear::new(
            t(24, (6, 4), 1),
            Some(Tensor::new(&[0.1f32, 0.2, 0.3, 0.4, 0.5, 0.6], &device).unwrap()),
        );
        let frozen = Frozen::Dense(linear.weight().clone());
        let a = Var::from_tensor(&t(8, (2, 4), 2)).unwrap();
        let b = Var::from_tensor(&t(12, (6, 2), 3)).unwrap();
        let x = Var::from_tensor(&t(20, (5, 4), 4).unsqueeze(0).unwrap()).unwrap();
        for mask in [
            None,
            Some(
                Tensor::from_vec(
                    (0..20).map(|i| if i % 3 == 0 { 0.0 } else { 1.5 }).collect::<Vec<f32>>(),
                    (1, 5, 4),
                    &device,
                )
                .unwrap(),
            ),
        ] {
            let ours =
                lora_forward(&frozen, linear.bias(), a.as_tensor(), b.as_tensor(), 1.5, x.as_tensor(), mask.clone())
                    .unwrap()
                    .unwrap();
            let xd = match &mask {
                Some(m) => (x.as_tensor() * m).unwrap(),
                None => x.as_tensor().clone(),
            };
            let update = (xd
                .broadcast_matmul(&a.as_tensor().t().unwrap())
                .unwrap()
                .broadcast_matmul(&b.as_tensor().t().unwrap())
                .unwrap()
                * 1.5)
                .unwrap();
            let theirs = (candle_nn::Module::forward(&linear, x.as_tensor()).unwrap() + update).unwrap();
            let w = t(30, (5, 6), 5).unsqueeze(0).unwrap();
            let diff = |p: &Tensor, q: &Tensor| {
                p.sub(q).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
            };
            assert!(diff(&ours, &theirs) < 1e-5);
            let g1 = (ours * &w).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (theirs * &w).unwrap().sum_all().unwrap().backward().unwrap();
            for v in [&a, &b, &x] {
                let (p, q) = (g1.get(v.as_tensor()).unwrap(), g2.get(v.as_tensor()).unwrap());
                assert!(diff(p, q) < 1e-4, "{}", diff(p, q));
                // The gradient holds no graph (it must not keep the forward pass alive).
                assert!(!p.track_op());
            }
        }
    }

    #[test]
    fn over_quantized_blocks_it_equals_the_product_over_the_dequantized_weights() {
        use crate::qmatmul::{BlockKind, QuantMatrix};
        let device = Device::Cpu;
        let values = |n: usize, seed: u64| -> Vec<f32> {
            (0..n as u64).map(|i| (((i * 2_654_435_761 + seed) % 1000) as f32 / 500.0) - 1.0).collect()
        };
        let (out, cols, r) = (5, 64, 3);
        for kind in [BlockKind::Q4_0, BlockKind::Q4_1, BlockKind::Q8_0] {
            let blocks = crate::quantize::quantize(kind, &values(out * cols, 7));
            let matrix = std::sync::Arc::new(QuantMatrix::from_ggml(kind, out, cols, &blocks).unwrap());
            let dense = Tensor::from_vec(matrix.dequantize(), (out, cols), &device).unwrap();
            let bias = Tensor::from_vec(values(out, 8), out, &device).unwrap();
            let a = Var::from_tensor(&Tensor::from_vec(values(r * cols, 2), (r, cols), &device).unwrap()).unwrap();
            let b = Var::from_tensor(&Tensor::from_vec(values(out * r, 3), (out, r), &device).unwrap()).unwrap();
            let x = Var::from_tensor(&Tensor::from_vec(values(4 * cols, 4), (1, 4, cols), &device).unwrap()).unwrap();
            let weights = Tensor::from_vec(values(4 * out, 5), (1, 4, out), &device).unwrap();
            let run = |w: Frozen| {
                let y = lora_forward(&w, Some(&bias), a.as_tensor(), b.as_tensor(), 0.5, x.as_tensor(), None)
                    .unwrap()
                    .expect("the fused op applies");
                let grads = (&y * &weights).unwrap().sum_all().unwrap().backward().unwrap();
                let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let mut all = flat(&y);
                for v in [&a, &b, &x] {
                    all.extend(flat(grads.get(v.as_tensor()).unwrap()));
                }
                all
            };
            let (quant, plain) = (run(Frozen::Quant(matrix)), run(Frozen::Dense(dense)));
            assert_eq!(quant, plain, "{kind:?}: same products over the same f32 weights");
            if kind == BlockKind::Q4_0 {
                let nf4 =
                    std::sync::Arc::new(crate::nf4::Nf4Matrix::quantize(out, cols, &values(out * cols, 7)).unwrap());
                let dense = Tensor::from_vec(nf4.dequantize(), (out, cols), &device).unwrap();
                assert_eq!(run(Frozen::Nf4(nf4)), run(Frozen::Dense(dense)), "NF4");
            }
        }
    }
}
