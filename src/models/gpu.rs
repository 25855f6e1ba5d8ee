//! The GPU runtime: ONNX Runtime with its CUDA execution provider and the
//! NVIDIA libraries that provider needs, fetched from pinned PyPI wheels
//! (`models/gpu-runtime.yaml`) into `<models>/runtime/cuda/`; the check a
//! `--features cuda` build makes at start to run on the GPU or fall back to the
//! CPU; and the tile size a GPU wants.
//!
//! Everything here is compiled in every build (so the pins are tested
//! everywhere); only `runtime.rs` acts on it, and only with `--features cuda`.

use std::collections::BTreeMap;
use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::fetch::{self, WheelPin};

pub const GPU_RUNTIME_YAML: &str = include_str!("../../models/gpu-runtime.yaml");

/// The pinned GPU runtime (`models/gpu-runtime.yaml`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuRuntime {
    /// ONNX Runtime's version (of the `onnxruntime-gpu` wheel).
    pub version: String,
    /// The CUDA version the wheel was built with.
    pub cuda: String,
    /// The only machine the wheels are for.
    pub arch: String,
    /// ONNX Runtime's library, as installed in the runtime folder.
    pub library: String,
    pub wheels: BTreeMap<String, GpuWheel>,
    /// Libraries opened before ONNX Runtime starts, dependencies first.
    pub preload: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuWheel {
    pub version: String,
    pub file: String,
    pub sha256: String,
    pub platform: String,
    /// Paths in the wheel of the shared libraries to install.
    pub members: Vec<String>,
}

/// The file name a wheel member is installed under (the folder is flat).
fn base_name(member: &str) -> &str {
    member.rsplit('/').next().unwrap_or(member)
}

impl GpuRuntime {
    /// The pins compiled into the binary.
    pub fn builtin() -> Result<Self> {
        Self::parse(GPU_RUNTIME_YAML).context("models/gpu-runtime.yaml")
    }

    /// Reads and checks pins: every fault at once, not the first.
    pub fn parse(yaml: &str) -> Result<Self> {
        let runtime: GpuRuntime = serde_yaml::from_str(yaml).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!("line {}, column {}: ", l.line(), l.column()))
                .unwrap_or_default();
            anyhow::anyhow!("{at}{e}")
        })?;
        let mut faults = Vec::new();
        let installed: Vec<&str> = runtime.installed_names().collect();
        for (name, wheel) in &runtime.wheels {
            let hex = wheel.sha256.len() == 64
                && wheel
                    .sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if !hex {
                faults.push(format!(
                    "wheel {name}: sha256 must be 64 lowercase hex digits"
                ));
            }
            let prefix = format!("{}-{}-", name.replace('-', "_"), wheel.version);
            if !wheel.file.starts_with(&prefix) || !wheel.file.ends_with(".whl") {
                faults.push(format!(
                    "wheel {name}: file {} is not a {prefix}*.whl",
                    wheel.file
                ));
            }
            if !wheel.file.contains(&wheel.platform) {
                faults.push(format!(
                    "wheel {name}: platform {} is not in the file name {}",
                    wheel.platform, wheel.file
                ));
            }
            if wheel.members.is_empty() {
                faults.push(format!("wheel {name}: no members to install"));
            }
        }
        for wanted in runtime.preload.iter().chain([&runtime.library]) {
            if !installed.contains(&wanted.as_str()) {
                faults.push(format!("{wanted} is not a member of any wheel"));
            }
        }
        let mut sorted = installed.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != installed.len() {
            faults.push("two wheels install a library of the same name".into());
        }
        if !faults.is_empty() {
            bail!("{}", faults.join("; "));
        }
        Ok(runtime)
    }

    /// The file names installed in the runtime folder.
    fn installed_names(&self) -> impl Iterator<Item = &str> {
        self.wheels
            .values()
            .flat_map(|w| w.members.iter().map(|m| base_name(m)))
    }

    /// What the runtime folder's manifest says once every file is in place:
    /// a different pin means a different manifest, hence a new install.
    fn manifest(&self) -> String {
        self.wheels
            .iter()
            .map(|(name, w)| format!("{name} {} {}\n", w.version, w.sha256))
            .collect()
    }
}

