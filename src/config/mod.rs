//! Configuration: raw YAML (`raw`) → a validated `Config` whose values cannot be
//! wrong. Validation collects every error before reporting, each with the file,
//! line, column and key path; `upscaled check-config` and the daemon share it.

pub mod name_template;
pub mod positions;
pub mod raw;

pub use name_template::NameTemplate;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::error::did_you_mean;
use crate::models::catalog::Catalog;
use crate::pipeline::decode::DecodeLimits;
use crate::pipeline::encode::OutputFormat;
use crate::pipeline::metadata::MetadataMode;
use crate::pipeline::{Fit, Target, parse_colour};
use crate::presets;
use crate::smart::route::{
    LevelOverrides, ModelChoice, NO_MODEL_HAS_NO_SCALE, QualityLevel, ROUTE_NAMES, ROUTED_SCALES,
    RouteOverrides, ScaleChoice,
};
use positions::Positions;
use raw::{RawConfig, RawFolder, RawTarget, Unknown};

/// One problem in a config file.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigIssue {
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub key: String,
    pub message: String,
}

/// All problems in a config file; `Display` prints one per line.
#[derive(Debug)]
pub struct ConfigError {
    pub file: PathBuf,
    pub issues: Vec<ConfigIssue>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.issues.len();
        writeln!(
            f,
            "{}: {n} error{} in the configuration",
            self.file.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for issue in &self.issues {
            write!(f, "{}", self.file.display())?;
            if let (Some(l), Some(c)) = (issue.line, issue.column) {
                write!(f, ":{l}:{c}")?;
            }
            if issue.key.is_empty() {
                writeln!(f, ": {}", issue.message)?;
            } else {
                writeln!(f, ": {}: {}", issue.key, issue.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnSuccess {
    Move,
    Keep,
    Delete,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchMode {
    Auto,
    Events,
    Poll,
}

#[derive(Clone, Debug)]
pub struct SmartOptions {
    pub scale: ScaleChoice,
    pub model: ModelChoice,
    pub quality: QualityLevel,
}

/// One output box of a folder, with what to write for it.
#[derive(Clone, Debug)]
pub struct OutputTarget {
    /// Used in the output name template as `{preset}`.
    pub name: String,
    pub target: Option<Target>,
    pub formats: Vec<OutputFormat>,
    pub quality: Option<u8>,
    pub max_bytes: Option<u64>,
    pub min_source_side: Option<u32>,
}

impl OutputTarget {
    /// `spec` with this target's box, formats and byte rules.
    pub fn apply_to(&self, spec: crate::pipeline::JobSpec) -> crate::pipeline::JobSpec {
        crate::pipeline::JobSpec {
            target: self.target.clone(),
            formats: self.formats.clone(),
            quality: self.quality,
            max_bytes: self.max_bytes,
            min_source_side: self.min_source_side,
            ..spec
        }
    }
}

#[derive(Clone, Debug)]
pub struct FolderRule {
    pub path: PathBuf,
    pub recursive: bool,
    pub include: Option<GlobSet>,
    pub exclude: Option<GlobSet>,
    pub output: PathBuf,
    pub targets: Vec<OutputTarget>,
    pub smart: SmartOptions,
    pub trim: bool,
    pub metadata: MetadataMode,
    /// Already [`NameTemplate::for_targets`] this folder's targets.
    pub name_template: NameTemplate,
    pub on_success: OnSuccess,
    pub done: PathBuf,
    pub failed: PathBuf,
    pub settle: Duration,
    pub watch: WatchMode,
    pub poll_interval: Duration,
    pub retention: Option<Duration>,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub models_dir: Option<PathBuf>,
    pub threads: usize,
    pub limits: DecodeLimits,
    pub seconds_per_file: u64,
    /// Peak memory for one image's upscale, in MiB (`limits.memory_mib`):
    /// model tiles shrink to fit it.
    pub memory_mib: u32,
    pub log_format: LogFormat,
    pub metrics: Option<std::net::SocketAddr>,
    /// `cluster:`: coordinate workers through NATS instead of running jobs here.
    pub cluster: Option<ClusterSettings>,
    pub folders: Vec<FolderRule>,
    /// The file's `routes:`, laid over config/routes.yaml.
    pub routes: std::sync::Arc<RouteOverrides>,
    /// Every model the file names, so they can be checked against the
    /// catalog (which lives in the models folder, not in this file).
    pub model_refs: Vec<ModelRef>,
}

/// Where the NATS server is and how to log in (the daemon's `cluster:`, or
/// a worker's command line).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NatsLogin {
    pub url: String,
    /// A NATS credentials file (JWT + NKey seed).
    pub credentials: Option<PathBuf>,
    /// A file holding the token (never the token in the config text).
    pub token_file: Option<PathBuf>,
    pub tls_ca: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

/// The daemon as a coordinator (docs/cluster.md).
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterSettings {
    pub login: NatsLogin,
    /// This coordinator's name: its results come back on a subject of it.
    pub name: String,
    /// The jobs stream; results, workers and bytes use names made from it.
    pub stream: String,
    /// The object store bucket for sources and outputs.
    pub bucket: String,
    /// Workers run inside the coordinator (0: only remote ones).
    pub workers: usize,
    /// Jobs published at once; the rest wait claimed in the hot folder.
    pub max_in_flight: usize,
    /// A job whose worker stops heartbeating for this long goes to another.
    pub ack_wait: Duration,
    /// Attempts before a file goes to failed/.
    pub max_deliver: u32,
}

/// This host's name (default coordinator and worker names).
pub fn host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// `text` with every character NATS would not take in a name made `_`.
pub fn safe_token(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Names NATS takes as one subject token, consumer or bucket name.
pub fn is_nats_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A model named in a config file, where, and the scale it must have.
#[derive(Clone, Debug)]
pub struct ModelRef {
    pub key: String,
    pub position: Option<positions::Position>,
    pub name: String,
    pub scale: Option<u32>,
}

impl Config {
    /// Reads and checks a daemon's config file ([`Config::parse`]).
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        let text = read(file)?;
        Config::parse(file, &text)
    }

    /// Checks every model the file names against `catalog`: it must exist,
    /// and a route's model must have the route's scale.
    pub fn check_models(&self, file: &Path, catalog: &Catalog) -> Result<(), ConfigError> {
        let mut issues = Vec::new();
        for r in &self.model_refs {
            let problem = match catalog.get(&r.name) {
                Err(e) => Some(format!("{e:#}")),
                Ok(entry) => r
                    .scale
                    .filter(|&s| s != entry.scale)
                    .map(|s| format!("{} is a {}x model, this route is {s}x", r.name, entry.scale)),
            };
            if let Some(message) = problem {
                issues.push(ConfigIssue {
                    line: r.position.map(|p| p.line),
                    column: r.position.map(|p| p.column),
                    key: r.key.clone(),
                    message,
                });
            }
        }
        if issues.is_empty() {
            Ok(())
        } else {
            Err(ConfigError {
                file: file.to_path_buf(),
                issues,
            })
        }
    }

    /// A daemon's config: `check-config`, start and reload. Besides every
    /// key's own check it refuses an empty file or one without folders,
    /// folders that overlap (the same hot folder twice, a recursive tree
    /// holding another hot folder, done/failed in a hot folder, outputs that
    /// meet) and a models folder that does not exist.
    pub fn parse(file: &Path, text: &str) -> Result<Config, ConfigError> {
        Config::parse_as(file, text, Use::Daemon)
    }

    /// A file read only for its `routes:` (`explain --config`): every key is
    /// checked, but it needs no folders and no models folder.
    pub fn parse_routes(file: &Path, text: &str) -> Result<Config, ConfigError> {
        Config::parse_as(file, text, Use::Routes)
    }

    /// [`Config::load`], for [`Config::parse_routes`].
    pub fn load_routes(file: &Path) -> Result<Config, ConfigError> {
        let text = read(file)?;
        Config::parse_routes(file, &text)
    }

    fn parse_as(file: &Path, text: &str, purpose: Use) -> Result<Config, ConfigError> {
        let fail = |issues| ConfigError {
            file: file.to_path_buf(),
            issues,
        };
        let doc: serde_yaml::Value = if text.trim().is_empty() {
            serde_yaml::Value::Null
        } else {
            serde_yaml::from_str(text).map_err(|e| {
                let loc = e.location();
                fail(vec![ConfigIssue {
                    line: loc.as_ref().map(|l| l.line()),
                    column: loc.as_ref().map(|l| l.column()),
                    key: String::new(),
                    message: e
                        .to_string()
                        .split(" at line ")
                        .next()
                        .unwrap_or_default()
                        .to_string(),
                }])
            })?
        };
        if doc.is_null() && purpose == Use::Daemon {
            // SIGHUP with an emptied file must not stop all watching.
            return Err(fail(vec![ConfigIssue {
                line: Some(1),
                column: Some(1),
                key: "folders".into(),
                message: "the file is empty (or only comments): there is no folder to watch".into(),
            }]));
        }
        let mut found = raw::Found::new();
        let raw = RawConfig::from_value(&doc, &mut found);
        let mut v = Validator {
            positions: Positions::of(text),
            issues: Vec::new(),
            model_refs: Vec::new(),
            purpose,
            // Absolute, so logs and moves name real paths, not `config/../x`.
            base: file
                .parent()
                .map(|p| {
                    if p.as_os_str().is_empty() {
                        Path::new(".")
                    } else {
                        p
                    }
                })
                .and_then(|p| std::fs::canonicalize(p).ok())
                .unwrap_or_default(),
        };
        for (key, message) in found {
            v.error(&key, message);
        }
        let config = v.config(raw);
        if v.issues.is_empty() {
            Ok(config)
        } else {
            v.issues.sort_by_key(|i| (i.line, i.column));
            Err(fail(v.issues))
        }
    }
}

/// The command line's target (`process`, `explain`): built by the same code,
/// with the same defaults and checks, as a folder's `targets:` item; each
/// error names the flag instead of a key (`--format: ...`).
pub fn command_line_target(t: RawTarget) -> Result<OutputTarget, String> {
    let mut v = Validator {
        positions: Positions::default(),
        issues: Vec::new(),
        model_refs: Vec::new(),
        purpose: Use::Routes,
        base: std::env::current_dir().unwrap_or_default(),
    };
    let target = v.target("", t, None);
    match target {
        Some(target) if v.issues.is_empty() => Ok(target),
        _ => Err(v
            .issues
            .iter()
            .map(|i| format!("{}: {}", flag_of_key(&i.key), i.message))
            .collect::<Vec<_>>()
            .join("\n")),
    }
}

/// `.formats[1]` -> `--format`, `.max_bytes` -> `--max-bytes`.
fn flag_of_key(key: &str) -> String {
    let name = key.trim_start_matches('.');
    let name = name.split('[').next().unwrap_or(name);
    let name = if name == "formats" { "format" } else { name };
    format!("--{}", name.replace('_', "-"))
}

fn read(file: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(file).map_err(|e| ConfigError {
        file: file.to_path_buf(),
        issues: vec![ConfigIssue {
            line: None,
            column: None,
            key: String::new(),
            message: format!("cannot read the file: {e}"),
        }],
    })
}

/// What a config file is read for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Use {
    Daemon,
    Routes,
}

/// A folder rule with its place in the file and its folders as compared.
struct Placed {
    index: usize,
    explicit_done: bool,
    explicit_failed: bool,
    path: PathBuf,
    output: PathBuf,
    done: PathBuf,
    failed: PathBuf,
    rule: FolderRule,
}

impl Placed {
    fn new(index: usize, rule: FolderRule, (explicit_done, explicit_failed): (bool, bool)) -> Self {
        Placed {
            index,
            explicit_done,
            explicit_failed,
            path: normalised(&rule.path),
            output: normalised(&rule.output),
            done: normalised(&rule.done),
            failed: normalised(&rule.failed),
            rule,
        }
    }
}

/// `path` (absolute and lexically clean) with symbolic links resolved in the
/// part that exists, so `/srv/a` and a link to it compare equal.
fn normalised(path: &Path) -> PathBuf {
    let mut rest = Vec::new();
    let mut head = path;
    loop {
        if let Ok(real) = std::fs::canonicalize(head) {
            return rest.iter().rev().fold(real, |p, part| p.join(part));
        }
        match (head.parent(), head.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                head = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
}

struct Validator {
    positions: Positions,
    issues: Vec<ConfigIssue>,
    model_refs: Vec<ModelRef>,
    purpose: Use,
    /// Relative paths in a config file are relative to the file's folder.
    base: PathBuf,
}

impl Validator {
    fn error(&mut self, key: &str, message: impl Into<String>) {
        let pos = self.positions.find(key);
        self.issues.push(ConfigIssue {
            line: pos.map(|p| p.line),
            column: pos.map(|p| p.column),
            key: key.to_string(),
            message: message.into(),
        });
    }

    /// An error about the file as a whole (a key that is missing): at the
    /// key when it is there, else at the start of the file.
    fn error_or_start(&mut self, key: &str, message: impl Into<String>) {
        let pos = self
            .positions
            .find(key)
            .unwrap_or(positions::Position { line: 1, column: 1 });
        self.issues.push(ConfigIssue {
            line: Some(pos.line),
            column: Some(pos.column),
            key: key.to_string(),
            message: message.into(),
        });
    }

    fn model_ref(&mut self, key: String, name: &str, scale: Option<u32>) {
        self.model_refs.push(ModelRef {
            position: self.positions.find(&key),
            key,
            name: name.to_string(),
            scale,
        });
    }

    /// `routes:`: known route names, routed scales and level names only.
    fn routes(
        &mut self,
        raw: std::collections::BTreeMap<String, std::collections::BTreeMap<u32, raw::RawLevels>>,
    ) -> RouteOverrides {
        let mut routes = RouteOverrides::new();
        for (route, scales) in raw {
            let key = format!("routes.{route}");
            if !ROUTE_NAMES.contains(&route.as_str()) {
                let hint = did_you_mean(&route, ROUTE_NAMES)
                    .map_or(String::new(), |k| format!("; did you mean `{k}`?"));
                self.error(
                    &key,
                    format!(
                        "unknown route `{route}`{hint} (routes: {})",
                        ROUTE_NAMES.join(", ")
                    ),
                );
                continue;
            }
            for (scale, levels) in scales {
                let key = format!("{key}.{scale}");
                if !ROUTED_SCALES.contains(&scale) {
                    self.error(&key, "Smart mode routes 2x and 4x only");
                    continue;
                }
                self.unknown_keys(&key, &levels.unknown, raw::LEVEL_KEYS);
                for (level, name) in [
                    ("fast", &levels.fast),
                    ("balanced", &levels.balanced),
                    ("best", &levels.best),
                ] {
                    if let Some(name) = name {
                        self.model_ref(format!("{key}.{level}"), name, Some(scale));
                    }
                }
                routes.entry(route.clone()).or_default().insert(
                    scale,
                    LevelOverrides {
                        fast: levels.fast,
                        balanced: levels.balanced,
                        best: levels.best,
                    },
                );
            }
        }
        routes
    }

    fn unknown_keys(&mut self, prefix: &str, unknown: &Unknown, known: &[&str]) {
        for key in unknown.keys() {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            let hint = did_you_mean(key, known)
                .map_or(String::new(), |k| format!("; did you mean `{k}`?"));
            self.error(&path, format!("unknown key `{key}`{hint}"));
        }
    }

    fn path(&self, text: &str) -> PathBuf {
        let p = PathBuf::from(text);
        let joined = if p.is_absolute() {
            p
        } else {
            self.base.join(p)
        };
        // Lexical clean-up of `.` and `..`; the folders may not exist yet.
        let mut clean = PathBuf::new();
        for part in joined.components() {
            match part {
                std::path::Component::CurDir => {}
                std::path::Component::ParentDir => {
                    clean.pop();
                }
                other => clean.push(other),
            }
        }
        clean
    }

    fn config(&mut self, raw: RawConfig) -> Config {
        self.unknown_keys("", &raw.unknown, raw::TOP_KEYS);
        let limits_raw = raw.limits.unwrap_or_default();
        self.unknown_keys("limits", &limits_raw.unknown, raw::LIMIT_KEYS);
        let log_format = match raw.log_format.as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                self.error("log_format", format!("must be text or json, not {other:?}"));
                LogFormat::Text
            }
        };
        let metrics =
            raw.metrics
                .as_deref()
                .and_then(|m| match m.parse::<std::net::SocketAddr>() {
                    Ok(addr) if addr.ip().is_loopback() => Some(addr),
                    Ok(_) => {
                        self.error(
                            "metrics",
                            "must be a loopback address such as 127.0.0.1:9464",
                        );
                        None
                    }
                    Err(e) => {
                        self.error("metrics", format!("not an address ({e})"));
                        None
                    }
                });
        if raw.threads == Some(0) {
            self.error("threads", "must be at least 1");
        }
        self.limits(&limits_raw);
        let cluster = raw.cluster.and_then(|c| self.cluster(c));
        if raw.no_folders && self.purpose == Use::Daemon {
            self.error_or_start(
                "folders",
                "there is no folder to watch: list at least one under `folders:`",
            );
        }
        let placed: Vec<Placed> = raw
            .folders
            .into_iter()
            .enumerate()
            .filter_map(|(i, f)| {
                let explicit = (f.done.is_some(), f.failed.is_some());
                let rule = self.folder(&format!("folders[{i}]"), f)?;
                Some(Placed::new(i, rule, explicit))
            })
            .collect();
        self.overlaps(&placed);
        let folders = placed.into_iter().map(|p| p.rule).collect();
        let routes = self.routes(raw.routes.unwrap_or_default());
        let models_dir = raw.models.map(|m| self.path(&m));
        if self.purpose == Use::Daemon {
            self.models_folder(models_dir.as_deref());
        }
        Config {
            routes: std::sync::Arc::new(routes),
            model_refs: std::mem::take(&mut self.model_refs),
            models_dir,
            threads: raw
                .threads
                .filter(|&t| t > 0)
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
            limits: limits_raw.decode_limits(),
            seconds_per_file: limits_raw.seconds_per_file.unwrap_or(600),
            memory_mib: limits_raw
                .memory_mib
                .unwrap_or(crate::models::tiled::DEFAULT_MEMORY_MIB),
            log_format,
            metrics,
            cluster,
            folders,
        }
    }

    fn cluster(&mut self, c: raw::RawCluster) -> Option<ClusterSettings> {
        self.unknown_keys("cluster", &c.unknown, raw::CLUSTER_KEYS);
        let tls = c.tls.unwrap_or_default();
        self.unknown_keys("cluster.tls", &tls.unknown, raw::TLS_KEYS);
        let mut ok = true;
        let url = match c.nats {
            Some(u) if nats_url_ok(&u) => u,
            Some(u) => {
                self.error(
                    "cluster.nats",
                    format!("must look like nats://host:4222 (or tls://host:4222), not {u:?}"),
                );
                ok = false;
                u
            }
            None => {
                self.error_or_start(
                    "cluster",
                    "cluster.nats is missing: the address of the NATS server, e.g. nats://127.0.0.1:4222",
                );
                ok = false;
                String::new()
            }
        };
        let mut file = |me: &mut Self, key: &str, v: Option<String>| {
            let path = v.map(|v| me.path(&v))?;
            if !path.is_file() {
                me.error(key, format!("{} is not a readable file", path.display()));
                ok = false;
            }
            Some(path)
        };
        let login = NatsLogin {
            url,
            credentials: file(self, "cluster.credentials", c.credentials),
            token_file: file(self, "cluster.token_file", c.token_file),
            tls_ca: file(self, "cluster.tls.ca", tls.ca),
            tls_cert: file(self, "cluster.tls.cert", tls.cert),
            tls_key: file(self, "cluster.tls.key", tls.key),
        };
        if login.credentials.is_some() && login.token_file.is_some() {
            self.error(
                "cluster.token_file",
                "give either credentials or token_file, not both",
            );
            ok = false;
        }
        if login.tls_cert.is_some() != login.tls_key.is_some() {
            self.error(
                "cluster.tls",
                "a client certificate needs both cert and key",
            );
            ok = false;
        }
        let mut token = |me: &mut Self, key: &str, v: Option<String>, default: String| {
            let v = v.unwrap_or(default);
            if !is_nats_token(&v) {
                me.error(
                    key,
                    format!("{v:?} must be 1 to 64 letters, digits, - or _"),
                );
                ok = false;
            }
            v
        };
        let name = token(self, "cluster.name", c.name, safe_token(&host_name()));
        let stream = token(self, "cluster.stream", c.stream, "UPSCALED".into());
        let bucket = token(self, "cluster.bucket", c.bucket, "upscaled".into());
        let ack_wait = self.duration(
            "cluster.ack_wait",
            c.ack_wait.as_deref(),
            Duration::from_secs(30),
        );
        if ack_wait < Duration::from_secs(1) {
            self.error("cluster.ack_wait", "must be at least 1s");
            ok = false;
        }
        for (key, zero) in [
            ("cluster.max_in_flight", c.max_in_flight == Some(0)),
            ("cluster.max_deliver", c.max_deliver == Some(0)),
        ] {
            if zero {
                self.error(key, "must be at least 1");
                ok = false;
            }
        }
        ok.then(|| ClusterSettings {
            login,
            name,
            stream,
            bucket,
            workers: c.workers.unwrap_or(1),
            max_in_flight: c.max_in_flight.unwrap_or(16),
            ack_wait,
            max_deliver: c.max_deliver.unwrap_or(5),
        })
    }

    /// A limit of 0 would refuse every image; `seconds_per_file: 0` is "off".
    fn limits(&mut self, l: &raw::RawLimits) {
        for (name, zero) in [
            ("max_side", l.max_side == Some(0)),
            ("max_alloc_mib", l.max_alloc_mib == Some(0)),
            ("max_file_mib", l.max_file_mib == Some(0)),
            ("memory_mib", l.memory_mib == Some(0)),
            (
                "max_megapixels",
                l.max_megapixels
                    .is_some_and(|m| !(m > 0.0 && m.is_finite())),
            ),
        ] {
            if zero {
                self.error(
                    &format!("limits.{name}"),
                    "must be more than 0 (0 would refuse every image; leave it out for the default)",
                );
            }
        }
    }

    /// The models folder must exist: without it every file would fail.
    /// `upscaled run` uses `models:` when set, else [`crate::models::models_dir`].
    fn models_folder(&mut self, configured: Option<&Path>) {
        let dir = configured.map_or_else(crate::models::models_dir, Path::to_path_buf);
        if dir.is_dir() {
            return;
        }
        let what = if dir.exists() {
            "is not a folder"
        } else {
            "does not exist"
        };
        let message = match configured {
            Some(_) => format!(
                "the models folder {} {what}; fix the path, or fetch the models into it \
                 with `UPSCALED_MODELS={} upscaled models fetch`",
                dir.display(),
                dir.display()
            ),
            None => format!(
                "`models` is not set, and the default models folder {} {what} (the \
                 default: $UPSCALED_MODELS, else ./models in a checkout, else the checkout \
                 the binary was built in, else /var/lib/upscaled/models, else \
                 $XDG_DATA_HOME/upscaled/models or ~/.local/share/upscaled/models; \
                 `upscaled models list` shows where it looked); set `models:` or run \
                 `upscaled models fetch`",
                dir.display()
            ),
        };
        self.error_or_start("models", message);
    }

    /// Folders that would take each other's files or overwrite each
    /// other's results. Paths are compared absolute, cleaned of `.`/`..`,
    /// with symbolic links resolved as far as the path exists.
    fn overlaps(&mut self, placed: &[Placed]) {
        for (n, a) in placed.iter().enumerate() {
            let ka = format!("folders[{}]", a.index);
            for b in &placed[..n] {
                let kb = self.named(b.index, None);
                if a.path == b.path {
                    self.error(
                        &format!("{ka}.path"),
                        format!(
                            "the same hot folder as {kb}: one rule per folder (several \
                             outputs from one drop go under `targets:`)"
                        ),
                    );
                }
                if a.output == b.output {
                    self.error(
                        &format!("{ka}.output"),
                        format!(
                            "the same output folder as {kb}: their results would \
                             overwrite each other"
                        ),
                    );
                }
            }
            let mut inside_output = false;
            for b in placed.iter().filter(|b| b.index != a.index) {
                if a.rule.recursive && b.path != a.path && b.path.starts_with(&a.path) {
                    let kb = self.named(b.index, Some(&b.rule.path));
                    self.error(
                        &format!("{ka}.recursive"),
                        format!(
                            "this folder's tree holds the hot folder of {kb}: both rules \
                             would take its files"
                        ),
                    );
                }
                if a.output != b.output && a.output.starts_with(&b.output) && !inside_output {
                    inside_output = true;
                    let kb = self.named(b.index, Some(&b.rule.output));
                    self.error(
                        &format!("{ka}.output"),
                        format!(
                            "inside the output folder of {kb}: their results would \
                             overwrite each other"
                        ),
                    );
                }
            }
            for (which, dir, explicit) in [
                ("done", &a.done, a.explicit_done),
                ("failed", &a.failed, a.explicit_failed),
            ] {
                let key = format!("{ka}.{which}");
                let shown = if which == "done" {
                    &a.rule.done
                } else {
                    &a.rule.failed
                };
                if *dir == a.path {
                    self.error(
                        &key,
                        format!(
                            "the {which} folder is the hot folder itself: its files would \
                             be taken again, forever"
                        ),
                    );
                }
                // The same hot folder twice is reported as that; the first
                // other hot folder that holds this one is enough.
                if let Some(b) = placed
                    .iter()
                    .find(|b| b.path != a.path && dir.starts_with(&b.path))
                {
                    let kb = self.named(b.index, Some(&b.rule.path));
                    let place = if *dir == b.path { "is" } else { "lies inside" };
                    let whose = if explicit {
                        format!("the {which} folder")
                    } else {
                        format!(
                            "the default {which} folder ({}; `{which}:` is not set)",
                            shown.display()
                        )
                    };
                    self.error(
                        &key,
                        format!(
                            "{whose} {place} the hot folder of {kb}: its files would be \
                             taken again; set `{which}:` outside every hot folder"
                        ),
                    );
                }
            }
            if a.output == a.path {
                self.error(
                    &format!("{ka}.output"),
                    "the output folder must differ from the hot folder",
                );
            }
        }
    }

    /// `folders[3] (/srv/x, line 12)`, to point at the other half of a conflict.
    fn named(&self, index: usize, path: Option<&Path>) -> String {
        let key = format!("folders[{index}]");
        let mut about: Vec<String> = path.map(|p| p.display().to_string()).into_iter().collect();
        if let Some(p) = self.positions.find(&key) {
            about.push(format!("line {}", p.line));
        }
        if about.is_empty() {
            key
        } else {
            format!("{key} ({})", about.join(", "))
        }
    }

    fn folder(&mut self, key: &str, f: RawFolder) -> Option<FolderRule> {
        self.unknown_keys(key, &f.unknown, raw::FOLDER_KEYS);
        let path = match &f.path {
            Some(p) => self.path(p),
            None => {
                self.error(key, "a folder needs `path`");
                return None;
            }
        };
        let output = match &f.output {
            Some(p) => self.path(p),
            None => {
                self.error(&format!("{key}.path"), "a folder needs `output`");
                path.join("out")
            }
        };
        let inline = RawTarget {
            preset: f.preset,
            name: None,
            width: f.width,
            height: f.height,
            fit: f.fit,
            background: f.background,
            fill: f.fill,
            formats: f.formats,
            quality: f.quality,
            max_bytes: f.max_bytes,
            allow_other_formats: f.allow_other_formats,
            unknown: Unknown::new(),
        };
        let targets: Vec<OutputTarget> = match f.targets {
            Some(list) => {
                if inline_has_target(&inline) {
                    self.error(
                        &format!("{key}.targets"),
                        "use either `targets:` or width/height/preset in the folder, not both",
                    );
                }
                if list.is_empty() {
                    self.error(&format!("{key}.targets"), "the list is empty");
                }
                if inline.max_bytes == Some(0) {
                    self.error(
                        &format!("{key}.max_bytes"),
                        "must be more than 0 (no file fits in 0 bytes)",
                    );
                }
                list.into_iter()
                    .enumerate()
                    .filter_map(|(i, t)| {
                        self.target(&format!("{key}.targets[{i}]"), t, Some(&inline))
                    })
                    .collect()
            }
            None => self.target(key, inline, None).into_iter().collect(),
        };
        let smart_raw = f.smart.unwrap_or_default();
        self.unknown_keys(&format!("{key}.smart"), &smart_raw.unknown, raw::SMART_KEYS);
        let model = smart_raw
            .model
            .as_deref()
            .map_or(ModelChoice::Auto, ModelChoice::parse);
        if let Some(name) = model.named() {
            self.model_ref(format!("{key}.smart.model"), name, None);
        }
        let scale = match &smart_raw.scale {
            None => ScaleChoice::Auto,
            Some(v) => {
                let text = match v {
                    serde_yaml::Value::Number(n) => n.to_string(),
                    serde_yaml::Value::String(s) => s.clone(),
                    other => format!("{other:?}"),
                };
                text.parse().unwrap_or_else(|e: String| {
                    self.error(&format!("{key}.smart.scale"), e);
                    ScaleChoice::Auto
                })
            }
        };
        if model == ModelChoice::NoModel && scale != ScaleChoice::Auto {
            self.error(
                &format!("{key}.smart.scale"),
                format!("with model: none {NO_MODEL_HAS_NO_SCALE}; remove scale"),
            );
        }
        let quality = match smart_raw.quality.as_deref().map(QualityLevel::parse) {
            None => QualityLevel::Balanced,
            Some(Ok(level)) => level,
            Some(Err(e)) => {
                self.error(&format!("{key}.smart.quality"), e);
                QualityLevel::Balanced
            }
        };
        let metadata = match f.metadata.as_deref() {
            None | Some("strip") => MetadataMode::Strip,
            Some("keep") => MetadataMode::Keep,
            Some(other) => {
                self.error(
                    &format!("{key}.metadata"),
                    format!("must be strip or keep, not {other:?}"),
                );
                MetadataMode::Strip
            }
        };
        let on_success = match f.on_success.as_deref() {
            None | Some("move") => OnSuccess::Move,
            Some("keep") => OnSuccess::Keep,
            Some("delete") => OnSuccess::Delete,
            Some(other) => {
                self.error(
                    &format!("{key}.on_success"),
                    format!("must be move, keep or delete, not {other:?}"),
                );
                OnSuccess::Move
            }
        };
        let watch = match f.watch.as_deref() {
            None | Some("auto") => WatchMode::Auto,
            Some("events") => WatchMode::Events,
            Some("poll") => WatchMode::Poll,
            Some(other) => {
                self.error(
                    &format!("{key}.watch"),
                    format!("must be auto, events or poll, not {other:?}"),
                );
                WatchMode::Auto
            }
        };
        let name_template = match f.name.as_deref().map(NameTemplate::parse) {
            None => NameTemplate::default(),
            Some(Ok(t)) => t,
            Some(Err(e)) => {
                self.error(&format!("{key}.name"), e);
                NameTemplate::default()
            }
        }
        .for_targets(targets.len());
        self.name_room(key, &name_template, &targets);
        let include = self.globs(&format!("{key}.include"), f.include.as_deref());
        let exclude = self.globs(&format!("{key}.exclude"), f.exclude.as_deref());
        let settle = self.duration(
            &format!("{key}.settle"),
            f.settle.as_deref(),
            Duration::from_secs(2),
        );
        let poll_interval = self.duration(
            &format!("{key}.poll_interval"),
            f.poll_interval.as_deref(),
            Duration::from_secs(10),
        );
        if poll_interval.is_zero() {
            self.error(
                &format!("{key}.poll_interval"),
                "must be more than 0 (a rescan with no pause would never rest)",
            );
        }
        let retention = f.retention.as_deref().map(|r| {
            let key = format!("{key}.retention");
            let d = self.duration(&key, Some(r), Duration::from_secs(1));
            if d.is_zero() {
                self.error(
                    &key,
                    "must be more than 0 (0 would delete every result at once; leave \
                     `retention` out to keep files)",
                );
            }
            d
        });
        Some(FolderRule {
            done: f
                .done
                .as_deref()
                .map_or_else(|| path.join("done"), |d| self.path(d)),
            failed: f
                .failed
                .as_deref()
                .map_or_else(|| path.join("failed"), |d| self.path(d)),
            path,
            recursive: f.recursive.unwrap_or(false),
            include,
            exclude,
            output,
            targets,
            smart: SmartOptions {
                scale,
                model,
                quality,
            },
            trim: f.trim.unwrap_or(false),
            metadata,
            name_template,
            on_success,
            settle,
            watch,
            poll_interval,
            retention,
        })
    }

    /// Every target's name must leave room for the stem within one file name.
    fn name_room(&mut self, key: &str, template: &NameTemplate, targets: &[OutputTarget]) {
        for t in targets {
            for format in &t.formats {
                let fixed = template.len_without_stem(t, format.extension());
                if fixed >= name_template::MAX_NAME_BYTES {
                    self.error(
                        &format!("{key}.name"),
                        format!(
                            "with target `{}` the output name is {fixed} bytes before the \
                             stem; a file name holds at most {}",
                            t.name,
                            name_template::MAX_NAME_BYTES
                        ),
                    );
                    return;
                }
            }
        }
    }

    /// `inherit`: folder-level settings that each item of `targets` inherits.
    fn target(
        &mut self,
        key: &str,
        t: RawTarget,
        inherit: Option<&RawTarget>,
    ) -> Option<OutputTarget> {
        self.unknown_keys(key, &t.unknown, raw::TARGET_KEYS);
        let preset = match t.preset.as_deref() {
            Some(name) => match presets::get(name) {
                Ok(p) => Some(p),
                Err(e) => {
                    self.error(&format!("{key}.preset"), e);
                    return None;
                }
            },
            None => None,
        };
        let fit = match t.fit.as_deref() {
            None => preset.map_or(Fit::Contain, |p| p.fit),
            Some("contain") => Fit::Contain,
            Some("cover") => Fit::Cover,
            Some("pad") => Fit::Pad,
            Some(other) => {
                self.error(
                    &format!("{key}.fit"),
                    format!("must be contain, cover or pad, not {other:?}"),
                );
                Fit::Contain
            }
        };
        // `whiten`: a white background, with near-white borders made pure white.
        let whiten = t.background.as_deref() == Some("whiten");
        let background = match t
            .background
            .as_deref()
            .filter(|_| !whiten)
            .or(preset.map(|p| p.background.as_str()))
        {
            None => [255, 255, 255],
            Some(c) => parse_colour(c).unwrap_or_else(|e| {
                self.error(&format!("{key}.background"), e);
                [255, 255, 255]
            }),
        };
        if let Some(fill) = t.fill
            && !(0.05..=1.0).contains(&fill)
        {
            self.error(&format!("{key}.fill"), "must be between 0.05 and 1.0");
        }
        let width = t.width.or(preset.map(|p| p.width));
        let height = t.height.or(preset.map(|p| p.height));
        for (name, v) in [("width", width), ("height", height)] {
            if v == Some(0) {
                self.error(&format!("{key}.{name}"), "must be at least 1");
            }
        }
        let target = (width.is_some() || height.is_some()).then(|| Target {
            width,
            height,
            fit,
            background,
            fill: t.fill.or(preset.and_then(|p| p.fill)),
            white_required: preset.is_some_and(|p| p.rules.pure_white),
            whiten,
        });
        let own_formats = t.formats.is_some();
        let format_names = t
            .formats
            .or_else(|| inherit.and_then(|i| i.formats.clone()));
        let formats = match format_names {
            Some(names) => {
                if names.is_empty() {
                    self.error(&format!("{key}.formats"), "the list is empty");
                }
                names
                    .iter()
                    .enumerate()
                    .filter_map(|(i, n)| match parse_format(n) {
                        Ok(f) => Some(f),
                        Err(e) => {
                            self.error(&format!("{key}.formats[{i}]"), e);
                            None
                        }
                    })
                    .collect()
            }
            None => preset.map_or(vec![OutputFormat::Webp], |p| p.formats.clone()),
        };
        let allow_other = t
            .allow_other_formats
            .or(inherit.and_then(|i| i.allow_other_formats))
            .unwrap_or(false);
        if let (Some(p), Some(name), false) = (preset, t.preset.as_deref(), allow_other) {
            for (i, f) in formats.iter().enumerate() {
                if let Some(refusal) = p.refuses(name, *f) {
                    let at = if own_formats {
                        format!("{key}.formats[{i}]")
                    } else {
                        format!("{key}.preset")
                    };
                    self.error(&at, refusal);
                }
            }
        }
        if let Some(name) = &t.name
            && let Err(e) = name_template::check_target_name(name)
        {
            self.error(&format!("{key}.name"), e);
        }
        if t.max_bytes == Some(0) {
            self.error(
                &format!("{key}.max_bytes"),
                "must be more than 0 (no file fits in 0 bytes)",
            );
        }
        let quality = t
            .quality
            .or(inherit.and_then(|i| i.quality))
            .or(preset.and_then(|p| p.quality));
        if let Some(q) = quality
            && !(1..=100).contains(&q)
        {
            self.error(&format!("{key}.quality"), "must be between 1 and 100");
        }
        Some(OutputTarget {
            name: t
                .name
                .or(t.preset.clone())
                .unwrap_or_else(|| match (width, height) {
                    (Some(w), Some(h)) => format!("{w}x{h}"),
                    (Some(w), None) => format!("w{w}"),
                    (None, Some(h)) => format!("h{h}"),
                    (None, None) => "original".into(),
                }),
            target,
            formats,
            quality,
            max_bytes: t
                .max_bytes
                .or(inherit.and_then(|i| i.max_bytes))
                .or(preset.and_then(|p| p.max_bytes)),
            min_source_side: preset.and_then(|p| p.min_source_side),
        })
    }

    fn globs(&mut self, key: &str, patterns: Option<&[String]>) -> Option<GlobSet> {
        let patterns = patterns?;
        let mut builder = GlobSetBuilder::new();
        for (i, p) in patterns.iter().enumerate() {
            match Glob::new(p) {
                Ok(g) => {
                    builder.add(g);
                }
                Err(e) => self.error(&format!("{key}[{i}]"), format!("bad glob: {e}")),
            }
        }
        builder.build().ok()
    }

    fn duration(&mut self, key: &str, text: Option<&str>, default: Duration) -> Duration {
        match text {
            None => default,
            Some(t) => parse_duration(t).unwrap_or_else(|e| {
                self.error(key, e);
                default
            }),
        }
    }
}

fn inline_has_target(t: &RawTarget) -> bool {
    t.preset.is_some() || t.width.is_some() || t.height.is_some()
}

pub fn parse_format(name: &str) -> Result<OutputFormat, String> {
    match name.to_ascii_lowercase().as_str() {
        "avif" => Ok(OutputFormat::Avif),
        "webp" => Ok(OutputFormat::Webp),
        "png" => Ok(OutputFormat::Png),
        "jpeg" | "jpg" => Ok(OutputFormat::Jpeg),
        _ => Err(format!(
            "unknown format {name:?}; use avif, webp, png or jpeg"
        )),
    }
}

/// `500ms`, `1s`, `2m`, `4h`, `1d`.
fn nats_url_ok(url: &str) -> bool {
    url.split(',').all(|one| {
        let rest = one
            .trim()
            .strip_prefix("nats://")
            .or_else(|| one.trim().strip_prefix("tls://"))
            .unwrap_or(one.trim());
        rest.rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
    })
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("not a duration: {text:?} (write e.g. 500ms, 1s, 2m, 4h)"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86400.0,
        _ => return Err(format!("not a duration: {text:?} (units: ms, s, m, h, d)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("not a duration: {text:?} (too long)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "folders:\n  - path: /srv/drop/shop\n    output: /srv/out/shop\n    width: 1024\n    height: 1024\n    fit: contain\n    formats: [webp]\n    settle: 1s\n    done: /srv/drop/shop-done\n    failed: /srv/drop/shop-failed\n";

    #[test]
    fn cluster_section_defaults_and_refusals() {
        let ok = format!("cluster:\n  nats: nats://10.0.0.5:4222\n  name: nas\n{MINIMAL}");
        let c = Config::parse(Path::new("c.yaml"), &ok).unwrap();
        let cl = c.cluster.expect("cluster settings");
        assert_eq!(cl.login.url, "nats://10.0.0.5:4222");
        assert_eq!((cl.name.as_str(), cl.stream.as_str()), ("nas", "UPSCALED"));
        assert_eq!((cl.workers, cl.max_in_flight, cl.max_deliver), (1, 16, 5));
        assert_eq!(cl.ack_wait, Duration::from_secs(30));
        assert!(
            Config::parse(Path::new("c.yaml"), MINIMAL)
                .unwrap()
                .cluster
                .is_none()
        );

        // Each mistake is named with its line and key; the token is never
        // taken from the config text, only from a file.
        let bad = format!(
            "cluster:\n  nats: 10.0.0.5\n  name: my.nas\n  token: hunter2\n  token_file: /nonexistent/token\n  max_deliver: 0\n  ack_wait: 10ms\n{MINIMAL}"
        );
        let shown = Config::parse(Path::new("c.yaml"), &bad)
            .unwrap_err()
            .to_string();
        for want in [
            "c.yaml:2:3: cluster.nats: must look like nats://host:4222",
            "c.yaml:3:3: cluster.name:",
            "c.yaml:4:3: cluster.token: unknown key `token`",
            "c.yaml:5:3: cluster.token_file: /nonexistent/token is not a readable file",
            "c.yaml:6:3: cluster.max_deliver: must be at least 1",
            "c.yaml:7:3: cluster.ack_wait: must be at least 1s",
        ] {
            assert!(shown.contains(want), "{want:?} missing from:\n{shown}");
        }
    }

    #[test]
    fn a_format_the_platform_refuses_is_an_error_unless_allowed() {
        let folder = |extra: &str| {
            format!(
                "folders:\n  - path: /srv/drop/a\n    output: /srv/out/a\n    preset: amazon-main\n{extra}"
            )
        };
        let e = Config::parse(Path::new("c.yaml"), &folder("    formats: [jpeg, webp]\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("c.yaml:5:")
                && e.contains("folders[0].formats[1]: Amazon does not accept webp uploads"),
            "{e}"
        );
        // In a target list, a folder-wide format is refused for each preset that refuses it.
        let listed = "folders:\n  - path: /srv/drop/a\n    output: /srv/out/a\n    formats: [avif]\n    targets:\n      - preset: walmart\n      - preset: web-hero\n";
        let e = Config::parse(Path::new("c.yaml"), listed).unwrap_err();
        assert_eq!(e.issues.len(), 1, "{e}");
        assert!(
            e.to_string()
                .contains("folders[0].targets[0].preset: Walmart"),
            "{e}"
        );
        // The explicit override, and the preset's own formats and quality.
        let c = Config::parse(
            Path::new("c.yaml"),
            &folder("    formats: [webp]\n    allow_other_formats: true\n    background: whiten\n"),
        )
        .unwrap();
        let t = &c.folders[0].targets[0];
        assert_eq!(t.formats, vec![OutputFormat::Webp]);
        let target = t.target.as_ref().unwrap();
        assert!(target.whiten && target.white_required);
        assert_eq!(target.background, [255, 255, 255]);
        let ebay = "folders:\n  - path: /srv/drop/a\n    output: /srv/out/a\n    preset: ebay\n";
        let c = Config::parse(Path::new("c.yaml"), ebay).unwrap();
        assert_eq!(c.folders[0].targets[0].quality, Some(90));
        assert_eq!(c.folders[0].targets[0].formats, vec![OutputFormat::Jpeg]);
    }

    #[test]
    fn the_command_line_target_is_the_folder_target_with_flags_named() {
        let raw = |f: fn(&mut RawTarget)| {
            let mut t = RawTarget {
                preset: Some("amazon-main".into()),
                ..RawTarget::default()
            };
            f(&mut t);
            t
        };
        // The same defaults as a folder with `preset: amazon-main`.
        let t = command_line_target(raw(|_| {})).unwrap();
        let yaml =
            "folders:\n  - path: /srv/drop/a\n    output: /srv/out/a\n    preset: amazon-main\n";
        let folder = &Config::parse(Path::new("c.yaml"), yaml).unwrap().folders[0].targets[0];
        assert_eq!(t.target, folder.target);
        assert_eq!(t.formats, folder.formats);
        assert_eq!((t.quality, t.max_bytes), (folder.quality, folder.max_bytes));
        // The same refusals, each naming its flag.
        let e = command_line_target(raw(|t| t.formats = Some(vec!["webp".into()]))).unwrap_err();
        assert!(e.starts_with("--format: Amazon"), "{e}");
        let e = command_line_target(raw(|t| {
            t.width = Some(0);
            t.max_bytes = Some(0);
            t.background = Some("teal".into());
        }))
        .unwrap_err();
        for flag in ["--width:", "--max-bytes:", "--background:"] {
            assert!(e.contains(flag), "{flag} missing in {e}");
        }
        let ok = command_line_target(raw(|t| {
            t.formats = Some(vec!["webp".into()]);
            t.allow_other_formats = Some(true);
        }));
        assert!(ok.is_ok());
    }

    #[test]
    fn minimal_form_from_the_issue_parses() {
        let c = Config::parse(Path::new("/etc/upscaled/config.yaml"), MINIMAL).unwrap();
        let f = &c.folders[0];
        assert_eq!(f.path, PathBuf::from("/srv/drop/shop"));
        assert_eq!(f.settle, Duration::from_secs(1));
        assert_eq!(f.targets.len(), 1);
        assert_eq!(f.targets[0].formats, vec![OutputFormat::Webp]);
        assert_eq!(f.targets[0].target.as_ref().unwrap().width, Some(1024));
        assert_eq!(f.done, PathBuf::from("/srv/drop/shop-done"));
    }

    #[test]
    fn model_none_is_no_model_and_takes_no_scale() {
        let text = "folders:\n  - path: /a\n    output: /b\n    width: 900\n    smart:\n      model: none\n";
        let config = Config::parse(Path::new("c.yaml"), text).unwrap();
        assert_eq!(config.folders[0].smart.model, ModelChoice::NoModel);
        assert!(config.model_refs.is_empty(), "none is not a model name");
        let scaled = format!("{text}      scale: 4\n");
        let e = Config::parse(Path::new("c.yaml"), &scaled).unwrap_err();
        let shown = e.to_string();
        assert!(
            shown.contains("c.yaml:7:7: folders[0].smart.scale: with model: none no model runs"),
            "{shown}"
        );
    }

    #[test]
    fn all_errors_reported_with_line_column_and_hint() {
        let text = "folders:\n  - path: /a\n    output: /b\n    widht: 10\n    fit: stretch\n    smart:\n      scale: 3\n";
        let e = Config::parse(Path::new("c.yaml"), text).unwrap_err();
        assert_eq!(e.issues.len(), 3, "{e}");
        let shown = e.to_string();
        assert!(
            shown.contains(
                "c.yaml:4:5: folders[0].widht: unknown key `widht`; did you mean `width`?"
            ),
            "{shown}"
        );
        assert!(shown.contains("c.yaml:5:5: folders[0].fit:"), "{shown}");
        assert!(
            shown.contains("folders[0].smart.scale: scale must be auto, 1, 2 or 4"),
            "{shown}"
        );
    }

    #[test]
    fn a_routes_only_file_is_for_explain_not_for_the_daemon() {
        let text = "routes:\n  photo:\n    4: { best: spanx4_ch48 }\n";
        let file = Path::new("r.yaml");
        let c = Config::parse_routes(file, text).unwrap();
        assert!(c.folders.is_empty());
        let e = Config::parse(file, text).unwrap_err().to_string();
        assert!(
            e.contains("r.yaml:1:1: folders: there is no folder to watch"),
            "{e}"
        );
        // Type errors are still errors in either use, each at its key.
        let e = Config::parse_routes(file, "threads: many\nroutes: [1]\n").unwrap_err();
        assert_eq!(e.issues.len(), 2, "{e}");
    }

    #[test]
    fn durations_and_templates() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("4h").unwrap(), Duration::from_secs(4 * 3600));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("99999999999999999999999999d").is_err());
        assert!(parse_duration("1e5s").is_err());
    }
}
