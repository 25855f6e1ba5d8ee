//! The YAML as written: plain structs that mirror the file and nothing more.
//!
//! They are filled key by key from the parsed YAML tree, not by one serde
//! derive: a value of the wrong type (`width: "big"`, `folders: 3`, a list
//! where a map belongs) is noted with its key path and that key is left out,
//! so validation goes on and reports every other error in the same run.
//! Unknown keys are collected the same way, each later with a "did you mean".

use std::collections::BTreeMap;

use serde_yaml::{Mapping, Value};

use crate::pipeline::decode::DecodeLimits;

pub type Unknown = BTreeMap<String, Value>;

/// A key path and what is wrong with the value there.
pub type Found = Vec<(String, String)>;

#[derive(Debug, Default)]
pub struct RawConfig {
    pub models: Option<String>,
    pub threads: Option<usize>,
    pub limits: Option<RawLimits>,
    pub log_format: Option<String>,
    pub metrics: Option<String>,
    pub cluster: Option<RawCluster>,
    pub folders: Vec<RawFolder>,
    /// `folders:` is absent, empty or an empty list (a wrong type is
    /// reported as such, not also as "no folders").
    pub no_folders: bool,
    /// route → scale → levels, over config/routes.yaml.
    pub routes: Option<BTreeMap<String, BTreeMap<u32, RawLevels>>>,
    pub unknown: Unknown,
}

/// `cluster:`: this daemon coordinates workers through NATS JetStream.
#[derive(Debug, Default)]
pub struct RawCluster {
    pub nats: Option<String>,
    pub name: Option<String>,
    pub stream: Option<String>,
    pub bucket: Option<String>,
    pub credentials: Option<String>,
    pub token_file: Option<String>,
    pub tls: Option<RawTls>,
    pub workers: Option<usize>,
    pub max_in_flight: Option<usize>,
    pub ack_wait: Option<String>,
    pub max_deliver: Option<u32>,
    pub unknown: Unknown,
}

#[derive(Debug, Default)]
pub struct RawTls {
    pub ca: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
    pub unknown: Unknown,
}

#[derive(Debug, Default)]
pub struct RawLevels {
    pub fast: Option<String>,
    pub balanced: Option<String>,
    pub best: Option<String>,
    pub unknown: Unknown,
}

#[derive(Debug, Default)]
pub struct RawLimits {
    pub max_side: Option<u32>,
    pub max_megapixels: Option<f64>,
    pub max_alloc_mib: Option<u64>,
    pub max_file_mib: Option<u64>,
    pub seconds_per_file: Option<u64>,
    pub memory_mib: Option<u32>,
    pub unknown: Unknown,
}

impl RawLimits {
    pub fn decode_limits(&self) -> DecodeLimits {
        let d = DecodeLimits::default();
        DecodeLimits {
            max_side: self.max_side.unwrap_or(d.max_side),
            max_megapixels: self.max_megapixels.unwrap_or(d.max_megapixels),
            max_alloc_mib: self.max_alloc_mib.unwrap_or(d.max_alloc_mib),
            max_file_mib: self.max_file_mib.unwrap_or(d.max_file_mib),
        }
    }
}

/// A target box: inline in a folder, or one item of its `targets` list.
#[derive(Debug, Default)]
pub struct RawTarget {
    pub preset: Option<String>,
    pub name: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub fit: Option<String>,
    pub background: Option<String>,
    pub fill: Option<f64>,
    pub formats: Option<Vec<String>>,
    pub quality: Option<u8>,
    pub max_bytes: Option<u64>,
    pub allow_other_formats: Option<bool>,
    pub unknown: Unknown,
}

#[derive(Debug, Default)]
pub struct RawSmart {
    pub scale: Option<Value>,
    pub model: Option<String>,
    pub quality: Option<String>,
    pub unknown: Unknown,
}

