//! Python's process pools as peers: `benches/peers.py`, run with `python3` (or with a virtual
//! environment holding circuits from PyPI, when it installs).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

pub const S6_PEERS: [&str; 3] = [
    "python ProcessPoolExecutor",
    "python multiprocessing Pool.apply",
    "python circuits Worker(process=True)",
];

pub struct Peers {
    python: Option<PathBuf>,
    script: PathBuf,
    why: Mutex<BTreeMap<String, String>>,
}

fn venv() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench/venv")
}

impl Peers {
    /// Finds python3; makes a virtual environment with circuits from PyPI once (kept under
    /// target/bench), falling back to the plain python3 when that fails.
    pub fn setup() -> Peers {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers.py");
        let why = Mutex::new(BTreeMap::new());
        let system = Command::new("python3")
            .arg("--version")
            .output()
            .ok()
            .filter(|o| o.status.success());
        if system.is_none() {
            return Peers {
                python: None,
                script,
                why: Mutex::new(BTreeMap::from([(
                    "*".into(),
                    "python3 is not installed".into(),
                )])),
            };
        }
        let vpy = venv().join("bin/python");
        if !vpy.exists() {
            let made = Command::new("python3")
                .args(["-m", "venv"])
                .arg(venv())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if made {
                let _ = Command::new(&vpy)
                    .args([
                        "-m",
                        "pip",
                        "install",
                        "--quiet",
                        "--disable-pip-version-check",
                        "circuits",
                    ])
                    .status();
            }
        }
        let python = if vpy.exists() {
            vpy
        } else {
            PathBuf::from("python3")
        };
        Peers {
            python: Some(python),
            script,
            why,
        }
    }

    fn call(&self, args: &[String]) -> Option<serde_json::Value> {
        let py = self.python.as_ref()?;
        let out = Command::new(py)
            .arg(&self.script)
            .args(args)
            .output()
            .ok()?;
        if !out.status.success() {
            self.why.lock().unwrap().insert(
                "*".into(),
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("python failed")
                    .to_string(),
            );
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        if let Some(w) = v.get("why").and_then(|w| w.as_object()) {
            for (k, reason) in w {
                self.why
                    .lock()
                    .unwrap()
                    .insert(k.clone(), reason.as_str().unwrap_or("").to_string());
            }
        }
        v.get("values").cloned()
    }

    /// p50 round trips in microseconds, per Python contender.
    pub fn round_trip(&self, size: usize, n: usize) -> Vec<(String, f64)> {
        let Some(v) = self.call(&["rt".into(), size.to_string(), n.to_string()]) else {
            return Vec::new();
        };
        v.as_object()
            .map(|o| {
                o.iter()
                    .filter_map(|(k, x)| x.as_f64().map(|f| (k.clone(), f)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Tasks per second for `submit` (ProcessPoolExecutor) or `map` (multiprocessing Pool).
    pub fn throughput(&self, kind: &str, n: usize) -> Option<f64> {
        self.call(&["tp".into(), kind.into(), n.to_string()])?
            .get(kind)?
            .as_f64()
    }

    /// Milliseconds from creating ProcessPoolExecutor(2) to its first result.
    pub fn startup(&self) -> Option<f64> {
        self.call(&["start".into()])?.get("start")?.as_f64()
    }

    /// Why a contender has no samples, if it has none.
    pub fn unavailable(&self, name: &str) -> Option<String> {
        let why = self.why.lock().unwrap();
        why.get(name).or_else(|| why.get("*")).cloned()
    }
}
