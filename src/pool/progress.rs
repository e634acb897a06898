//! The opt-in progress bar of `map` and `imap`, drawn with indicatif on stderr when it is
//! a terminal (and not at all otherwise). Without the `progress` feature nobody can ask for
//! one ([`MapOptions::progress`](crate::MapOptions::progress) is not there), and
//! [`Progress`] is a type with no values, so the sinks' `Option<Progress>` is always `None`.

#[cfg(feature = "progress")]
pub(crate) use bar::Progress;
#[cfg(not(feature = "progress"))]
pub(crate) use none::Progress;

#[cfg(not(feature = "progress"))]
mod none {
    /// No progress bar can be asked for: no value of this type exists.
    #[derive(Debug)]
    pub(crate) enum Progress {}

    impl Progress {
        pub(crate) fn new(_total: Option<usize>) -> Self {
            unreachable!("MapOptions::progress needs the `progress` feature")
        }

        pub(crate) fn for_items<I: Iterator>(_items: &I) -> Self {
            unreachable!("MapOptions::progress needs the `progress` feature")
        }

        pub(crate) fn advance(&self, _items: usize) {
            match *self {}
        }

        pub(crate) fn finish(&self) {
            match *self {}
        }

        pub(crate) fn abandon(&self) {
            match *self {}
        }
    }
}

#[cfg(feature = "progress")]
mod bar {

    use std::io::IsTerminal;
    use std::sync::atomic::{AtomicBool, Ordering};

    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

    /// A progress bar over items. It ends (once) when its last item is counted, when the call
    /// fails, or when it is dropped, and then moves the cursor to a new line, so that what the
    /// program prints next is not written over the bar.
    #[derive(Debug)]
    pub(crate) struct Progress {
        bar: ProgressBar,
        ended: AtomicBool,
    }

    impl Progress {
        /// A bar for `total` items (`None`: unknown, a counter).
        pub(crate) fn new(total: Option<usize>) -> Self {
            // indicatif hides a bar on a non-terminal too; deciding here keeps that a fact of
            // ours, whatever its version does.
            let target = if std::io::stderr().is_terminal() {
                ProgressDrawTarget::stderr()
            } else {
                ProgressDrawTarget::hidden()
            };
            let bar = ProgressBar::with_draw_target(total.map(|n| n as u64), target);
            let template = if total.is_some() {
                "{bar:40.cyan/blue} {pos}/{len} tasks  {per_sec}  eta {eta}"
            } else {
                "{spinner} {pos} tasks  {per_sec}"
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style);
            }
            Self { bar, ended: AtomicBool::new(false) }
        }

        /// A bar for what `items` will yield: with a total when its size hint is exact (a
        /// `Vec`, a range), a counter otherwise.
        pub(crate) fn for_items<I: Iterator>(items: &I) -> Self {
            let (low, high) = items.size_hint();
            Self::new((high == Some(low)).then_some(low))
        }

        pub(crate) fn advance(&self, items: usize) {
            self.bar.inc(items as u64);
            if self.bar.length().is_some_and(|total| self.bar.position() >= total) {
                self.finish();
            }
        }

        pub(crate) fn finish(&self) {
            if !self.ended.swap(true, Ordering::AcqRel) {
                self.bar.finish();
                self.new_line();
            }
        }

        pub(crate) fn abandon(&self) {
            if !self.ended.swap(true, Ordering::AcqRel) {
                self.bar.abandon();
                self.new_line();
            }
        }

        /// indicatif leaves the cursor at the end of the bar's line.
        fn new_line(&self) {
            if !self.bar.is_hidden() {
                eprintln!();
            }
        }
    }

    impl Drop for Progress {
        fn drop(&mut self) {
            self.abandon();
        }
    }
}
