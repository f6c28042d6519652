//! A BERT encoder (the architecture of sentence-transformers' MiniLM models and other
//! BERTs with absolute positions) run on the CPU over *packed* sequences.
//!
//! A batch is not padded to its longest input: the tokens of every input are laid end
//! to end in one `[tokens, hidden]` matrix, so the projections and the feed-forward
//! layers, which are nearly all of the work, multiply only real tokens. Only attention
//! looks at one input at a time (batched products per input and group of heads). That
//! is what llama.cpp does with a batch of embedding inputs, and it removes the cost of
//! padding entirely: a batch of 32 texts of 20 to 256 tokens costs what its tokens cost.
//!
//! The weights are read with candle's safetensors loader (any float dtype, converted to
//! f32) and every matrix product is candle's (its `gemm` kernels, on rayon's pool:
//! `RAYON_NUM_THREADS`). The rest runs as candle in-place ops written here, each one pass
//! over the product it follows, rows split across rayon's pool: bias plus activation;
//! bias plus residual plus LayerNorm; scaled softmax. (candle's own element-wise ops
//! would add a pass per step and wake its second, spinning thread pool beside rayon's,
//! which on a small machine steals the cores the products need.) The arithmetic is the
//! model's own: GELU through erf (to within 6 · 10⁻⁷), LayerNorm with the model's
//! epsilon, softmax in f32, then mean pooling over the input's tokens and L2
//! normalisation as sentence-transformers does.

use std::collections::HashMap;

use candle_core::{CpuStorage, DType, Device, InplaceOp1, InplaceOp2, Layout, Storage, Tensor};
use rayon::prelude::*;
use serde::Deserialize;

/// The fields of a Hugging Face `config.json` this encoder needs.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_position_type")]
    pub position_embedding_type: String,
}

impl BertConfig {
    /// Checks that this encoder can run the model; returns its activation.
    pub(crate) fn validate(&self) -> Result<Activation, String> {
        let activation = match self.hidden_act.as_str() {
            "gelu" => Activation::GeluErf,
            "gelu_new" | "gelu_pytorch_tanh" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            other => {
                return Err(format!(
                    "hidden_act {other:?} is not supported (gelu, gelu_new, gelu_pytorch_tanh and relu are)"
                ));
            }
        };
        if self.position_embedding_type != "absolute" {
            return Err(format!(
                "position_embedding_type {:?} is not supported (only absolute is)",
                self.position_embedding_type
            ));
        }
        let (hidden, heads) = (self.hidden_size, self.num_attention_heads);
        if hidden == 0 || heads == 0 || hidden % heads != 0 {
            return Err(format!(
                "hidden_size {hidden} is not a multiple of num_attention_heads {heads}"
            ));
        }
        if self.type_vocab_size == 0 || self.vocab_size == 0 || self.max_position_embeddings == 0 {
            return Err(
                "type_vocab_size, vocab_size and max_position_embeddings must be at least 1"
                    .to_owned(),
            );
        }
        Ok(activation)
    }
}

