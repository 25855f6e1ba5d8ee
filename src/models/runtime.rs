//! ONNX Runtime: loaded at run time from the shared library that
//! `upscaled models fetch` takes from the `onnxruntime` wheel (nothing is
//! downloaded at build time). One environment per process, one session per
//! model, kept for the life of the process. A `--features cuda` build loads
//! the GPU runtime instead when a GPU can run it (src/models/gpu.rs), and
//! otherwise says once why it runs on the CPU.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{Context, Result, anyhow, bail};
use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{RunOptions, Session};
use ort::value::TensorRef;

use super::gpu::{self, Device};
use super::tiled::TileSettings;

static ENVIRONMENT: OnceLock<std::result::Result<Environment, String>> = OnceLock::new();

/// The runtime library inside the models folder.
pub fn library_path(models_dir: &Path) -> PathBuf {
    models_dir.join("runtime/libonnxruntime.so")
}

/// Whether sessions register the CUDA execution provider: set once the GPU
/// runtime is loaded, cleared (for good) when a session could not use it.
static CUDA: AtomicBool = AtomicBool::new(false);

/// Where models run in this process (the CPU until a session has started).
pub fn device() -> Device {
    if CUDA.load(Ordering::Relaxed) {
        Device::Cuda
    } else {
        Device::Cpu
    }
}

/// The tiles to use on the device the models run on: larger on the GPU
/// ([`gpu::gpu_tile`]), as configured on the CPU.
pub fn device_tiles(tiles: TileSettings, scale: u32) -> TileSettings {
    match device() {
        Device::Cpu => tiles,
        Device::Cuda => TileSettings {
            tile: gpu::gpu_tile(tiles.tile, scale),
            ..tiles
        },
    }
}

/// The library to load: `ORT_DYLIB_PATH`, else the CPU runtime of the models folder.
fn cpu_library(models_dir: &Path) -> PathBuf {
    std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| library_path(models_dir))
}

/// A CPU build loads the CPU runtime.
#[cfg(not(feature = "cuda"))]
fn choose_library(models_dir: &Path) -> PathBuf {
    cpu_library(models_dir)
}

/// A CUDA build loads the GPU runtime when the driver sees a GPU and its
/// libraries open; otherwise the CPU runtime, with one warning saying why.
#[cfg(feature = "cuda")]
fn choose_library(models_dir: &Path) -> PathBuf {
    let cpu = cpu_library(models_dir);
    let pins = match gpu::GpuRuntime::builtin() {
        Ok(pins) => pins,
        Err(e) => {
            tracing::warn!("built with CUDA, but running on the CPU: {e:#}");
            return cpu;
        }
    };
    let mut choice = gpu::choose(&pins, models_dir, cpu.clone(), gpu::probe_driver());
    if choice.device == Device::Cuda
        && let Err(e) = gpu::preload(&pins, models_dir)
    {
        choice = gpu::Choice {
            library: cpu,
            device: Device::Cpu,
            warning: Some(format!("built with CUDA, but running on the CPU: {e:#}")),
        };
    }
    match &choice.warning {
        Some(warning) => tracing::warn!("{warning}"),
        None => tracing::info!(
            library = %choice.library.display(),
            "GPU runtime loaded (ONNX Runtime {} for CUDA {}): models run on the GPU",
            pins.version,
            pins.cuda
        ),
    }
    CUDA.store(choice.device == Device::Cuda, Ordering::Relaxed);
    choice.library
}

fn environment(models_dir: &Path) -> Result<&'static Environment> {
    let env = ENVIRONMENT.get_or_init(|| {
        let path = choose_library(models_dir);
        if !path.is_file() {
            return Err(format!(
                "the ONNX Runtime library is not installed ({} is missing); run `upscaled models fetch` \
                 to get it from the onnxruntime wheel, or point ORT_DYLIB_PATH at a libonnxruntime.so",
                path.display()
            ));
        }
        ort::init_from(&path)
            .map_err(|e| format!("loading ONNX Runtime from {}: {e}", path.display()))?
            .with_name("upscaled")
            .build()
            .map_err(|e| format!("starting ONNX Runtime: {e}"))
    });
    env.as_ref().map_err(|e| anyhow!("{e}"))
}

/// Execution providers compiled in with cargo features; ONNX Runtime falls back
/// to the CPU for anything they cannot run. CUDA only while [`device`] is the
/// GPU, and then it must register or the session is built again without it.
fn execution_providers() -> Vec<ort::ep::ExecutionProviderDispatch> {
    #[allow(unused_mut)]
    let mut eps = Vec::new();
    #[cfg(feature = "tensorrt")]
    eps.push(ort::ep::TensorRT::default().build());
    #[cfg(feature = "cuda")]
    if device() == Device::Cuda {
        eps.push(ort::ep::CUDA::default().build().error_on_failure());
    }
    #[cfg(feature = "coreml")]
    eps.push(ort::ep::CoreML::default().build());
    #[cfg(feature = "directml")]
    eps.push(ort::ep::DirectML::default().build());
    eps
}

/// A loaded model; `run` may be called from several threads (one at a time).
pub struct ModelSession {
    session: Mutex<Session>,
}

