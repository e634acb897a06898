//! Medians, quantiles and the JSON lines `compare.py` reads.

/// The `q` quantile of `xs` (linear interpolation, as mp_bench.py's `_quantile`).
pub fn quantile(xs: &[f64], q: f64) -> f64 {
    let mut s = xs.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return f64::NAN;
    }
    let k = (s.len() - 1) as f64 * q;
    let f = k.floor() as usize;
    let c = (f + 1).min(s.len() - 1);
    s[f] + (s[c] - s[f]) * (k - f as f64)
}

/// The median of `xs`.
pub fn median(xs: &[f64]) -> f64 {
    quantile(xs, 0.5)
}

/// Six significant digits, as mp_bench.py's `_sig`.
fn sig(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let digits = 6 - 1 - x.abs().log10().floor() as i32;
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

/// Where results go: JSON lines or a table.
pub struct Report {
    json: bool,
    detail: bool,
}

impl Report {
    pub fn new(json: bool, detail: bool) -> Self {
        if !json {
            println!("{:<18} {:<22} {:>14} {:<8}", "bench", "variant", "value", "unit");
        }
        Self { json, detail }
    }

    /// One result line.
    pub fn emit(&mut self, bench: &str, variant: &str, value: f64, unit: &str, samples: &[f64]) {
        let spread = (self.detail && !samples.is_empty()).then(|| {
            let min = samples.iter().copied().fold(f64::INFINITY, f64::min);
            let max = samples.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (samples.len(), sig(min), sig(quantile(samples, 0.1)), sig(quantile(samples, 0.9)), sig(max))
        });
        if self.json {
            let mut line = format!(
                "{{\"bench\": \"{bench}\", \"variant\": \"{variant}\", \"value\": {}, \"unit\": \"{unit}\"",
                sig(value)
            );
            if let Some((n, min, p10, p90, max)) = spread {
                line += &format!(", \"n\": {n}, \"min\": {min}, \"p10\": {p10}, \"p90\": {p90}, \"max\": {max}");
            }
            line.push('}');
            println!("{line}");
        } else {
            let mut line = format!("{bench:<18} {variant:<22} {:>14.4} {unit:<8}", sig(value));
            if let Some((n, min, p10, p90, max)) = spread {
                line += &format!(" n={n} min={min} p10={p10} p90={p90} max={max}");
            }
            println!("{line}");
        }
    }
}