fn default_act() -> String {
    "gelu".to_owned()
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_position_type() -> String {
    "absolute".to_owned()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Activation {
    /// `x * Φ(x)` with the exact normal CDF (erf), as `hidden_act = "gelu"`.
    GeluErf,
    /// The tanh approximation (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
    Relu,
}

/// A weight matrix stored as `[in, out]` (rows are inputs), with its bias.
struct Linear {
    weight: Tensor,
    bias: Vec<f32>,
}

struct LayerNorm {
    weight: Vec<f32>,
    bias: Vec<f32>,
}

struct Layer {
    /// Query, key and value projections side by side: `[hidden, 3 * hidden]`.
    qkv: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    up: Linear,
    down: Linear,
    output_norm: LayerNorm,
}

/// The loaded encoder.
pub(crate) struct Bert {
    word: Vec<f32>,
    position: Vec<f32>,
    /// Token type 0's embedding (every input is one segment).
    token_type: Vec<f32>,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
    hidden: usize,
    heads: usize,
    vocab: usize,
    max_positions: usize,
    eps: f32,
    activation: Activation,
}

/// The named tensors of a checkpoint, with the prefix its names carry.
struct Weights {
    tensors: HashMap<String, Tensor>,
    prefix: &'static str,
}

impl Weights {
    fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, String> {
        let full = format!("{}{name}", self.prefix);
        let tensor = self
            .tensors
            .get(&full)
            .ok_or_else(|| format!("the tensor {full} is missing"))?;
        if tensor.dims() != shape {
            return Err(format!(
                "the tensor {full} has shape {:?}, the config implies {shape:?}",
                tensor.dims()
            ));
        }
        tensor
            .to_dtype(DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| format!("the tensor {full} does not read as floats: {e}"))
    }

    /// A `torch.nn.Linear` (`weight` is `[out, in]`), transposed to `[in, out]`.
    fn linear(&self, name: &str, inputs: usize, outputs: usize) -> Result<Linear, String> {
        let weight = self.get(&format!("{name}.weight"), &[outputs, inputs])?;
        let bias = self.get(&format!("{name}.bias"), &[outputs])?;
        linear(transpose(&weight, outputs, inputs), inputs, outputs, bias)
    }

    fn norm(&self, name: &str, size: usize) -> Result<LayerNorm, String> {
        Ok(LayerNorm {
            weight: self.get(&format!("{name}.weight"), &[size])?,
            bias: self.get(&format!("{name}.bias"), &[size])?,
        })
    }
}

fn linear(
    weight: Vec<f32>,
    inputs: usize,
    outputs: usize,
    bias: Vec<f32>,
) -> Result<Linear, String> {
    let weight = Tensor::from_vec(weight, (inputs, outputs), &Device::Cpu)
        .map_err(|e| format!("a {inputs}×{outputs} weight: {e}"))?;
    Ok(Linear { weight, bias })
}

/// `rows × cols` row-major → `cols × rows` row-major.
fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; m.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = m[r * cols + c];
        }
    }
    out
}

