//! The OVH provider against a local server that checks every request as
//! OVH documents it: signature, headers, the clock offset from
//! /auth/time, the record look-up, the update and the zone refresh.

use crate::util::{blog, changes_blog, ip, rt};

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use vigie_failover::ovh::signature;
use vigie_failover::{Change, Ovh, Provider};
use vigie_testkit::servers::{self, Captured};

const AK: &str = "7kbG7Bk7S9Nt7ZSV";
const AS: &str = "EXEgWIz07P0HYwtQDs7cNIqCiQaWSuHF";
const CK: &str = "MtSwSrPpNjqfVSmJhLbPyr2i45lSwPU1";
/// OVH's clock in the test: far from ours, so the offset must be used.
const OVH_NOW: i64 = 1_700_000_000;

type Zone = Arc<Mutex<BTreeMap<u64, String>>>;
type Seen = Arc<Mutex<Vec<Captured>>>;

/// A fake OVH API holding `records` (id → address) for blog.example.org.
fn fake_ovh(records: &[(u64, &str)]) -> (servers::Running, Seen, Zone) {
    let state: Arc<Mutex<BTreeMap<u64, String>>> = Arc::new(Mutex::new(
        records
            .iter()
            .map(|(id, ip)| (*id, (*ip).to_owned()))
            .collect(),
    ));
    let zone = state.clone();
    let addr = Arc::new(Mutex::new(String::new()));
    let base = addr.clone();
    let (server, seen) = servers::scripted(Arc::new(move |req: &Captured| {
        let path = req.target.as_str();
        if path == "/1.0/auth/time" {
            return (200, OVH_NOW.to_string());
        }
        // Every other call must be signed as documented.
        let url = format!("http://{}{}", base.lock().unwrap(), path);
        let ts: i64 = req
            .header("x-ovh-timestamp")
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let expected = signature(AS, CK, &req.method, &url, &req.body, ts);
        if req.header("x-ovh-application") != Some(AK)
            || req.header("x-ovh-consumer") != Some(CK)
            || req.header("x-ovh-signature") != Some(expected.as_str())
            || (ts - OVH_NOW).abs() > 5
        {
            return (400, json!({"message": "Invalid signature"}).to_string());
        }
        let mut zone = zone.lock().unwrap();
        match (req.method.as_str(), path) {
            ("GET", "/1.0/domain/zone/example.org/record?fieldType=A&subDomain=blog") => {
                (200, json!(zone.keys().collect::<Vec<_>>()).to_string())
            }
            ("POST", "/1.0/domain/zone/example.org/refresh") => (200, "null".into()),
            ("POST", "/1.0/domain/zone/example.org/record") => {
                let body: Value = serde_json::from_str(&req.body).unwrap();
                assert_eq!(body["fieldType"], "A");
                assert_eq!(body["subDomain"], "blog");
                let id = zone.keys().max().copied().unwrap_or(100) + 1;
                zone.insert(id, body["target"].as_str().unwrap().to_owned());
                (200, json!({"id": id}).to_string())
            }
            (m, p) if p.starts_with("/1.0/domain/zone/example.org/record/") => {
                let id: u64 = p.rsplit('/').next().unwrap().parse().unwrap();
                match m {
                    "GET" => match zone.get(&id) {
                        Some(t) => (200, json!({"id": id, "fieldType": "A", "subDomain": "blog", "target": t, "ttl": 60, "zone": "example.org"}).to_string()),
                        None => (404, json!({"message": "not found"}).to_string()),
                    },
                    "PUT" => {
                        let body: Value = serde_json::from_str(&req.body).unwrap();
                        assert_eq!(body["ttl"], 60);
                        zone.insert(id, body["target"].as_str().unwrap().to_owned());
                        (200, "null".into())
                    }
                    "DELETE" => {
                        zone.remove(&id);
                        (200, "null".into())
                    }
                    _ => (405, "{}".into()),
                }
            }
            _ => (
                404,
                json!({"message": format!("no route {path}")}).to_string(),
            ),
        }
    }));
    *addr.lock().unwrap() = server.addr.to_string();
    (server, seen, state)
}

#[test]
fn moves_the_record_with_signed_calls_then_refreshes_the_zone() {
    let (server, seen, state) = fake_ovh(&[(42, "203.0.113.10")]);
    let ovh = Ovh::new(&format!("http://{}/1.0", server.addr), AK, AS, CK).unwrap();
    let ovh = Provider::Ovh(ovh);
    rt().block_on(async {
        changes_blog(&ovh, &[ip("198.51.100.7")]).await;
        assert_eq!(
            ovh.set(&blog(), &[ip("198.51.100.7")]).await.unwrap(),
            Change::Unchanged
        );
    });
    assert_eq!(
        state.lock().unwrap().get(&42).map(String::as_str),
        Some("198.51.100.7")
    );
    let calls: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|c| format!("{} {}", c.method, c.target))
        .collect();
    let put = calls
        .iter()
        .position(|c| c == "PUT /1.0/domain/zone/example.org/record/42")
        .expect("a PUT");
    let refresh = calls
        .iter()
        .position(|c| c == "POST /1.0/domain/zone/example.org/refresh")
        .expect("a refresh");
    assert!(put < refresh, "refresh after the change: {calls:?}");
    assert_eq!(
        calls.iter().filter(|c| c.ends_with("/auth/time")).count(),
        1,
        "the clock offset is read once"
    );
    assert_eq!(
        calls.iter().filter(|c| c.contains("refresh")).count(),
        1,
        "no refresh when nothing changed"
    );
}

#[test]
fn grows_and_shrinks_the_record_set() {
    let (server, _seen, state) = fake_ovh(&[(42, "203.0.113.10"), (43, "203.0.113.11")]);
    let ovh = Ovh::new(&format!("http://{}/1.0", server.addr), AK, AS, CK).unwrap();
    rt().block_on(async {
        ovh.set(&blog(), &[ip("198.51.100.7")]).await.unwrap();
        assert_eq!(ovh.current(&blog()).await.unwrap(), [ip("198.51.100.7")]);
        ovh.set(&blog(), &[ip("198.51.100.7"), ip("198.51.100.8")])
            .await
            .unwrap();
        assert_eq!(
            ovh.current(&blog()).await.unwrap(),
            [ip("198.51.100.7"), ip("198.51.100.8")]
        );
    });
    assert_eq!(state.lock().unwrap().len(), 2);
}

#[test]
fn a_wrong_secret_is_reported_with_ovhs_message() {
    let (server, _seen, state) = fake_ovh(&[(42, "203.0.113.10")]);
    let ovh = Ovh::new(
        &format!("http://{}/1.0", server.addr),
        AK,
        "wrong-secret",
        CK,
    )
    .unwrap();
    let err = rt()
        .block_on(ovh.set(&blog(), &[ip("198.51.100.7")]))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("400 Bad Request: Invalid signature"),
        "{err}"
    );
    assert_eq!(
        state.lock().unwrap().get(&42).map(String::as_str),
        Some("203.0.113.10")
    );
}

#[test]
fn named_endpoints() {
    assert_eq!(
        vigie_failover::ovh::endpoint("ovh-eu"),
        Some("https://eu.api.ovh.com/1.0")
    );
    assert!(Ovh::new("not a url", AK, AS, CK).is_err());
}
