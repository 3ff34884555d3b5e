//! `vigie failover status|switch` and `vigie drill failover`.

use std::time::Duration;

use vigie_config::{Config, Failover};
use vigie_core::Timestamp;
use vigie_failover::{Provider, Side, record, switch};

use crate::output::{ago, millis};
use crate::run::runtime;
use crate::{
    Cli, FailoverAction, Failure, Result, SwitchTo, exit, load, out, out_json, out_table, state_dir,
};

fn find<'a>(config: &'a Config, name: &str) -> Result<&'a Failover> {
    config.failovers.get(name).ok_or_else(|| {
        let known: Vec<&str> = config.failovers.keys().map(String::as_str).collect();
        let hint = if known.is_empty() {
            "declare one under [failover.NAME]".to_owned()
        } else {
            format!("known failovers: {}", known.join(", "))
        };
        Failure::config(format!("no failover named `{name}`")).hint(hint)
    })
}

fn provider(config: &Config, f: &Failover) -> Result<Provider> {
    let p = config
        .dns
        .get(&f.dns)
        .ok_or_else(|| Failure::config(format!("no DNS provider `{}`", f.dns)))?;
    Provider::from_config(p).map_err(|e| Failure::config(e.to_string()))
}

fn store(cli: &Cli, config: &Config) -> Result<vigie_store::Store> {
    vigie_store::Store::open(&state_dir(cli, config)).map_err(|e| Failure::runtime(e.to_string()))
}

pub(crate) fn run(cli: &Cli, action: &FailoverAction) -> Result<u8> {
    let loaded = load(cli)?;
    let config = &loaded.config;
    match action {
        FailoverAction::Status { name, json } => status(cli, config, name.as_deref(), *json),
        FailoverAction::Failback { name } => {
            let f = find(config, name)?;
            if let Some(w) = vigie_failover::failback_warning(f) {
                out(format_args!("warning: {w}\n"))?;
            }
            switch_to(cli, config, name, Side::Primary)
        }
        FailoverAction::Switch { name, to } => {
            let side = match to {
                SwitchTo::Primary => Side::Primary,
                SwitchTo::Backup => Side::Backup,
            };
            switch_to(cli, config, name, side)
        }
    }
}

/// The side's values (the current public address for a `"public-ip"`
/// backup).
fn values(rt: &tokio::runtime::Runtime, f: &Failover, side: Side) -> Result<Vec<std::net::IpAddr>> {
    let client = vigie_failover::http_client().map_err(|e| Failure::runtime(e.to_string()))?;
    rt.block_on(side.values(f, &client))
        .map_err(|e| Failure::runtime(format!("failover {}: {e}", f.name)))
}

fn switch_to(cli: &Cli, config: &Config, name: &str, side: Side) -> Result<u8> {
    let f = find(config, name)?;
    let p = provider(config, f)?;
    let rt = runtime()?;
    let values = values(&rt, f, side)?;
    let rec = record(f, false);
    let done = rt
        .block_on(switch(&p, f, &rec, &values))
        .map_err(|e| Failure::runtime(format!("failover {name}: {e}")))?;
    let mut s = store(cli, config)?;
    s.set_failover_state(name, side.as_str(), Timestamp::now(), "switched by hand")
        .map_err(|e| Failure::runtime(e.to_string()))?;
    if side == Side::Backup {
        vigie_failover::fence(&state_dir(cli, config), f);
    }
    let what = match done.change {
        vigie_failover::Change::Unchanged => "already pointed there".to_owned(),
        vigie_failover::Change::Changed { .. } => {
            format!("updated in {}", millis(done.update))
        }
    };
    out(format_args!(
        "{name}: {} → {} ({what}, served by the authoritative servers after {})\n",
        rec.name,
        side.as_str(),
        millis(done.verify)
    ))?;
    Ok(exit::OK)
}

