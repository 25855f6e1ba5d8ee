//! `upscaled presets`: what each platform preset writes, the platform's
//! rules, and where they come from.

use std::process::ExitCode;

use upscaled::pipeline::encode::OutputFormat;
use upscaled::presets;

/// Each preset: what upscaled writes, then the platform's rules and where
/// they come from, so a user can check them against the platform's page.
pub fn run() -> ExitCode {
    let list = |v: &[OutputFormat]| {
        v.iter()
            .map(|f| f.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (name, p) in presets::all() {
        let limit = p.max_bytes.map_or("no byte limit".to_string(), |b| {
            format!("max {:.1} MB", b as f64 / 1e6)
        });
        let fill = p.fill.map_or(String::new(), |f| {
            format!(", subject fills {:.0}%", f * 100.0)
        });
        let quality = p
            .quality
            .map_or(String::new(), |q| format!(", quality {q}"));
        println!("{name}: {} ({})", p.description, p.platform);
        println!(
            "  writes     {}x{} {:?}{fill}, background {}, {}{quality}, {limit}",
            p.width,
            p.height,
            p.fit,
            p.background,
            list(&p.formats),
        );
        let mut accepts = list(&p.accepts);
        if !p.rules.also_accepts.is_empty() {
            accepts += &format!(
                " (also {}, not written here)",
                p.rules.also_accepts.join(", ")
            );
        }
        println!("  accepts    {accepts}");
        let r = &p.rules;
        let sides = match (r.min_side, r.max_side) {
            (Some(a), Some(b)) => format!("long side {a}–{b} px"),
            (Some(a), None) => format!("long side at least {a} px"),
            (None, Some(b)) => format!("long side at most {b} px"),
            (None, None) => "no size limits given".into(),
        };
        let aspect = r
            .aspect
            .as_deref()
            .map_or(String::new(), |a| format!("aspect {a}, "));
        println!(
            "  rules      {aspect}{sides}; colour {}; background {}",
            r.colour, r.background
        );
        let s = &p.source;
        let mut source = s.title.clone();
        for e in [&s.url, &s.date].into_iter().flatten() {
            source += &format!("; {e}");
        }
        if let Some(c) = &s.checked {
            source += &format!("; read {c}");
        }
        println!("  source     {source}");
        if let Some(n) = &s.note {
            println!("  note       {n}");
        }
    }
    ExitCode::SUCCESS
}