/// Where the GPU runtime lives: `<models>/runtime/cuda/`.
pub fn runtime_dir(models_dir: &Path) -> PathBuf {
    models_dir.join("runtime/cuda")
}

fn manifest_path(models_dir: &Path) -> PathBuf {
    runtime_dir(models_dir).join("manifest.txt")
}

/// ONNX Runtime's GPU library in the runtime folder.
pub fn library_path(runtime: &GpuRuntime, models_dir: &Path) -> PathBuf {
    runtime_dir(models_dir).join(&runtime.library)
}

/// Whether every file of these pins is installed (the manifest is written last).
pub fn installed(runtime: &GpuRuntime, models_dir: &Path) -> bool {
    std::fs::read_to_string(manifest_path(models_dir)).is_ok_and(|m| m == runtime.manifest())
}

/// Fetches (once; a second run reads nothing but the manifest) the pinned
/// wheels into the download cache and installs their libraries into
/// `<models>/runtime/cuda/`. Returns that folder.
pub fn fetch(runtime: &GpuRuntime, models_dir: &Path, cache: &Path) -> Result<PathBuf> {
    let dir = runtime_dir(models_dir);
    if installed(runtime, models_dir) {
        return Ok(dir);
    }
    let arch = std::env::consts::ARCH;
    if arch != runtime.arch {
        bail!(
            "GPU runtime: the onnxruntime-gpu and NVIDIA wheels are pinned for {} only, not {arch}",
            runtime.arch
        );
    }
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("GPU runtime: creating {}", dir.display()))?;
    let manifest = manifest_path(models_dir);
    if manifest.exists() {
        std::fs::remove_file(&manifest)
            .with_context(|| format!("GPU runtime: removing the stale {}", manifest.display()))?;
    }
    for (name, wheel) in &runtime.wheels {
        let file = fetch::wheel(
            &WheelPin {
                name,
                version: &wheel.version,
                sha256: Some(&wheel.sha256),
                platform: Some(&wheel.platform),
            },
            cache,
        )
        .with_context(|| format!("GPU runtime: fetching {name}=={}", wheel.version))?;
        for member in &wheel.members {
            let dest = dir.join(base_name(member));
            fetch::extract_member(&file, member, &dest)
                .with_context(|| format!("GPU runtime: installing {name}'s {member}"))?;
        }
        tracing::info!(wheel = %name, version = %wheel.version, "installed GPU runtime libraries");
    }
    crate::durable::replace_file(&manifest, runtime.manifest().as_bytes())
        .with_context(|| format!("GPU runtime: cannot write {}", manifest.display()))?;
    Ok(dir)
}

/// Bytes the installed GPU runtime takes on disk (0 when absent).
pub fn installed_bytes(models_dir: &Path) -> u64 {
    std::fs::read_dir(runtime_dir(models_dir))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// What the NVIDIA driver reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Driver {
    /// The CUDA version the driver supports, as 1000 × major + 10 × minor.
    pub cuda_version: i32,
    pub devices: i32,
}

/// The lowest driver CUDA version the pinned runtime runs on (13.0: R580).
pub const MIN_DRIVER_CUDA: i32 = 13000;

fn dl_error() -> String {
    // SAFETY: dlerror returns null or a NUL-terminated message of this thread.
    let message = unsafe { libc::dlerror() };
    if message.is_null() {
        "unknown error".into()
    } else {
        // SAFETY: non-null, NUL-terminated (above).
        unsafe { CStr::from_ptr(message) }
            .to_string_lossy()
            .into_owned()
    }
}