impl Bert {
    /// Builds the encoder from a checkpoint's tensors (names with or without the `bert.`
    /// prefix). The error names the missing or misshapen tensor, or the unsupported setting.
    pub(crate) fn new(
        config: &BertConfig,
        tensors: HashMap<String, Tensor>,
    ) -> Result<Self, String> {
        let activation = config.validate()?;
        let hidden = config.hidden_size;
        let heads = config.num_attention_heads;
        let prefix = if tensors.contains_key("embeddings.word_embeddings.weight") {
            ""
        } else {
            "bert."
        };
        let w = Weights { tensors, prefix };
        let inter = config.intermediate_size;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let base = format!("encoder.layer.{i}");
            // Query, key and value side by side: `[hidden, 3 * hidden]`.
            let mut weight = vec![0.0f32; hidden * 3 * hidden];
            let mut bias = Vec::with_capacity(3 * hidden);
            for (part, name) in ["query", "key", "value"].into_iter().enumerate() {
                let name = format!("{base}.attention.self.{name}");
                let m = w.get(&format!("{name}.weight"), &[hidden, hidden])?;
                for (out, row) in m.chunks_exact(hidden).enumerate() {
                    for (input, value) in row.iter().enumerate() {
                        weight[input * 3 * hidden + part * hidden + out] = *value;
                    }
                }
                bias.extend(w.get(&format!("{name}.bias"), &[hidden])?);
            }
            layers.push(Layer {
                qkv: linear(weight, hidden, 3 * hidden, bias)?,
                attention_out: w.linear(
                    &format!("{base}.attention.output.dense"),
                    hidden,
                    hidden,
                )?,
                attention_norm: w.norm(&format!("{base}.attention.output.LayerNorm"), hidden)?,
                up: w.linear(&format!("{base}.intermediate.dense"), hidden, inter)?,
                down: w.linear(&format!("{base}.output.dense"), inter, hidden)?,
                output_norm: w.norm(&format!("{base}.output.LayerNorm"), hidden)?,
            });
        }
        let token_types = w.get(
            "embeddings.token_type_embeddings.weight",
            &[config.type_vocab_size, hidden],
        )?;
        Ok(Self {
            word: w.get(
                "embeddings.word_embeddings.weight",
                &[config.vocab_size, hidden],
            )?,
            position: w.get(
                "embeddings.position_embeddings.weight",
                &[config.max_position_embeddings, hidden],
            )?,
            token_type: token_types[..hidden].to_vec(),
            embedding_norm: w.norm("embeddings.LayerNorm", hidden)?,
            layers,
            hidden,
            heads,
            vocab: config.vocab_size,
            max_positions: config.max_position_embeddings,
            eps: config.layer_norm_eps as f32,
            activation,
        })
    }

    /// Mean-pooled, L2-normalised sentence vectors of token id sequences (special tokens
    /// included, no padding), in input order.
    pub(crate) fn embed(&self, inputs: &[&[u32]]) -> Result<Vec<Vec<f32>>, String> {
        self.forward(inputs).map_err(|e| e.to_string())
    }

    fn forward(&self, inputs: &[&[u32]]) -> candle_core::Result<Vec<Vec<f32>>> {
        let h = self.hidden;
        let mut starts = Vec::with_capacity(inputs.len() + 1);
        let mut total = 0usize;
        for (i, ids) in inputs.iter().enumerate() {
            if ids.is_empty() {
                candle_core::bail!("input {i} has no tokens");
            }
            if ids.len() > self.max_positions {
                candle_core::bail!(
                    "input {i} has {} tokens, the model has {} positions",
                    ids.len(),
                    self.max_positions
                );
            }
            if let Some(bad) = ids.iter().find(|&&id| id as usize >= self.vocab) {
                candle_core::bail!(
                    "input {i} holds token id {bad}, outside the vocabulary of {}",
                    self.vocab
                );
            }
            starts.push(total);
            total += ids.len();
        }
        starts.push(total);
        if total == 0 {
            return Ok(Vec::new());
        }

        // Embeddings: word + position + token type 0, then LayerNorm.
        let tokens: Vec<(usize, u32)> = inputs
            .iter()
            .flat_map(|ids| ids.iter().copied().enumerate())
            .collect();
        let mut embedded = vec![0.0f32; total * h];
        embedded
            .par_chunks_mut(h)
            .zip(tokens)
            .for_each(|(row, (position, id))| {
                let word = &self.word[id as usize * h..][..h];
                let pos = &self.position[position * h..][..h];
                for (((out, w), p), t) in row.iter_mut().zip(word).zip(pos).zip(&self.token_type) {
                    *out = w + p + t;
                }
                layer_norm(row, &self.embedding_norm, self.eps);
            });
        let mut x = Tensor::from_vec(embedded, (total, h), &Device::Cpu)?;

        for layer in &self.layers {
            let qkv = x.matmul(&layer.qkv.weight)?;
            qkv.inplace_op1(&BiasActivation {
                bias: &layer.qkv.bias,
                activation: None,
            })?;
            let context = self.attention(&qkv, &starts)?;
            // x ← LayerNorm(x + context·Wo + bo)
            x = add_and_norm(
                &context,
                &layer.attention_out,
                &x,
                &layer.attention_norm,
                self.eps,
            )?;
            // x ← LayerNorm(x + act(x·Wup + bup)·Wdown + bdown)
            let inner = x.matmul(&layer.up.weight)?;
            inner.inplace_op1(&BiasActivation {
                bias: &layer.up.bias,
                activation: Some(self.activation),
            })?;
            x = add_and_norm(&inner, &layer.down, &x, &layer.output_norm, self.eps)?;
        }

        with_rows(&x, |rows| {
            starts
                .windows(2)
                .map(|w| {
                    let mut mean = vec![0.0f32; h];
                    for row in rows[w[0] * h..w[1] * h].chunks_exact(h) {
                        for (m, v) in mean.iter_mut().zip(row) {
                            *m += v;
                        }
                    }
                    let count = (w[1] - w[0]) as f32;
                    for m in &mut mean {
                        *m /= count;
                    }
                    let norm = mean.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                    for m in &mut mean {
                        *m /= norm;
                    }
                    mean
                })
                .collect()
        })
    }

    /// Scaled dot-product attention of every input and head: `qkv` is `[tokens, 3 *
    /// hidden]`, the result `[tokens, hidden]`. One task per input and group of heads,
    /// on rayon's pool (enough groups to give every thread work when one input comes
    /// alone); each multiplies views of `qkv`, all its heads in one batched product.
    fn attention(&self, qkv: &Tensor, starts: &[usize]) -> candle_core::Result<Tensor> {
        let h = self.hidden;
        let heads = self.heads;
        let head = h / heads;
        let scale = 1.0 / (head as f32).sqrt();
        let per_task = heads.div_ceil(rayon::current_num_threads().clamp(1, heads));
        let tasks: Vec<(usize, usize, usize, usize)> = starts
            .windows(2)
            .flat_map(|w| {
                (0..heads)
                    .step_by(per_task)
                    .map(move |first| (w[0], w[1] - w[0], first, per_task.min(heads - first)))
            })
            .collect();
        let blocks = tasks
            .par_iter()
            .map(|&(start, len, first, count)| {
                // [len, 3, heads, head] → [count, len, head] views of Q, K and V.
                let rows = qkv
                    .narrow(0, start, len)?
                    .reshape((len, 3, heads, head))?
                    .narrow(2, first, count)?;
                let q = rows.narrow(1, 0, 1)?.squeeze(1)?.transpose(0, 1)?;
                let k = rows.narrow(1, 1, 1)?.squeeze(1)?.transpose(0, 1)?;
                let v = rows.narrow(1, 2, 1)?.squeeze(1)?.transpose(0, 1)?;
                let scores = q.matmul(&k.t()?)?;
                scores.inplace_op1(&ScaledSoftmax { scale })?;
                scores.matmul(&v)?.flatten_all()?.to_vec1::<f32>()
            })
            .collect::<candle_core::Result<Vec<Vec<f32>>>>()?;
        let total = *starts.last().unwrap_or(&0);
        let mut context = vec![0.0f32; total * h];
        for (&(start, len, first, _), block) in tasks.iter().zip(blocks) {
            // block is [count, len, head].
            for (j, per_head) in block.chunks_exact(len * head).enumerate() {
                for (i, values) in per_head.chunks_exact(head).enumerate() {
                    context[(start + i) * h + (first + j) * head..][..head].copy_from_slice(values);
                }
            }
        }
        Tensor::from_vec(context, (total, h), &Device::Cpu)
    }
}