impl ModelSession {
    /// Runs the model on one NCHW float image, returning the output's shape and data.
    /// (The upscalers have one output; a model with more gives its first.)
    pub fn run(&self, shape: [usize; 4], data: &[f32]) -> Result<([usize; 4], Vec<f32>)> {
        self.run_all(shape, data)?
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("the model has no output"))
    }

    /// [`run`](Self::run), then hands the memory the runtime's arena grew
    /// for this run back to the system: the last tile of an image, so that
    /// what one large image needed is not kept while the daemon waits for
    /// the next. (The arena stays on: without it, every tile's activations
    /// are fresh pages, 1.2–2.1x slower; docs/benchmarks.md, "Memory".)
    pub fn run_and_release(
        &self,
        shape: [usize; 4],
        data: &[f32],
    ) -> Result<([usize; 4], Vec<f32>)> {
        let mut options = RunOptions::new()?;
        options.set("memory.enable_memory_arena_shrinkage", "cpu:0")?;
        let input = TensorRef::from_array_view((shape, data))?;
        let mut session = self
            .session
            .lock()
            .map_err(|_| anyhow!("model session poisoned"))?;
        let outputs = session.run_with_options(ort::inputs![input], &options)?;
        nchw(&outputs[0])
    }

    /// Like [`run`](Self::run), returning every output of the model in the
    /// graph's order.
    pub fn run_all(&self, shape: [usize; 4], data: &[f32]) -> Result<Vec<([usize; 4], Vec<f32>)>> {
        let input = TensorRef::from_array_view((shape, data))?;
        let mut session = self
            .session
            .lock()
            .map_err(|_| anyhow!("model session poisoned"))?;
        let outputs = session.run(ort::inputs![input])?;
        (0..outputs.len()).map(|i| nchw(&outputs[i])).collect()
    }
}

/// An output tensor as an NCHW shape and its data.
fn nchw(value: &ort::value::DynValue) -> Result<([usize; 4], Vec<f32>)> {
    let (out_shape, out) = value.try_extract_tensor::<f32>()?;
    let dims: Vec<usize> = out_shape.iter().map(|&d| d as usize).collect();
    let [n, c, h, w] = dims[..] else {
        bail!("model output has shape {dims:?}, expected NCHW");
    };
    Ok(([n, c, h, w], out.to_vec()))
}

type Cache = Mutex<HashMap<PathBuf, Arc<ModelSession>>>;
static SESSIONS: OnceLock<Cache> = OnceLock::new();

/// Loads (once) the ONNX model at `path` with `threads` intra-op threads.
pub fn session(models_dir: &Path, path: &Path, threads: usize) -> Result<Arc<ModelSession>> {
    session_with(models_dir, path, threads, true)
}

/// A session for a helper network (`what`, at `path`) that runs beside other
/// work (the face detector, another network): its idle threads sleep instead
/// of spinning, which on two cores would steal the time the other lane needs.
pub fn helper_session(
    models_dir: &Path,
    path: &Path,
    what: &str,
    threads: usize,
) -> Result<Arc<ModelSession>> {
    if !path.is_file() {
        bail!(
            "the {what} is not installed ({} is missing; run `upscaled models fetch`)",
            path.display()
        );
    }
    session_with(models_dir, path, threads, false)
}

fn session_with(
    models_dir: &Path,
    path: &Path,
    threads: usize,
    spinning: bool,
) -> Result<Arc<ModelSession>> {
    let env = environment(models_dir)?;
    let cache = SESSIONS.get_or_init(Default::default);
    let mut cache = cache
        .lock()
        .map_err(|_| anyhow!("session cache poisoned"))?;
    if let Some(found) = cache.get(path) {
        return Ok(found.clone());
    }
    let bytes = std::fs::read(path).with_context(|| {
        format!(
            "reading model {} (run `upscaled models fetch`)",
            path.display()
        )
    })?;
    let mut built = build_session(env, &bytes, threads, spinning);
    if device() == Device::Cuda
        && let Err(e) = &built
    {
        // The driver saw a GPU but this session cannot use it (out of
        // memory, a GPU too old for the runtime's kernels, a library
        // missing): the CPU from now on, said once.
        tracing::warn!(
            "built with CUDA, but running on the CPU: the GPU could not load model {}: {e:#}",
            path.display()
        );
        CUDA.store(false, Ordering::Relaxed);
        built = build_session(env, &bytes, threads, spinning);
    }
    let session = built.with_context(|| format!("loading model {}", path.display()))?;
    let session = Arc::new(ModelSession {
        session: Mutex::new(session),
    });
    cache.insert(path.to_path_buf(), session.clone());
    Ok(session)
}

fn build_session(
    env: &Environment,
    bytes: &[u8],
    threads: usize,
    spinning: bool,
) -> Result<Session> {
    Ok(Session::builder(env)?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(|e| anyhow!("{e}"))?
        .with_intra_threads(threads.max(1))
        .map_err(|e| anyhow!("{e}"))?
        .with_intra_op_spinning(spinning)
        .map_err(|e| anyhow!("{e}"))?
        // Memory patterns are planned per input shape and kept; tiles come in
        // several shapes, so they cost memory for little speed (docs/benchmarks.md).
        .with_memory_pattern(false)
        .map_err(|e| anyhow!("{e}"))?
        .with_execution_providers(execution_providers())
        .map_err(|e| anyhow!("{e}"))?
        .commit_from_memory(bytes)?)
}

/// All cores, the default for intra-op threads.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
