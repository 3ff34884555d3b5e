//! `vigie generate`: the manual pages and shell completions, made from
//! the same clap definitions as `--help`, so that they never drift and
//! packaging needs no build script (`scripts/package-deb` runs it).
//!
//! One page per visible command (`vigie.1`, `vigie-run.1`,
//! `vigie-failover-switch.1`, …), each with a SEE ALSO naming its parent
//! and its subcommands: only pages that are generated alongside.

use std::io::Write as _;
use std::path::Path;

use clap::CommandFactory;
use clap_mangen::roff::{Roff, bold, roman};

use crate::args::{Cli, GenerateWhat};
use crate::{Failure, Result, exit};

pub(crate) fn run(what: &GenerateWhat) -> Result<u8> {
    match what {
        GenerateWhat::Man { dir } => {
            let written = write_man(dir)?;
            eprintln!("wrote {written} manual pages in {}", dir.display());
        }
        GenerateWhat::Completions { shell } => {
            let mut buf = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "vigie", &mut buf);
            crate::out_bytes(&buf)?;
        }
    }
    Ok(exit::OK)
}

/// Write every page into `dir`, each atomically; returns how many.
fn write_man(dir: &Path) -> Result<usize> {
    if !dir.is_dir() {
        return Err(
            Failure::config(format!("{} is not a directory", dir.display())).hint(format!(
                "create it first (mkdir -p {}), or name another",
                dir.display()
            )),
        );
    }
    let pages = man_pages()?;
    for (name, roff) in &pages {
        let path = dir.join(name);
        vigie_store::write_atomic(&path, roff, 0o644)
            .map_err(|e| Failure::runtime(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(pages.len())
}

/// A command's page: its name (`vigie-failover-switch`), the command,
/// its parent's page and its subcommands' pages.
struct Page {
    name: String,
    cmd: clap::Command,
    parent: Option<String>,
    children: Vec<String>,
}

/// Every page as (file name, roff), `vigie.1` first.
pub(crate) fn man_pages() -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut root = Cli::command().disable_help_subcommand(true);
    root.build();
    let mut pages = Vec::new();
    collect(&root, None, &mut pages);
    pages
        .iter()
        .map(|p| Ok((format!("{}.1", p.name), render(p)?)))
        .collect()
}

fn page_name(cmd: &clap::Command) -> String {
    cmd.get_display_name()
        .unwrap_or_else(|| cmd.get_name())
        .to_owned()
}

fn visible(cmd: &clap::Command) -> impl Iterator<Item = &clap::Command> {
    cmd.get_subcommands().filter(|s| !s.is_hide_set())
}

fn collect(cmd: &clap::Command, parent: Option<&str>, pages: &mut Vec<Page>) {
    let name = page_name(cmd);
    pages.push(Page {
        name: name.clone(),
        cmd: cmd.clone(),
        parent: parent.map(str::to_owned),
        children: visible(cmd).map(page_name).collect(),
    });
    for sub in visible(cmd) {
        collect(sub, Some(&name), pages);
    }
}

fn render(page: &Page) -> std::io::Result<Vec<u8>> {
    let man = clap_mangen::Man::new(page.cmd.clone())
        .source(format!("vigie {}", env!("CARGO_PKG_VERSION")))
        .manual("vigie manual");
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    if page.cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut out)?;
    }
    if !page.children.is_empty() {
        man.render_subcommands_section(&mut out)?;
    }
    extra_sections(&page.cmd).to_writer(&mut out)?;
    see_also(page).to_writer(&mut out)?;
    if page.parent.is_none() {
        man.render_version_section(&mut out)?;
    }
    out.flush()?;
    Ok(out)
}

/// The text after `--help`, one section per paragraph that opens with
/// its title ("Examples:" → EXAMPLES), its lines kept as written.
fn extra_sections(cmd: &clap::Command) -> Roff {
    let mut roff = Roff::new();
    let Some(text) = cmd.get_after_long_help().or_else(|| cmd.get_after_help()) else {
        return roff;
    };
    let text = text.to_string();
    for paragraph in text.split("\n\n") {
        let (title, body) = match paragraph.split_once(':') {
            Some((t, rest)) if !t.contains('\n') && t.len() < 30 => (t.to_uppercase(), rest),
            _ => ("NOTES".to_owned(), paragraph),
        };
        roff.control("SH", [title.as_str()]);
        roff.control("nf", []);
        for line in dedent(body) {
            roff.text([roman(line)]);
        }
        roff.control("fi", []);
    }
    roff
}

/// The lines of a paragraph's body as written, less the indentation
/// they share (text on the title's line stands alone).
fn dedent(body: &str) -> Vec<&str> {
    let mut lines = body.lines();
    let first = lines.next().map(str::trim).filter(|l| !l.is_empty());
    let rest: Vec<&str> = lines.collect();
    let indent = rest
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    first
        .into_iter()
        .chain(rest.iter().map(|l| l.get(indent..).unwrap_or("")))
        .collect()
}

