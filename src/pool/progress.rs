//! The opt-in progress bar of `map` and `imap`, drawn with indicatif on stderr when it is
//! a terminal (and not at all otherwise).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress bar over items.
#[derive(Debug, Clone)]
pub(crate) struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar for `total` items (`None`: unknown, a counter).
    pub(crate) fn new(total: Option<usize>) -> Self {
        let bar = match total {
            Some(n) => ProgressBar::with_draw_target(Some(n as u64), ProgressDrawTarget::stderr()),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
        };
        let template = if total.is_some() {
            "{bar:40.cyan/blue} {pos}/{len} tasks  {per_sec}  eta {eta}"
        } else {
            "{spinner} {pos} tasks  {per_sec}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        Self { bar }
    }

    pub(crate) fn advance(&self, items: usize) {
        self.bar.inc(items as u64);
    }

    pub(crate) fn finish(&self) {
        self.bar.finish();
    }

    pub(crate) fn abandon(&self) {
        self.bar.abandon();
    }
}