#[derive(Debug, Default)]
pub struct RawFolder {
    pub path: Option<String>,
    pub recursive: Option<bool>,
    pub include: Option<Vec<String>>,
    pub exclude: Option<Vec<String>>,
    pub output: Option<String>,
    pub targets: Option<Vec<RawTarget>>,
    // The single-target short form, straight in the folder.
    pub preset: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub fit: Option<String>,
    pub background: Option<String>,
    pub fill: Option<f64>,
    pub formats: Option<Vec<String>>,
    pub quality: Option<u8>,
    pub max_bytes: Option<u64>,
    pub allow_other_formats: Option<bool>,
    pub smart: Option<RawSmart>,
    pub trim: Option<bool>,
    pub metadata: Option<String>,
    pub name: Option<String>,
    pub on_success: Option<String>,
    pub done: Option<String>,
    pub failed: Option<String>,
    pub settle: Option<String>,
    pub watch: Option<String>,
    pub poll_interval: Option<String>,
    pub retention: Option<String>,
    pub unknown: Unknown,
}

pub const TOP_KEYS: &[&str] = &[
    "models",
    "threads",
    "limits",
    "log_format",
    "metrics",
    "cluster",
    "folders",
    "routes",
];
pub const CLUSTER_KEYS: &[&str] = &[
    "nats",
    "name",
    "stream",
    "bucket",
    "credentials",
    "token_file",
    "tls",
    "workers",
    "max_in_flight",
    "ack_wait",
    "max_deliver",
];
pub const TLS_KEYS: &[&str] = &["ca", "cert", "key"];
pub const LEVEL_KEYS: &[&str] = &["fast", "balanced", "best"];
pub const LIMIT_KEYS: &[&str] = &[
    "max_side",
    "max_megapixels",
    "max_alloc_mib",
    "max_file_mib",
    "seconds_per_file",
    "memory_mib",
];
pub const TARGET_KEYS: &[&str] = &[
    "preset",
    "name",
    "width",
    "height",
    "fit",
    "background",
    "fill",
    "formats",
    "quality",
    "max_bytes",
    "allow_other_formats",
];
pub const SMART_KEYS: &[&str] = &["scale", "model", "quality"];
pub const FOLDER_KEYS: &[&str] = &[
    "path",
    "recursive",
    "include",
    "exclude",
    "output",
    "targets",
    "preset",
    "width",
    "height",
    "fit",
    "background",
    "fill",
    "formats",
    "quality",
    "max_bytes",
    "allow_other_formats",
    "smart",
    "trim",
    "metadata",
    "name",
    "on_success",
    "done",
    "failed",
    "settle",
    "watch",
    "poll_interval",
    "retention",
];

impl RawConfig {
    /// The whole document. `found` collects every value of the wrong type.
    pub fn from_value(doc: &Value, found: &mut Found) -> RawConfig {
        let mut r = Reader { found };
        let Some(map) = r.map("", doc) else {
            return RawConfig::default();
        };
        let no_folders = match map.get("folders") {
            None | Some(Value::Null) => true,
            Some(Value::Sequence(items)) => items.is_empty(),
            Some(_) => false,
        };
        RawConfig {
            models: r.string(map, "", "models"),
            threads: r.uint(map, "", "threads"),
            limits: r.sub(map, "", "limits", |r, p, m| RawLimits {
                max_side: r.uint(m, p, "max_side"),
                max_megapixels: r.float(m, p, "max_megapixels"),
                max_alloc_mib: r.uint(m, p, "max_alloc_mib"),
                max_file_mib: r.uint(m, p, "max_file_mib"),
                seconds_per_file: r.uint(m, p, "seconds_per_file"),
                memory_mib: r.uint(m, p, "memory_mib"),
                unknown: unknown(m, LIMIT_KEYS),
            }),
            log_format: r.string(map, "", "log_format"),
            metrics: r.string(map, "", "metrics"),
            cluster: r.sub(map, "", "cluster", |r, p, m| RawCluster {
                nats: r.string(m, p, "nats"),
                name: r.string(m, p, "name"),
                stream: r.string(m, p, "stream"),
                bucket: r.string(m, p, "bucket"),
                credentials: r.string(m, p, "credentials"),
                token_file: r.string(m, p, "token_file"),
                tls: r.sub(m, p, "tls", |r, p, m| RawTls {
                    ca: r.string(m, p, "ca"),
                    cert: r.string(m, p, "cert"),
                    key: r.string(m, p, "key"),
                    unknown: unknown(m, TLS_KEYS),
                }),
                workers: r.uint(m, p, "workers"),
                max_in_flight: r.uint(m, p, "max_in_flight"),
                ack_wait: r.string(m, p, "ack_wait"),
                max_deliver: r.uint(m, p, "max_deliver"),
                unknown: unknown(m, CLUSTER_KEYS),
            }),
            folders: r
                .list(map, "", "folders", |r, p, m| r.folder(p, m))
                .unwrap_or_default(),
            no_folders,
            routes: r.routes(map),
            unknown: unknown(map, TOP_KEYS),
        }
    }
}

