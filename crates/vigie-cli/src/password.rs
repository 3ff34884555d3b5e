//! `vigie password-hash`: the argon2id hash of a dashboard password.

use std::io::{BufRead, IsTerminal, Write};

use crate::{Failure, Result, exit, out};

/// Shortest password taken.
const MIN_LEN: usize = 8;

pub(crate) fn hash() -> Result<u8> {
    let password = if std::io::stdin().is_terminal() {
        let first = ask("Password: ")?;
        let again = ask("Again: ")?;
        if first != again {
            return Err(Failure::config("the two passwords differ").hint("run it again"));
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    };
    if password.chars().count() < MIN_LEN {
        return Err(
            Failure::config(format!("the password is shorter than {MIN_LEN} characters"))
                .hint("choose a longer one (a passphrase of several words is best)"),
        );
    }
    let hash = vigie_web::hash_password(&password).map_err(Failure::runtime)?;
    out(format_args!("{hash}\n"))?;
    Ok(exit::OK)
}

/// Ask on the terminal with its echo off, restored whatever happens.
fn ask(prompt: &str) -> Result<String> {
    let mut err = std::io::stderr();
    write!(err, "{prompt}")?;
    err.flush()?;
    let stdin = std::io::stdin();
    let saved = rustix::termios::tcgetattr(&stdin).map_err(std::io::Error::from)?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(rustix::termios::LocalModes::ECHO);
    rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &quiet)
        .map_err(std::io::Error::from)?;
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &saved);
    writeln!(err)?;
    read?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}
