//! Measuring: contenders run interleaved over rounds; each scenario keeps every sample and reports
//! medians, spreads and ratios.

use std::time::Instant;

/// Sizes and rounds for a run.
pub struct Config {
    pub quick: bool,
    pub rounds: usize,
}

impl Config {
    pub fn new(quick: bool) -> Self {
        Config {
            quick,
            rounds: if quick { 3 } else { 7 },
        }
    }
    /// `full` in a full run, `quick` in a quick one.
    pub fn size(&self, full: usize, quick: usize) -> usize {
        if self.quick {
            quick
        } else {
            full
        }
    }
}

/// One contender's samples in one scenario.
pub struct Contender {
    pub name: String,
    pub kind: Kind,
    pub samples: Vec<f64>,
    pub note: Option<String>,
}

/// What a contender is to the comparison.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Ours,
    Peer,
    Floor,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Ours => "ours",
            Kind::Peer => "peer",
            Kind::Floor => "floor",
        }
    }
}

/// One scenario's results.
pub struct Scenario {
    pub id: String,
    pub title: String,
    pub unit: &'static str,
    pub higher_is_better: bool,
    pub contenders: Vec<Contender>,
    pub target: String,
    /// The verdict against the target, filled by the scenario.
    pub verdict: Option<(bool, String)>,
}

pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

impl Contender {
    pub fn median(&self) -> f64 {
        median(&self.samples)
    }
    pub fn spread(&self) -> (f64, f64) {
        let min = self.samples.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self
            .samples
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        (min, max)
    }
}

impl Scenario {
    pub fn new(
        id: &str,
        title: &str,
        unit: &'static str,
        higher_is_better: bool,
        target: &str,
    ) -> Self {
        Scenario {
            id: id.into(),
            title: title.into(),
            unit,
            higher_is_better,
            contenders: Vec::new(),
            target: target.into(),
            verdict: None,
        }
    }

    pub fn contender(&self, name: &str) -> Option<&Contender> {
        self.contenders.iter().find(|c| c.name == name)
    }

    pub fn median_of(&self, name: &str) -> f64 {
        self.contender(name).map_or(f64::NAN, Contender::median)
    }

    /// How many times better `a` is than `b` (>1 means `a` wins), whatever the unit's direction.
    pub fn advantage(&self, a: &str, b: &str) -> f64 {
        let (x, y) = (self.median_of(a), self.median_of(b));
        if self.higher_is_better {
            x / y
        } else {
            y / x
        }
    }

    pub fn ours(&self) -> Option<&Contender> {
        self.contenders.iter().find(|c| c.kind == Kind::Ours)
    }

    pub fn floor(&self) -> Option<&Contender> {
        self.contenders.iter().find(|c| c.kind == Kind::Floor)
    }

    pub fn add(&mut self, name: &str, kind: Kind) {
        self.contenders.push(Contender {
            name: name.into(),
            kind,
            samples: Vec::new(),
            note: None,
        });
    }

    pub fn push(&mut self, name: &str, sample: f64) {
        if let Some(c) = self.contenders.iter_mut().find(|c| c.name == name) {
            c.samples.push(sample);
        }
    }

    /// Says why a contender has no samples (ignored when it has some).
    pub fn note(&mut self, name: &str, note: String) {
        if let Some(c) = self
            .contenders
            .iter_mut()
            .find(|c| c.name == name && c.samples.is_empty())
        {
            c.note = Some(note);
        }
    }

    pub fn judge(&mut self, ok: bool, text: String) {
        self.verdict = Some((ok, text));
    }

    pub fn summary(&self) -> String {
        let mut s = format!("   {} {} [{}]", self.id, self.title, self.unit);
        for c in &self.contenders {
            s.push_str(&format!("\n     {:<34} {:>14.3}", c.name, c.median()));
        }
        if let Some((ok, v)) = &self.verdict {
            s.push_str(&format!(
                "\n     -> {} {}",
                if *ok { "MET" } else { "MISSED" },
                v
            ));
        }
        s
    }
}

/// Runs `f` and returns the seconds it took.
pub fn time<T>(f: impl FnOnce() -> T) -> (f64, T) {
    let t = Instant::now();
    let out = f();
    (t.elapsed().as_secs_f64(), out)
}
