//! A DNS provider that is any program: for the services vigie has no
//! client for. vigie runs `ARGV get ZONE NAME TYPE` (the program prints
//! the current values, one per line) and `ARGV set ZONE NAME TYPE TTL
//! VALUE…` (exit 0 when done), without a shell.

use std::net::IpAddr;
use std::time::Duration;

use crate::{Change, DnsError, RecordSpec};

/// The provider's `kind`, which names it in messages.
const NAME: &str = vigie_config::DnsKind::Command.name();

#[derive(Debug)]
pub struct CommandProvider {
    argv: Vec<String>,
    timeout: Duration,
}

fn rtype(rec: &RecordSpec) -> &'static str {
    if rec.ipv6 { "AAAA" } else { "A" }
}

impl CommandProvider {
    pub fn new(argv: Vec<String>, timeout: Duration) -> Result<Self, DnsError> {
        if argv.first().is_none_or(String::is_empty) {
            return Err(DnsError::Config(
                "the command provider needs a program in `argv`".into(),
            ));
        }
        Ok(Self { argv, timeout })
    }

    async fn run(&self, args: Vec<String>) -> Result<String, DnsError> {
        let mut argv = self.argv.clone();
        argv.extend(args);
        let err = |message: String| DnsError::Api {
            provider: NAME,
            message,
        };
        let out = tokio::time::timeout(self.timeout, vigie_net::command::run_argv(&argv, &[]))
            .await
            .map_err(|_| err(format!("{} timed out after {:?}", argv[0], self.timeout)))?
            .map_err(|e| err(format!("cannot run {}: {e}", argv[0])))?;
        if out.status != Some(0) {
            return Err(err(format!(
                "{} {} exited {:?}: {}",
                argv[0],
                argv.get(self.argv.len()).map_or("", String::as_str),
                out.status,
                vigie_net::command::first_line(&out.text)
            )));
        }
        Ok(out.text)
    }

    pub async fn current(&self, rec: &RecordSpec) -> Result<Vec<IpAddr>, DnsError> {
        let text = self
            .run(vec![
                "get".into(),
                rec.zone.clone(),
                rec.name.clone(),
                rtype(rec).into(),
            ])
            .await?;
        let mut out = Vec::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            out.push(line.parse().map_err(|_| DnsError::Api {
                provider: NAME,
                message: format!("`get` printed {line:?}, not an address"),
            })?);
        }
        Ok(crate::sorted(out))
    }

    pub async fn set(&self, rec: &RecordSpec, values: &[IpAddr]) -> Result<Change, DnsError> {
        let current = self.current(rec).await?;
        let wanted = crate::sorted(values.to_vec());
        if current == wanted {
            return Ok(Change::Unchanged);
        }
        let mut args = vec![
            "set".into(),
            rec.zone.clone(),
            rec.name.clone(),
            rtype(rec).into(),
            rec.ttl.to_string(),
        ];
        args.extend(wanted.iter().map(ToString::to_string));
        self.run(args).await?;
        Ok(Change::Changed { from: current })
    }
}