/// SEE ALSO: the parent's page, the root's, the subcommands' pages.
fn see_also(page: &Page) -> Roff {
    let mut names: Vec<&str> = Vec::new();
    if let Some(parent) = &page.parent {
        if parent != "vigie" {
            names.push("vigie");
        }
        names.push(parent);
    }
    names.extend(page.children.iter().map(String::as_str));
    let mut roff = Roff::new();
    if names.is_empty() {
        return roff;
    }
    roff.control("SH", ["SEE ALSO"]);
    let mut line = Vec::new();
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            line.push(roman(", "));
        }
        line.push(bold(*name));
        line.push(roman("(1)"));
    }
    roff.text(line);
    roff
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command, hidden ones included, with its path.
    fn commands() -> Vec<(String, clap::Command)> {
        fn walk(cmd: &clap::Command, path: &str, all: &mut Vec<(String, clap::Command)>) {
            all.push((path.to_owned(), cmd.clone()));
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), all);
            }
        }
        let mut root = Cli::command().disable_help_subcommand(true);
        root.build();
        let mut all = Vec::new();
        walk(&root, "vigie", &mut all);
        all
    }

    /// Every text a user reads in `--help`, with where it is.
    fn help_texts() -> Vec<(String, String)> {
        let mut texts = Vec::new();
        for (path, cmd) in commands() {
            for t in [
                cmd.get_about(),
                cmd.get_long_about(),
                cmd.get_after_help(),
                cmd.get_after_long_help(),
            ]
            .into_iter()
            .flatten()
            {
                texts.push((path.clone(), t.to_string()));
            }
            for arg in cmd.get_arguments() {
                for t in [arg.get_help(), arg.get_long_help()].into_iter().flatten() {
                    texts.push((format!("{path} {}", arg.get_id()), t.to_string()));
                }
            }
        }
        texts
    }

    #[test]
    fn every_command_says_what_it_does() {
        let missing: Vec<String> = commands()
            .into_iter()
            .filter(|(_, c)| {
                c.get_about()
                    .is_none_or(|a| a.to_string().trim().is_empty())
            })
            .map(|(p, _)| p)
            .collect();
        assert!(missing.is_empty(), "commands without an about: {missing:?}");
    }

    #[test]
    fn every_visible_argument_has_help() {
        let mut missing = Vec::new();
        for (path, cmd) in commands() {
            for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {}", arg.get_id()));
                }
            }
        }
        assert!(missing.is_empty(), "arguments without help: {missing:?}");
    }

    /// The top line once read "vigie's command line: clap types,
    /// subcommands, output and exit codes" (the CLI crate's description).
    #[test]
    fn help_is_written_for_operators_not_developers() {
        let developer = [
            "clap",
            "vigie-cli",
            "vigie_cli",
            "crate",
            "struct ",
            "enum ",
            "TODO",
            "FIXME",
        ];
        let found: Vec<String> = help_texts()
            .into_iter()
            .filter_map(|(place, text)| {
                developer
                    .iter()
                    .find(|d| text.contains(**d))
                    .map(|d| format!("{place}: {d:?} in {text:?}"))
            })
            .collect();
        assert!(found.is_empty(), "developer phrasing in help: {found:#?}");
        let root = Cli::command();
        let about = root
            .get_about()
            .map(ToString::to_string)
            .unwrap_or_default();
        assert!(about.starts_with("Supervise"), "{about}");
    }

    #[test]
    fn the_main_help_ends_with_examples_and_where_the_docs_are() {
        let help = Cli::command().render_help().to_string();
        let tail = &help[help.find("Examples:").expect(&help)..];
        assert!(tail.contains("vigie validate"), "{tail}");
        assert!(tail.contains("man vigie"), "{tail}");
        assert!(tail.contains("/usr/share/doc/vigie"), "{tail}");
    }

    #[test]
    fn one_page_per_visible_command_and_none_for_hidden_ones() {
        let pages = man_pages().unwrap();
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        for expected in [
            "vigie.1",
            "vigie-run.1",
            "vigie-status.1",
            "vigie-failover-switch.1",
            "vigie-self-check.1",
            "vigie-generate-man.1",
        ] {
            assert!(names.contains(&expected), "{expected} not in {names:?}");
        }
        assert!(
            !names
                .iter()
                .any(|n| n.contains("sync-receive") || n.contains("help")),
            "{names:?}"
        );
        let top = String::from_utf8(pages[0].1.clone()).unwrap();
        assert!(top.contains(".SH EXAMPLES"), "{top}");
        assert!(top.contains(".SH \"SEE ALSO\""), "{top}");
    }
}
