//! The output `name:` of a folder: checked once when the config is read, and
//! filled in for every output, by the same type.
//!
//! Placeholders:
//! - `{stem}`: the source's file name without its last extension, as bytes
//!   (a name that is not UTF-8 keeps its bytes);
//! - `{preset}`: the target's name (its `name:`, else its preset, else
//!   `WxH`, `wW`, `hH` or `original`);
//! - `{ext}`: the output format's extension (`webp`, `avif`, `png`, `jpg`);
//! - `{width}`, `{height}`: the target box as configured (explicit, else from
//!   the preset), not the size of the written image: the name is fixed before
//!   the image is processed. A side the target leaves open (a width-only
//!   box, or a target with no box that only upscales) is written `auto`.
//!
//! A template renders to exactly one file-name component inside the output
//! folder: no `/`, `\` or NUL, never `.` or `..`, never hidden (a leading
//! `.`), never longer than 255 bytes. The check refuses templates that could
//! break this by themselves; `render` neutralises what a hostile source name
//! could bring (the stem of `...png` is `..`) and shortens the stem when the
//! name would be too long.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use super::OutputTarget;

/// What a file-system name may hold at most, in bytes (Linux, ext4, XFS...).
pub const MAX_NAME_BYTES: usize = 255;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placeholder {
    Stem,
    Preset,
    Ext,
    Width,
    Height,
}

impl Placeholder {
    const ALL: [(Placeholder, &'static str); 5] = [
        (Placeholder::Stem, "stem"),
        (Placeholder::Preset, "preset"),
        (Placeholder::Ext, "ext"),
        (Placeholder::Width, "width"),
        (Placeholder::Height, "height"),
    ];

    fn named(name: &str) -> Option<Placeholder> {
        Self::ALL.iter().find(|(_, n)| *n == name).map(|(p, _)| *p)
    }

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(p, _)| *p == self)
            .map_or("", |(_, n)| n)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(Placeholder),
}

/// A checked output name template, e.g. `{stem}-{preset}.{ext}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameTemplate {
    source: String,
    parts: Vec<Part>,
}

impl NameTemplate {
    /// The name when a folder has none: `{stem}.{ext}`.
    pub const DEFAULT: &'static str = "{stem}.{ext}";
    /// The name when a folder has several targets and its own name does
    /// not tell them apart (no `{preset}`).
    pub const PER_TARGET: &'static str = "{stem}-{preset}.{ext}";