/// `LayerNorm(residual + input·W + b)`, computed in the product's own buffer.
fn add_and_norm(
    input: &Tensor,
    linear: &Linear,
    residual: &Tensor,
    norm: &LayerNorm,
    eps: f32,
) -> candle_core::Result<Tensor> {
    let out = input.matmul(&linear.weight)?;
    out.inplace_op2(
        residual,
        &BiasResidualNorm {
            bias: &linear.bias,
            norm,
            eps,
        },
    )?;
    Ok(out)
}

/// Runs `f` on the f32 elements of a contiguous CPU tensor.
fn with_rows<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("the encoder runs on the CPU only");
    };
    let (from, to) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("a non-contiguous activation".to_owned()))?;
    Ok(f(&cpu.as_slice::<f32>()?[from..to]))
}

/// The f32 rows of a contiguous 2-D (or more) CPU tensor, for an in-place op.
fn rows_mut<'a>(
    name: &str,
    storage: &'a mut CpuStorage,
    layout: &Layout,
) -> candle_core::Result<(&'a mut [f32], usize)> {
    let width = *layout.dims().last().unwrap_or(&0);
    let (CpuStorage::F32(data), Some((from, to))) = (storage, layout.contiguous_offsets()) else {
        candle_core::bail!("{name}: wants a contiguous f32 tensor");
    };
    if width == 0 {
        candle_core::bail!("{name}: wants rows of at least one element");
    }
    Ok((&mut data[from..to], width))
}

/// `y ← act(y + bias)` row by row (`activation: None` adds the bias only).
struct BiasActivation<'a> {
    bias: &'a [f32],
    activation: Option<Activation>,
}

impl InplaceOp1 for BiasActivation<'_> {
    fn name(&self) -> &'static str {
        "bias-activation"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let (data, width) = rows_mut(self.name(), storage, layout)?;
        if width != self.bias.len() {
            candle_core::bail!("bias of {} for rows of {width}", self.bias.len());
        }
        data.par_chunks_mut(width).for_each(|row| {
            for (v, b) in row.iter_mut().zip(self.bias) {
                *v += b;
            }
            if let Some(activation) = self.activation {
                activate(row, activation);
            }
        });
        Ok(())
    }
}

/// `y ← LayerNorm(y + bias + residual)` row by row.
struct BiasResidualNorm<'a> {
    bias: &'a [f32],
    norm: &'a LayerNorm,
    eps: f32,
}

