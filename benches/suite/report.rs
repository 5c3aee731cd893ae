//! Writing the results: docs/benchmarks.md (tables with ratios, plots) and
//! target/bench/report.json.

use std::fmt::Write;
use std::path::PathBuf;

use serde_json::json;

use crate::measure::{Config, Kind, Scenario};
use crate::svg;

/// The repository's root, where `docs/` is: this crate is its `benches/` member, so its own
/// manifest directory is one level down.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map_or(String::new(), |kb| {
            format!(", {:.0} GiB memory", kb / 1024.0 / 1024.0)
        });
    format!("{cores} cores, {cpu}{mem}, Linux {kernel}")
}

fn fmt(v: f64) -> String {
    if !v.is_finite() {
        "n/a".into()
    } else if v >= 100_000.0 {
        format!("{:.0}", v)
    } else if v >= 100.0 {
        format!("{:.1}", v)
    } else {
        format!("{:.3}", v)
    }
}

fn ratio(s: &Scenario, a: f64, b: f64) -> f64 {
    // "times better": >1 means `a` wins.
    if s.higher_is_better {
        a / b
    } else {
        b / a
    }
}

pub fn write(cfg: &Config, scenarios: &[Scenario], burst: Option<String>, partial: bool) {
    let dir = root().join("target/bench");
    let _ = std::fs::create_dir_all(&dir);
    let json = json!({
        "machine": machine(),
        "mode": if cfg.quick { "quick" } else { "full" },
        "rounds": cfg.rounds,
        "scenarios": scenarios.iter().map(|s| {
            let ours = s.ours().map(|c| c.median());
            json!({
                "id": s.id,
                "title": s.title,
                "unit": s.unit,
                "higher_is_better": s.higher_is_better,
                "target": s.target,
                "met": s.verdict.as_ref().map(|v| v.0),
                "verdict": s.verdict.as_ref().map(|v| v.1.clone()),
                "contenders": s.contenders.iter().map(|c| {
                    let (min, max) = c.spread();
                    json!({
                        "name": c.name, "kind": c.kind.label(), "median": c.median(),
                        "min": min, "max": max, "samples": c.samples, "note": c.note,
                        "ours_vs_this": ours.map(|o| ratio(s, o, c.median())),
                    })
                }).collect::<Vec<_>>(),
                "ours_vs_floor": match (ours, s.floor()) { (Some(o), Some(f)) => Some(ratio(s, o, f.median())), _ => None },
            })
        }).collect::<Vec<_>>(),
    });
    let _ = std::fs::write(
        dir.join("report.json"),
        serde_json::to_string_pretty(&json).unwrap_or_default(),
    );

    let mut md = String::new();
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(md, "Produced by `cargo bench -p circuits-bench --bench suite{}` (this file is written by the suite; do not edit by hand).\n", if cfg.quick { " -- --quick" } else { "" });
    let _ = writeln!(md, "- Machine: {}", machine());
    let _ = writeln!(md, "- Mode: {}, {} interleaved rounds per scenario (contenders run A B C, A B C, ...); medians, with min..max", if cfg.quick { "quick (reduced sizes)" } else { "full" }, cfg.rounds);
    let _ = writeln!(md, "- Ratios read \"times better than\": above 1 means our pool wins, whatever the unit's direction.");
    let _ = writeln!(md, "- Machine-readable: `target/bench/report.json`.\n");
    let _ = writeln!(
        md,
        "## Targets\n\n| scenario | target | measured | verdict |\n| --- | --- | --- | --- |"
    );
    for s in scenarios {
        let (ok, text) = s.verdict.clone().unwrap_or((false, "no verdict".into()));
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            s.id,
            s.target,
            text,
            if ok { "met" } else { "**missed**" }
        );
    }
    let _ = writeln!(md);
    for s in scenarios {
        let _ = writeln!(md, "## {}: {}\n", s.id, s.title);
        let _ = writeln!(md, "| contender | kind | median ({}) | min..max | ours is x better |\n| --- | --- | --- | --- | --- |", s.unit);
        let ours = s.ours().map(|c| c.median());
        for c in &s.contenders {
            let (min, max) = c.spread();
            let r = match ours {
                Some(o) if c.kind != Kind::Ours || Some(c.median()) != ours => {
                    format!("{:.2}", ratio(s, o, c.median()))
                }
                _ => "-".into(),
            };
            let med = match &c.note {
                Some(n) if c.samples.is_empty() => format!("not run: {}", n.replace('|', "/")),
                _ => fmt(c.median()),
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {}..{} | {} |",
                c.name,
                c.kind.label(),
                med,
                fmt(min),
                fmt(max),
                r
            );
        }
        if let Some((ok, v)) = &s.verdict {
            let _ = writeln!(
                md,
                "\nTarget: {}. Measured: {} ({}).\n",
                s.target,
                v,
                if *ok { "met" } else { "missed" }
            );
        }
    }
    plots(&mut md, scenarios);
    if let Some(burst) = burst {
        let _ = writeln!(md, "{burst}");
    }
    let notes = include_str!("notes.md");
    let _ = writeln!(md, "{notes}");
    // The soak is its own command (`cargo run --release --example soak`); its last result is kept.
    if let Ok(soak) = std::fs::read_to_string(root().join("docs/soak.md")) {
        let _ = writeln!(md, "{soak}");
    }
    let name = if partial {
        "target/bench/benchmarks-partial.md"
    } else {
        "docs/benchmarks.md"
    };
    let _ = std::fs::write(root().join(name), md);
    eprintln!("wrote {name} and target/bench/report.json");
}