    /// Checks `text`: it must hold `{stem}` and `{ext}`, only known
    /// placeholders, balanced braces, no `/`, `\` or NUL, and must not start
    /// with `.` (the output would be hidden, and `..` could lead out).
    pub fn parse(text: &str) -> Result<NameTemplate, String> {
        if text.is_empty() {
            return Err("the name template is empty; write e.g. \"{stem}.{ext}\"".into());
        }
        if let Some(c) = text.chars().find(|c| matches!(c, '/' | '\\' | '\0')) {
            let c = if c == '\0' {
                "NUL".to_string()
            } else {
                format!("{c:?}")
            };
            return Err(format!(
                "the name template is one file name inside the output folder: no {c} \
                 (sub-folders come from `recursive`)"
            ));
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let brace = rest.find(['{', '}']).unwrap_or(rest.len());
            if brace > 0 {
                parts.push(Part::Text(rest[..brace].to_string()));
            }
            rest = &rest[brace..];
            if rest.is_empty() {
                break;
            }
            if rest.starts_with('}') {
                return Err("a `}` without its `{` in the name template".into());
            }
            let close = rest
                .find('}')
                .ok_or("a `{` without its `}` in the name template")?;
            let field = &rest[1..close];
            if field.contains('{') {
                return Err("a `{` without its `}` in the name template".into());
            }
            let p = Placeholder::named(field).ok_or_else(|| {
                format!(
                    "unknown placeholder {{{field}}} in the name template \
                     (known: {{stem}}, {{preset}}, {{ext}}, {{width}}, {{height}})"
                )
            })?;
            parts.push(Part::Field(p));
            rest = &rest[close + 1..];
        }
        let template = NameTemplate {
            source: text.to_string(),
            parts,
        };
        for needed in [Placeholder::Stem, Placeholder::Ext] {
            if !template.uses(needed) {
                return Err(format!(
                    "the name template must contain {{{}}}",
                    needed.name()
                ));
            }
        }
        if text.starts_with('.') {
            return Err("the name template must not start with `.` (a hidden file)".into());
        }
        Ok(template)
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn uses(&self, placeholder: Placeholder) -> bool {
        self.parts.contains(&Part::Field(placeholder))
    }

    /// The template to use for a folder with `targets` targets: itself, or
    /// [`PER_TARGET`](Self::PER_TARGET) when there are several and it has no
    /// `{preset}` (the targets' outputs would otherwise share one name).
    pub fn for_targets(&self, targets: usize) -> NameTemplate {
        if targets > 1 && !self.uses(Placeholder::Preset) {
            Self::per_target()
        } else {
            self.clone()
        }
    }

    fn per_target() -> NameTemplate {
        NameTemplate::parse(Self::PER_TARGET).expect("the built-in template is valid")
    }

    /// Bytes the name takes without its stem(s), for `target` and `ext`:
    /// a check-time bound, so a config cannot leave no room for the stem.
    pub fn len_without_stem(&self, target: &OutputTarget, ext: &str) -> usize {
        let fields = Fields::of(OsStr::new(""), target, ext);
        self.parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.len(),
                Part::Field(Placeholder::Stem) => 0,
                Part::Field(f) => fields.get(*f).len(),
            })
            .sum()
    }

    /// The output file name for a source with stem `stem`, one target and one
    /// format extension: one component, at most [`MAX_NAME_BYTES`].
    pub fn render(&self, stem: &OsStr, target: &OutputTarget, ext: &str) -> OsString {
        self.render_within(stem, target, ext, MAX_NAME_BYTES)
    }

    /// [`render`](Self::render) within `max_bytes` (at least 1), for a caller
    /// that adds to the name afterwards (`-1`, a temp suffix).
    pub fn render_within(
        &self,
        stem: &OsStr,
        target: &OutputTarget,
        ext: &str,
        max_bytes: usize,
    ) -> OsString {
        let fields = Fields::of(stem, target, ext);
        self.render_fields(&fields, max_bytes.max(1))
    }

    fn render_fields(&self, fields: &Fields, max: usize) -> OsString {
        let build = |stem_len: usize| {
            let stem = cut(&fields.stem, stem_len);
            let mut name = Vec::with_capacity(max + 1);
            for part in &self.parts {
                match part {
                    Part::Text(t) => name.extend_from_slice(t.as_bytes()),
                    Part::Field(Placeholder::Stem) => name.extend_from_slice(stem),
                    Part::Field(f) => name.extend_from_slice(fields.get(*f)),
                }
            }
            // Never hidden, never `.` or `..`, never empty.
            if name.first().is_none_or(|&b| b == b'.') {
                name.insert(0, b'_');
            }
            name
        };
        let full = build(fields.stem.len());
        if full.len() <= max {
            return OsString::from_vec(full);
        }
        // Too long: every `{stem}` gives up the same share.
        let stems = self
            .parts
            .iter()
            .filter(|p| **p == Part::Field(Placeholder::Stem))
            .count()
            .max(1);
        let over = full.len() - max;
        let mut stem_len = fields.stem.len().saturating_sub(over.div_ceil(stems));
        loop {
            let name = build(stem_len);
            if name.len() <= max {
                return OsString::from_vec(name);
            }
            if stem_len == 0 {
                break;
            }
            stem_len -= 1;
        }
        // No room even without a stem (only a caller's small `max` gets
        // here): keep the start, cut on a character boundary.
        let mut name = build(0);
        name.truncate(cut(&name, max).len());
        if name.is_empty() {
            name.push(b'_');
        }
        OsString::from_vec(name)
    }
}

impl std::str::FromStr for NameTemplate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NameTemplate::parse(s)
    }
}

impl Default for NameTemplate {
    fn default() -> Self {
        NameTemplate::parse(Self::DEFAULT).expect("the built-in template is valid")
    }
}

impl fmt::Display for NameTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// A target's name as `{preset}`: text that is safe inside one file name.
/// Checked in the config so a bad one is an error, not a silent rename.
pub fn check_target_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the target name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} cannot be part of a file name"));
    }
    if let Some(c) = name.chars().find(|c| matches!(c, '/' | '\\' | '\0')) {
        let c = if c == '\0' {
            "NUL".to_string()
        } else {
            format!("{c:?}")
        };
        return Err(format!(
            "the target name becomes part of the output file name ({{preset}}): no {c}"
        ));
    }
    Ok(())
}

/// The placeholders' values, each already safe inside one name component.
struct Fields {
    stem: Vec<u8>,
    preset: Vec<u8>,
    ext: Vec<u8>,
    width: Vec<u8>,
    height: Vec<u8>,
}

