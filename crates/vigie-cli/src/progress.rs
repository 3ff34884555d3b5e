//! Progress bars for long work (`vigie sync --once`; backups next), drawn
//! by indicatif on stderr, and only on a terminal: piped or in a log,
//! nothing is drawn. The bar's characters carry its meaning (`#` done,
//! `·` to do), so nothing is said by colour alone; the colour itself
//! goes through `console`, which honours `NO_COLOR`.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The bar's width in characters.
const WIDTH: usize = 24;

/// A bar on stderr if stderr is a terminal, `None` otherwise (the caller
/// then does the work without watching it). It starts as
/// `PREFIX: MESSAGE` ([`waiting_style`]) until the caller knows the amount
/// of work and switches to [`bar_style`].
pub(crate) fn on_terminal(prefix: &str, message: &'static str) -> Option<ProgressBar> {
    std::io::stderr().is_terminal().then(|| {
        ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(10))
            .with_style(waiting_style())
            .with_prefix(prefix.to_owned())
            .with_message(message)
    })
}

/// `PREFIX [#####·····]  45%  MESSAGE`: a known amount of work.
pub(crate) fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template(&format!(
        "{{prefix}} [{{bar:{WIDTH}.cyan}}] {{percent:>3}}%  {{msg}}"
    ))
    .expect("a valid template")
    .progress_chars("#·")
}

/// `PREFIX: MESSAGE`: before the amount of work is known.
pub(crate) fn waiting_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix}: {msg}").expect("a valid template")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_templates_parse() {
        let _ = super::bar_style();
        let _ = super::waiting_style();
    }
}
