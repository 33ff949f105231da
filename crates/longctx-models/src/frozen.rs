//! `x · Wᵀ (+ b)` with a frozen weight `W`: the same product as `candle_nn::Linear`, whose
//! backward pass computes only the gradient of `x`. candle's matmul backward also computes the
//! gradient of the weight, which for LoRA training (the base weights frozen, the LM head
//! frozen) is a third of the compute of every projection, and a `vocab × hidden` matrix for
//! the head, thrown away.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};

/// The frozen product as a candle op on activations `[..., in]` → `[..., out]`.
struct FrozenMatmul {
    /// `[out, in]`.
    w: Tensor,
}

fn to_tensor(storage: &CpuStorage, layout: &Layout) -> candle_core::Result<Tensor> {
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("frozen-matmul takes contiguous activations");
    };
    let shape = layout.shape().clone();
    let device = candle_core::Device::Cpu;
    match storage {
        CpuStorage::F32(d) => Tensor::from_slice(&d[start..end], shape, &device),
        CpuStorage::BF16(d) => Tensor::from_slice(&d[start..end], shape, &device),
        CpuStorage::F16(d) => Tensor::from_slice(&d[start..end], shape, &device),
        other => candle_core::bail!("frozen-matmul on {:?} activations", other.dtype()),
    }
}

fn storage_of(t: &Tensor) -> candle_core::Result<CpuStorage> {
    let t = t.contiguous()?;
    Ok(match t.dtype() {
        DType::F32 => CpuStorage::F32(t.flatten_all()?.to_vec1()?),
        DType::BF16 => CpuStorage::BF16(t.flatten_all()?.to_vec1()?),
        DType::F16 => CpuStorage::F16(t.flatten_all()?.to_vec1()?),
        other => candle_core::bail!("frozen-matmul on {other:?}"),
    })
}

impl CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = to_tensor(storage, layout)?;
        let y = candle_nn::Module::forward(&candle_nn::Linear::new(self.w.clone(), None), &x)?;
        Ok((storage_of(&y)?, y.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad_res.broadcast_matmul(&self.w)?))
    }
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
}