impl Fields {
    fn of(stem: &OsStr, target: &OutputTarget, ext: &str) -> Fields {
        let side = |s: Option<u32>| s.map_or("auto".to_string(), |v| v.to_string());
        let box_ = target.target.as_ref();
        Fields {
            stem: component_safe(stem.as_bytes()),
            preset: component_safe(target.name.as_bytes()),
            ext: component_safe(ext.as_bytes()),
            width: side(box_.and_then(|t| t.width)).into_bytes(),
            height: side(box_.and_then(|t| t.height)).into_bytes(),
        }
    }

    fn get(&self, p: Placeholder) -> &[u8] {
        match p {
            Placeholder::Stem => &self.stem,
            Placeholder::Preset => &self.preset,
            Placeholder::Ext => &self.ext,
            Placeholder::Width => &self.width,
            Placeholder::Height => &self.height,
        }
    }
}

/// `/` and NUL cannot be in one name component: each becomes `_`. Every
/// other byte is kept as it is.
fn component_safe(bytes: &[u8]) -> Vec<u8> {
    bytes
        .iter()
        .map(|&b| if b == b'/' || b == 0 { b'_' } else { b })
        .collect()
}

/// The longest start of `bytes` of at most `max` bytes that does not end
/// inside a UTF-8 character (bytes that are not UTF-8 count one by one).
fn cut(bytes: &[u8], max: usize) -> &[u8] {
    if bytes.len() <= max {
        return bytes;
    }
    let mut end = 0;
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if end + c.len_utf8() > max {
                return &bytes[..end];
            }
            end += c.len_utf8();
        }
        for _ in chunk.invalid() {
            if end + 1 > max {
                return &bytes[..end];
            }
            end += 1;
        }
    }
    &bytes[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Target;

    fn target(name: &str, width: Option<u32>, height: Option<u32>) -> OutputTarget {
        OutputTarget {
            name: name.to_string(),
            target: (width.is_some() || height.is_some()).then(|| Target {
                width,
                height,
                ..Target::default()
            }),
            formats: Vec::new(),
            quality: None,
            max_bytes: None,
            min_source_side: None,
        }
    }

    fn render(t: &str, stem: &[u8], target: &OutputTarget) -> Vec<u8> {
        NameTemplate::parse(t)
            .unwrap()
            .render(OsStr::from_bytes(stem), target, "png")
            .into_vec()
    }

    #[test]
    fn every_placeholder_is_filled_in() {
        let t = target("shopify", Some(2048), Some(1024));
        assert_eq!(
            render("{stem}-{preset}-{width}x{height}.{ext}", b"shoe", &t),
            b"shoe-shopify-2048x1024.png"
        );
        assert_eq!(render("{stem}.{ext}", b"shoe", &t), b"shoe.png");
    }

    #[test]
    fn an_open_side_or_no_box_is_auto() {
        let w = target("w800", Some(800), None);
        assert_eq!(
            render("{stem}-{width}x{height}.{ext}", b"a", &w),
            b"a-800xauto.png"
        );
        let none = target("original", None, None);
        assert_eq!(
            render("{stem}-{width}x{height}.{ext}", b"a", &none),
            b"a-autoxauto.png"
        );
    }

    #[test]
    fn bad_templates_are_refused() {
        for bad in [
            "",
            "../../x-{stem}.{ext}",
            "/tmp/{stem}.{ext}",
            "sub/{stem}.{ext}",
            "a\\{stem}.{ext}",
            "{stem}\0.{ext}",
            "..{stem}.{ext}",
            ".{stem}.{ext}",
            "{stem}",
            "x.{ext}",
            "{stem}.{nope}.{ext}",
            "{stem}.{ext",
            "{stem}.ext}",
            "{stem}.{{ext}}",
            "{stem}.{e{xt}",
            "{Stem}.{ext}",
        ] {
            assert!(NameTemplate::parse(bad).is_err(), "{bad:?} was accepted");
        }
        let e = NameTemplate::parse("{stem}.{nope}.{ext}").unwrap_err();
        assert!(e.contains("{nope}"), "{e}");
        for good in [
            "{stem}.{ext}",
            "{stem}-{preset}.{ext}",
            "x-{width}x{height}-{stem}.{ext}",
            "{stem}..{ext}",
            "a..b-{stem}.{ext}",
        ] {
            let t = NameTemplate::parse(good).unwrap();
            assert_eq!(t.as_str(), good);
            assert_eq!(t.to_string(), good);
        }
    }

    #[test]
    fn hostile_stems_stay_one_component() {
        let t = target("p", None, None);
        for (stem, want) in [
            (&b".."[..], &b"_...png"[..]),
            (b".", b"_..png"),
            (b"", b"_.png"),
            (b"a/../../etc/passwd", b"a_.._.._etc_passwd.png"),
            (b"a\0b", b"a_b.png"),
        ] {
            assert_eq!(render("{stem}.{ext}", stem, &t), want, "{stem:?}");
        }
        // A hostile target name (only through the API: the config refuses it).
        let evil = target("../../x", None, None);
        assert_eq!(
            render("{stem}-{preset}.{ext}", b"a", &evil),
            b"a-.._.._x.png"
        );
        let only = NameTemplate::parse("{stem}{ext}").unwrap();
        let out = only.render(OsStr::new(""), &t, "");
        assert_eq!(out, OsStr::new("_"));
        for out in [
            render("{stem}.{ext}", b"..", &t),
            render("{preset}{stem}.{ext}", b"/", &target("..", None, None)),
        ] {
            assert!(!out.contains(&b'/') && out[0] != b'.', "{out:?}");
        }
    }

    #[test]
    fn non_utf8_stems_keep_their_bytes() {
        let t = target("p", None, None);
        let stem = b"caf\xe9-\xff\xfe";
        let mut want = stem.to_vec();
        want.extend_from_slice(b"-p.png");
        assert_eq!(render("{stem}-{preset}.{ext}", stem, &t), want);
    }

    #[test]
    fn long_names_are_shortened_in_the_stem() {
        let t = target("shopify", None, None);
        // A 255-byte source name: its stem alone is 251 bytes.
        let stem = vec![b'a'; 251];
        let out = render("{stem}-{preset}.{ext}", &stem, &t);
        assert_eq!(out.len(), MAX_NAME_BYTES);
        assert!(
            out.ends_with(b"-shopify.png"),
            "{}",
            String::from_utf8_lossy(&out)
        );
        // UTF-8 is never cut inside a character: 'é' is two bytes.
        let stem = "é".repeat(200);
        let out = render("{stem}-{preset}.{ext}", stem.as_bytes(), &t);
        assert!(out.len() <= MAX_NAME_BYTES);
        let text = String::from_utf8(out).expect("still UTF-8");
        assert!(text.ends_with("-shopify.png"));
        assert_eq!(text.len(), 254, "{text}");
        // Two stems share the room.
        let out = render("{stem}-{stem}.{ext}", &[b'b'; 300], &t);
        assert!(out.len() <= MAX_NAME_BYTES && out.ends_with(b".png"));
        // Non-UTF-8 stems are cut on a byte, UTF-8 parts of them on a character.
        let mut mixed = b"\xff".repeat(100);
        mixed.extend_from_slice("ü".repeat(100).as_bytes());
        let out = render("{stem}.{ext}", &mixed, &t);
        assert!(out.len() <= MAX_NAME_BYTES);
        assert!(String::from_utf8_lossy(&out).ends_with("ü.png"));
        // Room left for a caller's suffix.
        let tpl = NameTemplate::parse("{stem}.{ext}").unwrap();
        let out = tpl.render_within(OsStr::from_bytes(&[b'c'; 255]), &t, "png", 240);
        assert_eq!(out.len(), 240);
        // A tiny limit still gives a name.
        let out = tpl.render_within(OsStr::new("abc"), &t, "webp", 3);
        assert!(!out.is_empty() && out.len() <= 3, "{out:?}");
    }

    #[test]
    fn several_targets_get_the_preset_in_the_name() {
        let mine = NameTemplate::parse("x-{stem}.{ext}").unwrap();
        assert_eq!(mine.for_targets(1), mine);
        assert_eq!(mine.for_targets(2).as_str(), NameTemplate::PER_TARGET);
        let with = NameTemplate::parse("{preset}-{stem}.{ext}").unwrap();
        assert_eq!(with.for_targets(3), with);
        assert_eq!(NameTemplate::default().as_str(), NameTemplate::DEFAULT);
    }

    #[test]
    fn target_names_are_checked() {
        for bad in ["", ".", "..", "../../x-", "a/b", "a\\b", "a\0"] {
            assert!(check_target_name(bad).is_err(), "{bad:?}");
        }
        for good in ["banner", "x-", "1500x500", "a..b"] {
            assert!(check_target_name(good).is_ok(), "{good:?}");
        }
        let t = target("banner", Some(1500), Some(500));
        let tpl = NameTemplate::parse("{stem}-{preset}-{width}.{ext}").unwrap();
        assert_eq!(tpl.len_without_stem(&t, "webp"), "-banner-1500.webp".len());
    }
}