fn status(cli: &Cli, config: &Config, only: Option<&str>, json: bool) -> Result<u8> {
    let names: Vec<&String> = match only {
        Some(n) => vec![&find(config, n)?.name],
        None => config.failovers.keys().collect(),
    };
    let s = store(cli, config)?;
    let daemon = daemon_view(cli, config);
    let rt = runtime()?;
    let now = Timestamp::now().millis();
    let mut rows = Vec::new();
    let mut items = Vec::new();
    let mut unknown = false;
    for name in names {
        let f = &config.failovers[name];
        let rec = record(f, false);
        let current = match provider(config, f) {
            Ok(p) => rt.block_on(p.current(&rec)).map_err(|e| e.to_string()),
            Err(e) => Err(e.message),
        };
        let side = current.as_ref().map(|v| Side::of(f, v));
        unknown |= current.is_err();
        let state = s
            .failover_state(name)
            .map_err(|e| Failure::runtime(e.to_string()))?;
        let values = current.as_ref().map_or_else(
            |e| format!("error: {e}"),
            |v| {
                v.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        );
        let seen = daemon.as_ref().and_then(|d| {
            d.as_array()?
                .iter()
                .find(|x| x["name"].as_str() == Some(name.as_str()))
                .cloned()
        });
        rows.push(vec![
            name.clone(),
            format!("{}.{}", rec.name, rec.zone),
            side.map_or("unknown", Side::as_str).to_owned(),
            values.clone(),
            state.as_ref().map_or_else(
                || "-".to_owned(),
                |st| {
                    format!(
                        "{} {} ({})",
                        st.side,
                        ago(st.since.millis(), now),
                        st.reason
                    )
                },
            ),
            seen.as_ref()
                .map_or_else(|| "-".to_owned(), |x| votes(config, x)),
        ]);
        items.push(serde_json::json!({
            "name": name,
            "record": format!("{}.{}", rec.name, rec.zone),
            "side": side.map_or("unknown", Side::as_str),
            "values": values,
            "last_switch": state,
            "daemon": seen,
        }));
    }
    if json {
        out_json(&serde_json::Value::from(items))?;
    } else {
        out_table(
            &[
                "FAILOVER",
                "RECORD",
                "POINTS AT",
                "VALUES",
                "LAST SWITCH",
                "VOTES",
            ],
            &rows,
        )?;
    }
    Ok(if unknown { exit::RUNTIME } else { exit::OK })
}

/// The running daemon's view of the failovers (this node's vote and the
/// last tally), if it runs and answers.
fn daemon_view(cli: &Cli, config: &Config) -> Option<serde_json::Value> {
    let addr = fs_err::read_to_string(state_dir(cli, config).join(crate::run::ADDR_FILE)).ok()?;
    crate::run::daemon_call(
        config,
        addr.trim(),
        reqwest::Method::GET,
        "/api/v1/failover",
        None,
    )
    .ok()
    .filter(|(status, _)| status.is_success())
    .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
}

/// The VOTES column of a failover the daemon reports as `seen`: the last
/// tally's votes, or this node's own before any tally.
fn votes(config: &Config, seen: &serde_json::Value) -> String {
    let tally = seen["tally"]["votes"].as_array().map(|votes| {
        votes
            .iter()
            .map(|v| {
                format!(
                    "{} {}",
                    v["node"].as_str().unwrap_or("?"),
                    v["verdict"].as_str().unwrap_or("?")
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    });
    tally.unwrap_or_else(|| {
        format!(
            "{} {}",
            config.node.name,
            seen["vote"]["verdict"].as_str().unwrap_or("?")
        )
    })
}

pub(crate) fn drill(cli: &Cli, name: &str) -> Result<u8> {
    let loaded = load(cli)?;
    let config = &loaded.config;
    let f = find(config, name)?;
    if f.drill_record.is_none() {
        return Err(
            Failure::config(format!("failover {name} has no drill_record")).hint(
                "add drill_record = \"drill-blog\" (a name in the same zone that may move freely)",
            ),
        );
    }
    let p = provider(config, f)?;
    let rec = record(f, true);
    let rt = runtime()?;
    let mut rows = Vec::new();
    let mut total = Duration::ZERO;
    let backup = values(&rt, f, Side::Backup)?;
    for (stage, values) in [("to backup", &backup), ("back to primary", &f.primary)] {
        let done = rt
            .block_on(switch(&p, f, &rec, values))
            .map_err(|e| Failure::runtime(format!("drill {name}, {stage}: {e}")))?;
        total += done.update + done.verify;
        rows.push(vec![
            stage.to_owned(),
            millis(done.update),
            millis(done.verify),
            millis(done.update + done.verify),
        ]);
    }
    out(format_args!(
        "drill of {name} on {}.{}\n",
        rec.name, rec.zone
    ))?;
    out_table(&["STAGE", "UPDATE", "SERVED AFTER", "TOTAL"], &rows)?;
    out(format_args!("switch and back in {}\n", millis(total)))?;
    Ok(exit::OK)
}
