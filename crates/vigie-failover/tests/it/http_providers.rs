//! Cloudflare and PowerDNS providers against local servers that check
//! each request as the public API documents it.

use crate::util::{blog, ip, moves_blog, rt};

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use vigie_failover::{Change, Cloudflare, PowerDns, Provider};
use vigie_testkit::servers::{self, Captured};

/// How many PATCH requests the server saw.
fn patches(seen: &Mutex<Vec<Captured>>) -> usize {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|c| c.method == "PATCH")
        .count()
}

#[test]
fn cloudflare_finds_the_zone_and_patches_the_record() {
    let content = Arc::new(Mutex::new("203.0.113.10".to_owned()));
    let state = content.clone();
    let (server, seen) = servers::scripted(Arc::new(move |req: &Captured| {
        if req.header("authorization") != Some("Bearer cf-token") {
            return (403, json!({"success": false, "errors": [{"code": 9109, "message": "Invalid access token"}]}).to_string());
        }
        let ok = |result: Value| {
            (
                200,
                json!({"success": true, "errors": [], "result": result}).to_string(),
            )
        };
        match (req.method.as_str(), req.target.as_str()) {
            ("GET", "/client/v4/zones?name=example.org") => {
                ok(json!([{"id": "z123", "name": "example.org"}]))
            }
            ("GET", "/client/v4/zones/z123/dns_records?type=A&name=blog.example.org") => ok(
                json!([{"id": "r1", "type": "A", "name": "blog.example.org", "content": *state.lock().unwrap(), "ttl": 60}]),
            ),
            ("PATCH", "/client/v4/zones/z123/dns_records/r1") => {
                let body: Value = serde_json::from_str(&req.body).unwrap();
                assert_eq!(req.header("content-type"), Some("application/json"));
                assert_eq!(body["ttl"], 60);
                *state.lock().unwrap() = body["content"].as_str().unwrap().to_owned();
                ok(json!({"id": "r1"}))
            }
            _ => (
                404,
                json!({"success": false, "errors": [{"code": 7003, "message": "No route"}]})
                    .to_string(),
            ),
        }
    }));
    let cf = Provider::Cloudflare(
        Cloudflare::new(&format!("http://{}/client/v4", server.addr), "cf-token").unwrap(),
    );
    rt().block_on(async {
        moves_blog(&cf, &["198.51.100.7"]).await;
        assert_eq!(
            cf.set(&blog(), &[ip("198.51.100.7")]).await.unwrap(),
            Change::Unchanged
        );
    });
    assert_eq!(*content.lock().unwrap(), "198.51.100.7");
    assert_eq!(patches(&seen), 1);
    let bad = Cloudflare::new(&format!("http://{}/client/v4", server.addr), "wrong").unwrap();
    let err = rt().block_on(bad.current(&blog())).unwrap_err();
    assert!(err.to_string().contains("Invalid access token"), "{err}");
}

#[test]
fn powerdns_replaces_the_rrset_with_one_patch() {
    let records = Arc::new(Mutex::new(vec!["203.0.113.10".to_owned()]));
    let state = records.clone();
    let (server, seen) = servers::scripted(Arc::new(move |req: &Captured| {
        if req.header("x-api-key") != Some("pdns-key") {
            return (401, json!({"error": "Unauthorized"}).to_string());
        }
        match (req.method.as_str(), req.target.as_str()) {
            ("GET", "/api/v1/servers/localhost/zones/example.org.") => {
                let recs: Vec<Value> = state
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|c| json!({"content": c, "disabled": false}))
                    .collect();
                (200, json!({"name": "example.org.", "rrsets": [
                    {"name": "blog.example.org.", "type": "A", "ttl": 60, "records": recs},
                    {"name": "example.org.", "type": "SOA", "ttl": 3600, "records": [{"content": "ns1 hostmaster 1 3600 900 604800 60", "disabled": false}]}
                ]}).to_string())
            }
            ("PATCH", "/api/v1/servers/localhost/zones/example.org.") => {
                let body: Value = serde_json::from_str(&req.body).unwrap();
                let rrset = &body["rrsets"][0];
                assert_eq!(rrset["changetype"], "REPLACE");
                assert_eq!(rrset["name"], "blog.example.org.");
                assert_eq!(rrset["type"], "A");
                assert_eq!(rrset["ttl"], 60);
                *state.lock().unwrap() = rrset["records"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["content"].as_str().unwrap().to_owned())
                    .collect();
                (204, String::new())
            }
            _ => (404, json!({"error": "Not Found"}).to_string()),
        }
    }));
    let pdns = Provider::PowerDns(
        PowerDns::new(&format!("http://{}", server.addr), "localhost", "pdns-key").unwrap(),
    );
    rt().block_on(moves_blog(&pdns, &["198.51.100.8", "198.51.100.7"]));
    assert_eq!(patches(&seen), 1);
    let bad = PowerDns::new(&format!("http://{}", server.addr), "localhost", "nope").unwrap();
    let err = rt().block_on(bad.current(&blog())).unwrap_err();
    assert!(
        err.to_string().contains("401 Unauthorized: Unauthorized"),
        "{err}"
    );
}

#[test]
fn a_redirect_to_another_host_gets_neither_the_token_nor_the_request() {
    let (elsewhere, seen_elsewhere) = servers::capture(&[200]);
    let target = format!("http://{}/client/v4/zones?name=example.org", elsewhere.addr);
    let (server, _) = servers::scripted(Arc::new(move |_: &Captured| (307, target.clone())));
    let cf = Cloudflare::new(&format!("http://{}/client/v4", server.addr), "cf-token").unwrap();
    let err = rt().block_on(cf.current(&blog())).unwrap_err();
    assert!(err.to_string().contains("not followed"), "{err}");
    assert!(seen_elsewhere.lock().unwrap().is_empty());
}