impl InplaceOp2 for BiasResidualNorm<'_> {
    fn name(&self) -> &'static str {
        "bias-residual-layernorm"
    }

    fn cpu_fwd(
        &self,
        storage: &mut CpuStorage,
        layout: &Layout,
        residual: &CpuStorage,
        residual_layout: &Layout,
    ) -> candle_core::Result<()> {
        let (data, width) = rows_mut(self.name(), storage, layout)?;
        let Some((from, to)) = residual_layout.contiguous_offsets() else {
            candle_core::bail!("{}: a non-contiguous residual", self.name());
        };
        let residual = &residual.as_slice::<f32>()?[from..to];
        if width != self.bias.len() || residual.len() != data.len() {
            candle_core::bail!("{}: shapes differ", self.name());
        }
        data.par_chunks_mut(width)
            .zip(residual.par_chunks(width))
            .for_each(|(row, skip)| {
                for ((v, b), r) in row.iter_mut().zip(self.bias).zip(skip) {
                    *v += b + r;
                }
                layer_norm(row, self.norm, self.eps);
            });
        Ok(())
    }
}

/// `y ← softmax(scale · y)` along each row.
struct ScaledSoftmax {
    scale: f32,
}

impl InplaceOp1 for ScaledSoftmax {
    fn name(&self) -> &'static str {
        "scaled-softmax"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let (data, width) = rows_mut(self.name(), storage, layout)?;
        for row in data.chunks_exact_mut(width) {
            // Separate passes, so that each one vectorises.
            let max = lanes(row, f32::NEG_INFINITY, f32::max);
            for v in row.iter_mut() {
                *v = exp((*v - max) * self.scale);
            }
            let inv = 1.0 / lanes(row, 0.0, |a, b| a + b);
            for v in row.iter_mut() {
                *v *= inv;
            }
        }
        Ok(())
    }
}

/// Folds `values` with `f` over eight interleaved accumulators, then folds those: a
/// reduction the compiler can vectorise (a single running f32 sum or max cannot be
/// reordered, so it stays scalar). The order differs from a left-to-right sum by rounding.
#[inline(always)]
fn lanes(values: &[f32], init: f32, f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [init; 8];
    let mut chunks = values.chunks_exact(8);
    for chunk in &mut chunks {
        for (a, v) in acc.iter_mut().zip(chunk) {
            *a = f(*a, *v);
        }
    }
    let mut out = chunks.remainder().iter().fold(init, |a, v| f(a, *v));
    for a in acc {
        out = f(out, a);
    }
    out
}

fn layer_norm(row: &mut [f32], norm: &LayerNorm, eps: f32) {
    let n = row.len() as f32;
    let mean = lanes(row, 0.0, |a, b| a + b) / n;
    let mut centred = [0.0f32; 8];
    let mut chunks = row.chunks_exact(8);
    for chunk in &mut chunks {
        for (a, v) in centred.iter_mut().zip(chunk) {
            *a += (v - mean) * (v - mean);
        }
    }
    let var = (chunks
        .remainder()
        .iter()
        .map(|v| (v - mean) * (v - mean))
        .sum::<f32>()
        + centred.iter().sum::<f32>())
        / n;
    let inv = 1.0 / (var + eps).sqrt();
    for ((v, w), b) in row.iter_mut().zip(&norm.weight).zip(&norm.bias) {
        *v = (*v - mean) * inv * w + b;
    }
}

fn activate(row: &mut [f32], activation: Activation) {
    match activation {
        Activation::GeluErf => {
            for v in row {
                *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
            }
        }
        Activation::GeluTanh => {
            const C: f32 = 0.797_884_6; // sqrt(2/π)
            for v in row {
                let x = *v;
                *v = 0.5 * x * (1.0 + (C * (x + 0.044_715 * x * x * x)).tanh());
            }
        }
        Activation::Relu => {
            for v in row {
                *v = v.max(0.0);
            }
        }
    }
}