/// Keys of `map` that are not in `known`, by their text.
fn unknown(map: &Mapping, known: &[&str]) -> Unknown {
    map.iter()
        .map(|(k, v)| (key_text(k), v.clone()))
        .filter(|(k, _)| !known.contains(&k.as_str()))
        .collect()
}

fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "~".into(),
        other => describe(other),
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// What a value is, for "must be X, not Y".
pub fn describe(v: &Value) -> String {
    match v {
        Value::Null => "empty".into(),
        Value::Bool(b) => format!("`{b}`"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the text {s:?}"),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a map of keys".into(),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

struct Reader<'f> {
    found: &'f mut Found,
}

impl Reader<'_> {
    fn wrong(&mut self, path: &str, expected: &str, v: &Value) {
        self.found.push((
            path.to_string(),
            format!("must be {expected}, not {}", describe(v)),
        ));
    }

    /// `v` as a map; a wrong type is noted at `path`.
    fn map<'v>(&mut self, path: &str, v: &'v Value) -> Option<&'v Mapping> {
        match v {
            Value::Mapping(m) => Some(m),
            Value::Null => None,
            other => {
                self.wrong(path, "a map of keys", other);
                None
            }
        }
    }

    /// The value of `key`, or `None` when absent or empty (`key:` or `key: ~`).
    fn value<'m>(&self, map: &'m Mapping, key: &str) -> Option<&'m Value> {
        map.get(key).filter(|v| !v.is_null())
    }

    /// Text; a plain number or boolean counts as its text (`path: 2024`).
    fn string(&mut self, map: &Mapping, prefix: &str, key: &str) -> Option<String> {
        let v = self.value(map, key)?;
        self.text(&join(prefix, key), v)
    }

    fn text(&mut self, path: &str, v: &Value) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            other => {
                self.wrong(path, "text", other);
                None
            }
        }
    }

    fn boolean(&mut self, map: &Mapping, prefix: &str, key: &str) -> Option<bool> {
        match self.value(map, key)? {
            Value::Bool(b) => Some(*b),
            other => {
                self.wrong(&join(prefix, key), "true or false", other);
                None
            }
        }
    }

    /// A whole number that fits `T`.
    fn uint<T: TryFrom<u64>>(&mut self, map: &Mapping, prefix: &str, key: &str) -> Option<T> {
        let v = self.value(map, key)?;
        let path = join(prefix, key);
        let n = match v {
            Value::Number(n) => n.as_u64(),
            _ => None,
        };
        match n.map(T::try_from) {
            Some(Ok(t)) => Some(t),
            Some(Err(_)) => {
                self.found
                    .push((path, format!("{} is too large", describe(v))));
                None
            }
            None => {
                self.wrong(&path, "a whole number", v);
                None
            }
        }
    }

    fn float(&mut self, map: &Mapping, prefix: &str, key: &str) -> Option<f64> {
        match self.value(map, key)? {
            Value::Number(n) => n.as_f64(),
            other => {
                self.wrong(&join(prefix, key), "a number", other);
                None
            }
        }
    }

    fn strings(&mut self, map: &Mapping, prefix: &str, key: &str) -> Option<Vec<String>> {
        let v = self.value(map, key)?;
        let path = join(prefix, key);
        match v {
            Value::Sequence(items) => Some(
                items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, item)| self.text(&format!("{path}[{i}]"), item))
                    .collect(),
            ),
            // `formats: webp` means the list of one.
            Value::String(_) | Value::Number(_) => self.text(&path, v).map(|s| vec![s]),
            other => {
                self.wrong(&path, "a list", other);
                None
            }
        }
    }

    /// A map under `key`, read by `read`.
    fn sub<T>(
        &mut self,
        map: &Mapping,
        prefix: &str,
        key: &str,
        read: impl FnOnce(&mut Self, &str, &Mapping) -> T,
    ) -> Option<T> {
        let path = join(prefix, key);
        let m = self.map(&path, self.value(map, key)?)?;
        Some(read(self, &path, m))
    }

    /// A list of maps under `key`; an item that is not a map is noted and left out.
    fn list<T>(
        &mut self,
        map: &Mapping,
        prefix: &str,
        key: &str,
        mut read: impl FnMut(&mut Self, &str, &Mapping) -> T,
    ) -> Option<Vec<T>> {
        let path = join(prefix, key);
        let v = self.value(map, key)?;
        let Value::Sequence(items) = v else {
            self.wrong(&path, "a list", v);
            return None;
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let item_path = format!("{path}[{i}]");
            match item {
                Value::Mapping(m) => out.push(read(self, &item_path, m)),
                other => self.wrong(&item_path, "a map of keys", other),
            }
        }
        Some(out)
    }

    fn target(&mut self, p: &str, m: &Mapping) -> RawTarget {
        RawTarget {
            preset: self.string(m, p, "preset"),
            name: self.string(m, p, "name"),
            width: self.uint(m, p, "width"),
            height: self.uint(m, p, "height"),
            fit: self.string(m, p, "fit"),
            background: self.string(m, p, "background"),
            fill: self.float(m, p, "fill"),
            formats: self.strings(m, p, "formats"),
            quality: self.uint(m, p, "quality"),
            max_bytes: self.uint(m, p, "max_bytes"),
            allow_other_formats: self.boolean(m, p, "allow_other_formats"),
            unknown: unknown(m, TARGET_KEYS),
        }
    }

    fn folder(&mut self, p: &str, m: &Mapping) -> RawFolder {
        RawFolder {
            path: self.string(m, p, "path"),
            recursive: self.boolean(m, p, "recursive"),
            include: self.strings(m, p, "include"),
            exclude: self.strings(m, p, "exclude"),
            output: self.string(m, p, "output"),
            targets: self.list(m, p, "targets", |r, p, m| r.target(p, m)),
            preset: self.string(m, p, "preset"),
            width: self.uint(m, p, "width"),
            height: self.uint(m, p, "height"),
            fit: self.string(m, p, "fit"),
            background: self.string(m, p, "background"),
            fill: self.float(m, p, "fill"),
            formats: self.strings(m, p, "formats"),
            quality: self.uint(m, p, "quality"),
            max_bytes: self.uint(m, p, "max_bytes"),
            allow_other_formats: self.boolean(m, p, "allow_other_formats"),
            smart: self.sub(m, p, "smart", |r, p, m| RawSmart {
                scale: r.value(m, "scale").cloned(),
                model: r.string(m, p, "model"),
                quality: r.string(m, p, "quality"),
                unknown: unknown(m, SMART_KEYS),
            }),
            trim: self.boolean(m, p, "trim"),
            metadata: self.string(m, p, "metadata"),
            name: self.string(m, p, "name"),
            on_success: self.string(m, p, "on_success"),
            done: self.string(m, p, "done"),
            failed: self.string(m, p, "failed"),
            settle: self.string(m, p, "settle"),
            watch: self.string(m, p, "watch"),
            poll_interval: self.string(m, p, "poll_interval"),
            retention: self.string(m, p, "retention"),
            unknown: unknown(m, FOLDER_KEYS),
        }
    }

    /// `routes: {route: {scale: {level: model}}}`; scales are whole numbers.
    fn routes(&mut self, map: &Mapping) -> Option<BTreeMap<String, BTreeMap<u32, RawLevels>>> {
        let routes = self.map("routes", self.value(map, "routes")?)?;
        let mut out = BTreeMap::new();
        for (route_key, scales) in routes {
            let route = key_text(route_key);
            let route_path = join("routes", &route);
            let mut by_scale = BTreeMap::new();
            if let Some(scales) = self.map(&route_path, scales) {
                for (scale_key, levels) in scales {
                    let text = key_text(scale_key);
                    let path = join(&route_path, &text);
                    let Ok(scale) = text.parse::<u32>() else {
                        self.found.push((
                            path,
                            format!("a scale must be a whole number such as 2 or 4, not {text:?}"),
                        ));
                        continue;
                    };
                    let Some(m) = self.map(&path, levels) else {
                        continue;
                    };
                    by_scale.insert(
                        scale,
                        RawLevels {
                            fast: self.string(m, &path, "fast"),
                            balanced: self.string(m, &path, "balanced"),
                            best: self.string(m, &path, "best"),
                            unknown: unknown(m, LEVEL_KEYS),
                        },
                    );
                }
            }
            out.insert(route, by_scale);
        }
        Some(out)
    }
}