/// Asks the NVIDIA driver (`libcuda.so.1`, installed with the driver, never
/// shipped by upscaled) for its CUDA version and number of GPUs. An error says
/// why there is no usable GPU.
pub fn probe_driver() -> Result<Driver, String> {
    type CuInit = unsafe extern "C" fn(u32) -> i32;
    type CuInt = unsafe extern "C" fn(*mut i32) -> i32;
    // SAFETY: a constant, NUL-terminated name; the handle is never closed, so
    // the functions looked up in it stay valid.
    let handle =
        unsafe { libc::dlopen(c"libcuda.so.1".as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if handle.is_null() {
        return Err(format!("no NVIDIA driver: {}", dl_error()));
    }
    let symbol = |name: &CStr| {
        // SAFETY: a valid handle and a NUL-terminated name.
        let found = unsafe { libc::dlsym(handle, name.as_ptr()) };
        if found.is_null() {
            Err(format!(
                "the NVIDIA driver has no {}",
                name.to_string_lossy()
            ))
        } else {
            Ok(found)
        }
    };
    // SAFETY: the driver API's documented signatures for these three symbols.
    let (init, version, count) = unsafe {
        (
            std::mem::transmute::<*mut libc::c_void, CuInit>(symbol(c"cuInit")?),
            std::mem::transmute::<*mut libc::c_void, CuInt>(symbol(c"cuDriverGetVersion")?),
            std::mem::transmute::<*mut libc::c_void, CuInt>(symbol(c"cuDeviceGetCount")?),
        )
    };
    let mut cuda_version = 0;
    // SAFETY: a pointer to a live i32.
    if unsafe { version(&mut cuda_version) } != 0 {
        return Err("the NVIDIA driver did not say its CUDA version".into());
    }
    // SAFETY: cuInit takes flags, which must be 0.
    let status = unsafe { init(0) };
    if status != 0 {
        // 100 is CUDA_ERROR_NO_DEVICE.
        let why = if status == 100 {
            "no CUDA-capable GPU is visible".to_string()
        } else {
            format!("the NVIDIA driver failed to start (cuInit error {status})")
        };
        return Err(why);
    }
    let mut devices = 0;
    // SAFETY: a pointer to a live i32, after a successful cuInit.
    if unsafe { count(&mut devices) } != 0 {
        return Err("the NVIDIA driver could not count its GPUs".into());
    }
    Ok(Driver {
        cuda_version,
        devices,
    })
}

/// Where models run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Cuda,
}

/// What a `--features cuda` build loads at start, and the one warning it logs
/// when that is not the GPU.
#[derive(Debug, PartialEq, Eq)]
pub struct Choice {
    pub library: PathBuf,
    pub device: Device,
    pub warning: Option<String>,
}

/// Decides between the GPU runtime and the CPU one. `cpu_library` is the CPU
/// runtime (or the user's `ORT_DYLIB_PATH`); `driver` is [`probe_driver`]'s
/// answer, passed in so that the decision can be tested without a GPU.
pub fn choose(
    runtime: &GpuRuntime,
    models_dir: &Path,
    cpu_library: PathBuf,
    driver: Result<Driver, String>,
) -> Choice {
    let gpu_library = library_path(runtime, models_dir);
    let on_cpu = |why: String| {
        // The GPU wheel's ONNX Runtime runs on the CPU too: use it when the
        // CPU runtime was never fetched.
        let library = if !cpu_library.is_file() && installed(runtime, models_dir) {
            gpu_library.clone()
        } else {
            cpu_library.clone()
        };
        Choice {
            library,
            device: Device::Cpu,
            warning: Some(format!("built with CUDA, but running on the CPU: {why}")),
        }
    };
    if !installed(runtime, models_dir) {
        return on_cpu(format!(
            "the GPU runtime is not installed ({} is missing); run `upscaled models fetch --gpu`",
            manifest_path(models_dir).display()
        ));
    }
    match driver {
        Err(why) => on_cpu(why),
        Ok(d) if d.cuda_version < MIN_DRIVER_CUDA => on_cpu(format!(
            "the NVIDIA driver supports CUDA {}.{}, the GPU runtime needs {} (a driver of the R580 series or newer)",
            d.cuda_version / 1000,
            d.cuda_version % 1000 / 10,
            runtime.cuda
        )),
        Ok(d) if d.devices < 1 => on_cpu("the NVIDIA driver sees no GPU".into()),
        Ok(_) => Choice {
            library: gpu_library,
            device: Device::Cuda,
            warning: None,
        },
    }
}

/// Opens the NVIDIA libraries of the runtime folder with `RTLD_GLOBAL`, in the
/// pinned order, so that ONNX Runtime's CUDA provider finds them by name when
/// it loads them, without LD_LIBRARY_PATH (which the loader reads only when
/// the process starts). The handles are kept for the life of the process.
pub fn preload(runtime: &GpuRuntime, models_dir: &Path) -> Result<()> {
    let dir = runtime_dir(models_dir);
    for name in &runtime.preload {
        let path = dir.join(name);
        let c_path = CString::new(path.as_os_str().as_encoded_bytes())
            .with_context(|| format!("GPU runtime: {} has a NUL in its path", path.display()))?;
        // SAFETY: a NUL-terminated path; the handle is deliberately never closed.
        let handle = unsafe { libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
        if handle.is_null() {
            bail!("GPU runtime: loading {}: {}", path.display(), dl_error());
        }
    }
    Ok(())
}

/// The input tile side for a model of `scale` on the GPU, where big tiles pay
/// (fewer launches, less overlap recomputed) and the limit is GPU memory:
/// tiles as large as keep the widest tensor a super-resolution network holds
/// at output resolution (64 float channels: Real-ESRGAN's upsampling tail)
/// within 1 GiB: 1024 px for 2x, 512 px for 4x. Never smaller than what was
/// configured; 0 (the whole image at once) stays 0.
pub fn gpu_tile(configured: u32, scale: u32) -> u32 {
    const BUDGET: u64 = 1 << 30;
    const BYTES_PER_OUTPUT_PIXEL: u64 = 64 * 4;
    if configured == 0 {
        return 0;
    }
    let s = u64::from(scale.max(1));
    let side = ((BUDGET / (BYTES_PER_OUTPUT_PIXEL * s * s)) as f64).sqrt() as u64;
    let side = (side / 64 * 64).clamp(256, 1024) as u32;
    configured.max(side)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_gpu_wheels_parse_and_each_has_a_sha256() {
        let rt = GpuRuntime::builtin().unwrap();
        // The ort crate is built for API level 31: ONNX Runtime 1.31 or later.
        let minor: u32 = rt.version.split('.').nth(1).unwrap().parse().unwrap();
        assert!(minor >= 31, "{}", rt.version);
        for name in [
            "onnxruntime-gpu",
            "nvidia-cuda-runtime",
            "nvidia-cublas",
            "nvidia-curand",
            "nvidia-cufft",
            "nvidia-cuda-nvrtc",
            "nvidia-cudnn-cu13",
        ] {
            let wheel = rt.wheels.get(name).unwrap_or_else(|| panic!("{name}"));
            assert_eq!(wheel.sha256.len(), 64, "{name}");
        }
        assert_eq!(rt.wheels["onnxruntime-gpu"].version, rt.version);
        // The CUDA provider's own dependencies come first, in dependency order.
        let at = |n: &str| rt.preload.iter().position(|p| p == n).unwrap();
        assert!(at("libcudart.so.13") < at("libcurand.so.10"));
        assert!(at("libcublasLt.so.13") < at("libcublas.so.13"));
        assert!(at("libnvJitLink.so.13") < at("libcufft.so.12"));
        assert!(rt.preload.iter().any(|p| p == "libcudnn.so.9"));
    }

    #[test]
    fn faulty_pins_are_all_reported() {
        let good = GPU_RUNTIME_YAML;
        let bad = good
            .replace(
                "e26c475fe361b2015f45b4b824bd13f0bb20204e59b62814e6f0acd5f3d491a6",
                "e26c",
            )
            .replace("  - libcudnn.so.9\n", "  - libcudnn.so.8\n");
        let err = GpuRuntime::parse(&bad).unwrap_err().to_string();
        assert!(err.contains("wheel onnxruntime-gpu: sha256"), "{err}");
        assert!(err.contains("libcudnn.so.8 is not a member"), "{err}");
        let unknown = format!("{good}colour: blue\n");
        assert!(GpuRuntime::parse(&unknown).is_err());
    }

    fn install_fake(rt: &GpuRuntime, models: &Path) {
        std::fs::create_dir_all(runtime_dir(models)).unwrap();
        std::fs::write(library_path(rt, models), b"elf").unwrap();
        std::fs::write(manifest_path(models), rt.manifest()).unwrap();
    }

    const GOOD_DRIVER: Driver = Driver {
        cuda_version: 13000,
        devices: 1,
    };

    #[test]
    fn a_cuda_build_falls_back_to_the_cpu_with_the_reason() {
        let rt = GpuRuntime::builtin().unwrap();
        let models = tempfile::tempdir().unwrap();
        let cpu = models.path().join("runtime/libonnxruntime.so");
        // Nothing fetched: the CPU, and how to get the GPU runtime.
        let c = choose(&rt, models.path(), cpu.clone(), Ok(GOOD_DRIVER));
        assert_eq!(c.device, Device::Cpu);
        assert!(c.warning.unwrap().contains("models fetch --gpu"));
        install_fake(&rt, models.path());
        // No driver (this machine): the CPU, with the loader's reason; the GPU
        // wheel's runtime stands in for a CPU runtime that was never fetched.
        let c = choose(
            &rt,
            models.path(),
            cpu.clone(),
            Err("no NVIDIA driver: libcuda.so.1: cannot open".into()),
        );
        assert_eq!(c.device, Device::Cpu);
        assert_eq!(c.library, library_path(&rt, models.path()));
        assert!(c.warning.unwrap().contains("libcuda.so.1"));
        std::fs::create_dir_all(cpu.parent().unwrap()).unwrap();
        std::fs::write(&cpu, b"elf").unwrap();
        let old = Driver {
            cuda_version: 12040,
            ..GOOD_DRIVER
        };
        let c = choose(&rt, models.path(), cpu.clone(), Ok(old));
        assert_eq!((c.device, &c.library), (Device::Cpu, &cpu));
        assert!(c.warning.unwrap().contains("supports CUDA 12.4"));
        let none = Driver {
            devices: 0,
            ..GOOD_DRIVER
        };
        assert_eq!(
            choose(&rt, models.path(), cpu.clone(), Ok(none)).device,
            Device::Cpu
        );
        // A driver and a GPU: the GPU runtime, silently.
        let c = choose(&rt, models.path(), cpu.clone(), Ok(GOOD_DRIVER));
        assert_eq!(c.device, Device::Cuda);
        assert_eq!(c.library, library_path(&rt, models.path()));
        assert_eq!(c.warning, None);
        // Other pins (a new version): not installed any more.
        let mut newer = rt.clone();
        newer.wheels.get_mut("nvidia-cublas").unwrap().version = "13.11.0.1".into();
        assert_eq!(
            choose(&newer, models.path(), cpu, Ok(GOOD_DRIVER)).device,
            Device::Cpu
        );
    }

    #[test]
    fn preload_names_the_file_that_failed() {
        let rt = GpuRuntime::builtin().unwrap();
        let models = tempfile::tempdir().unwrap();
        install_fake(&rt, models.path());
        std::fs::write(
            runtime_dir(models.path()).join("libcudart.so.13"),
            b"not elf",
        )
        .unwrap();
        let err = preload(&rt, models.path()).unwrap_err().to_string();
        assert!(err.contains("libcudart.so.13"), "{err}");
    }

    #[test]
    fn gpu_tiles_follow_the_scale_and_never_shrink() {
        assert_eq!(gpu_tile(384, 4), 512);
        assert_eq!(gpu_tile(384, 2), 1024);
        assert_eq!(gpu_tile(384, 1), 1024);
        assert_eq!(gpu_tile(2048, 4), 2048);
        assert_eq!(gpu_tile(0, 4), 0);
    }
}