/// `e^x` for f32 in straight-line arithmetic, so that loops over it vectorise (the C
/// library's `expf` is a call per element). Cephes' `expf` reduction and polynomial:
/// within 2 ulp of the true value over the whole range (tested against `f64::exp`);
/// below -87.3 it gives the smallest normal f32 (1.2 · 10⁻³⁸) rather than 0, and it
/// saturates above 88.4.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Round to nearest by adding and removing 1.5 · 2^23 (no call to `roundf`).
    const SHIFTER: f32 = 12_582_912.0;
    let x = x.clamp(-87.336_54, 88.376_26);
    let n = (x * LOG2E + SHIFTER) - SHIFTER;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let e = p * r * r + r + 1.0;
    // 2^n, built from its exponent bits; n is in [-126, 127] after the clamp.
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    e * scale
}

/// The error function, from Abramowitz and Stegun 7.1.26 (absolute error below
/// 1.5 · 10⁻⁷ in exact arithmetic, 6 · 10⁻⁷ in f32: tested against the C library's
/// `erff`), in straight-line arithmetic so that the GELU loop vectorises.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = ((((1.061_405_4 * t - 1.453_152) * t + 1.421_413_8) * t - 0.284_496_74) * t
        + 0.254_829_6)
        * t;
    (1.0 - poly * exp(-a * a)).copysign(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp_of_the_true_value() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = f64::from(x).exp();
            let got = f64::from(exp(x));
            let ulp = f64::from(f32::EPSILON) * want;
            worst = worst.max((got - want).abs() / ulp);
            x += 0.000_37;
        }
        assert!(worst <= 2.0, "worst error {worst} ulp");
        assert_eq!(exp(-200.0), exp(-87.336_54));
        assert!(exp(-200.0) < 1e-37);
        assert!(exp(200.0).is_finite());
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn erf_is_within_its_bound_of_the_c_library() {
        let mut worst = 0.0f32;
        let mut x = -6.0f32;
        while x < 6.0 {
            worst = worst.max((erf(x) - libm::erff(x)).abs());
            x += 0.000_13;
        }
        assert!(worst < 6e-7, "worst error {worst}");
        assert_eq!(erf(0.0), 0.0);
        assert_eq!(erf(-30.0), -1.0);
        assert_eq!(erf(30.0), 1.0);
    }

    #[test]
    fn lane_folds_agree_with_plain_folds() {
        for n in [0usize, 1, 7, 8, 9, 100, 384, 1000] {
            let values: Vec<f32> = (0..n)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
                .collect();
            let sum: f64 = values.iter().map(|v| f64::from(*v)).sum();
            assert!(
                (f64::from(lanes(&values, 0.0, |a, b| a + b)) - sum).abs() < 1e-3,
                "{n}"
            );
            let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(lanes(&values, f32::NEG_INFINITY, f32::max), max, "{n}");
        }
    }

    #[test]
    fn softmax_rows_sum_to_one_and_keep_their_order() {
        let mut scores = Tensor::from_vec(
            vec![
                1.0f32, 2.0, 3.0, -1e30, 0.0, 0.0, 0.0, 0.0, 50.0, -50.0, 0.0, 1.0,
            ],
            (3, 4),
            &Device::Cpu,
        )
        .unwrap();
        scores.inplace_op1(&ScaledSoftmax { scale: 0.5 }).unwrap();
        scores = scores.contiguous().unwrap();
        let rows = scores.to_vec2::<f32>().unwrap();
        for row in &rows {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6, "{row:?}");
        }
        let e = [0.5f64.exp(), 1f64.exp(), 1.5f64.exp()];
        let total: f64 = e.iter().sum();
        assert!(
            (f64::from(rows[0][2]) - e[2] / total).abs() < 1e-6,
            "{:?}",
            rows[0]
        );
        assert!(rows[0][3] < 1e-37, "{:?}", rows[0]);
        assert_eq!(rows[1], vec![0.25; 4]);
        assert!(rows[2][0] > 0.999_99 && rows[2][1] < 1e-10, "{:?}", rows[2]);
    }

    #[test]
    fn gelu_matches_its_definition() {
        let mut row: Vec<f32> = (-400..400).map(|i| i as f32 / 50.0).collect();
        let input = row.clone();
        activate(&mut row, Activation::GeluErf);
        for (x, y) in input.iter().zip(&row) {
            let want =
                0.5 * f64::from(*x) * (1.0 + f64::from(libm::erff(x / std::f32::consts::SQRT_2)));
            assert!(
                (f64::from(*y) - want).abs() < 1e-6,
                "gelu({x}) = {y}, want {want}"
            );
        }
    }
}