fn plots(md: &mut String, scenarios: &[Scenario]) {
    let s6: Vec<&Scenario> = scenarios
        .iter()
        .filter(|s| s.id.starts_with("S6 "))
        .collect();
    if !s6.is_empty() {
        let sizes = [
            ("S6 0 B", 1.0),
            ("S6 1 KiB", 1024.0),
            ("S6 64 KiB", 65536.0),
            ("S6 1 MiB", 1048576.0),
        ];
        let mut names: Vec<String> = Vec::new();
        for s in &s6 {
            for c in &s.contenders {
                if !names.contains(&c.name) {
                    names.push(c.name.clone());
                }
            }
        }
        let series: Vec<(String, Vec<(f64, f64)>)> = names
            .iter()
            .map(|n| {
                let pts = sizes
                    .iter()
                    .filter_map(|(id, x)| {
                        s6.iter()
                            .find(|s| s.id == *id)
                            .map(|s| (*x, 1e6 / s.median_of(n)))
                    })
                    .filter(|p| p.1.is_finite())
                    .collect();
                (n.clone(), pts)
            })
            .collect();
        let chart = svg::log_lines(
            "Process mode: round trips per second against payload size",
            "payload each way (0 B plotted at 1 B)",
            "round trips per second (1 / p50)",
            &[
                (1.0, "0 B"),
                (1024.0, "1 KiB"),
                (65536.0, "64 KiB"),
                (1048576.0, "1 MiB"),
            ],
            &series,
        );
        svg::save(&root().join("docs/bench-throughput-by-size.svg"), chart);
        let _ = writeln!(md, "## Plot: throughput against task size\n\n![round trips per second against payload size](bench-throughput-by-size.svg)\n");
    }
    let s5: Vec<&Scenario> = scenarios
        .iter()
        .filter(|s| s.id.starts_with("S5 "))
        .collect();
    if !s5.is_empty() {
        let groups: Vec<String> = s5
            .iter()
            .map(|s| s.id.trim_start_matches("S5 ").to_string())
            .collect();
        let names: Vec<String> = s5[0].contenders.iter().map(|c| c.name.clone()).collect();
        let series: Vec<(String, Vec<f64>)> = names
            .iter()
            .map(|n| (n.clone(), s5.iter().map(|s| s.median_of(n)).collect()))
            .collect();
        let chart = svg::bars(
            "Balancing: makespan over the lower bound, per strategy",
            "makespan / lower bound (1 = perfect)",
            &groups,
            &series,
            1.0,
        );
        svg::save(&root().join("docs/bench-balancing.svg"), chart);
        let _ = writeln!(md, "## Plot: makespan per strategy\n\n![makespan over lower bound per strategy](bench-balancing.svg)\n");
    }
}
