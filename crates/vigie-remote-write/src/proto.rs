//! Prometheus remote write 1.0's `WriteRequest`, encoded by hand: the
//! schema is four small messages (prometheus/prompb `remote.proto` and
//! `types.proto`), and only these fields are written:
//!
//! ```text
//! message WriteRequest { repeated TimeSeries timeseries = 1; }
//! message TimeSeries   { repeated Label labels = 1; repeated Sample samples = 2; }
//! message Label        { string name = 1; string value = 2; }
//! message Sample       { double value = 1; int64 timestamp = 2; }
//! ```

use std::collections::BTreeMap;

use vigie_metrics::Series;

/// Wire types of the protobuf encoding.
const LEN: u8 = 2;
const I64: u8 = 1;
const VARINT: u8 = 0;

fn key(out: &mut Vec<u8>, field: u8, wire: u8) {
    out.push(field << 3 | wire);
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field: its key, its length, `body`.
fn bytes(out: &mut Vec<u8>, field: u8, body: &[u8]) {
    key(out, field, LEN);
    varint(out, body.len() as u64);
    out.extend_from_slice(body);
}

fn label(out: &mut Vec<u8>, scratch: &mut Vec<u8>, name: &str, value: &str) {
    scratch.clear();
    bytes(scratch, 1, name.as_bytes());
    bytes(scratch, 2, value.as_bytes());
    bytes(out, 1, scratch);
}

/// The labels of `s` as the spec wants them: `__name__` among them, every
/// name once, sorted by name, none empty (to Prometheus an empty label is
/// no label: `node_systemd_unit_state`'s `type=""`); `extra` added where
/// `s` lacks the label (a series' own label wins, as with Prometheus's
/// external labels).
pub fn labels<'a>(s: &'a Series, extra: &'a BTreeMap<String, String>) -> Vec<(&'a str, &'a str)> {
    let mut out: Vec<(&str, &str)> = Vec::with_capacity(s.labels.len() + extra.len() + 1);
    out.push(("__name__", s.name.as_str()));
    out.extend(
        s.labels
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    for (k, v) in extra {
        if !s.labels.iter().any(|(n, _)| n == k) {
            out.push((k.as_str(), v.as_str()));
        }
    }
    out.sort_by(|a, b| a.0.cmp(b.0));
    out.dedup_by(|a, b| a.0 == b.0);
    out
}

/// The `WriteRequest` of `series`, each with one sample at `timestamp_ms`
/// (milliseconds since the epoch), `extra` labels added. Not compressed.
pub fn write_request(
    series: &[Series],
    extra: &BTreeMap<String, String>,
    timestamp_ms: i64,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(series.len() * 96);
    let mut ts = Vec::with_capacity(256);
    let mut scratch = Vec::with_capacity(128);
    let mut sample = Vec::with_capacity(20);
    for s in series {
        ts.clear();
        for (name, value) in labels(s, extra) {
            label(&mut ts, &mut scratch, name, value);
        }
        sample.clear();
        key(&mut sample, 1, I64);
        sample.extend_from_slice(&s.value.to_bits().to_le_bytes());
        key(&mut sample, 2, VARINT);
        // int64 is a plain varint of its two's complement.
        varint(&mut sample, timestamp_ms as u64);
        bytes(&mut ts, 2, &sample);
        bytes(&mut out, 1, &ts);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, labels: &[(&str, &str)], value: f64) -> Series {
        Series {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            value,
        }
    }

    #[test]
    fn labels_sorted_with_the_name_and_the_series_own_winning() {
        let extra = BTreeMap::from([
            ("instance".to_owned(), "web1".to_owned()),
            ("job".to_owned(), "vigie".to_owned()),
            ("A".to_owned(), "upper".to_owned()),
        ]);
        let s = series("up", &[("job", "own"), ("check", "web"), ("type", "")], 1.0);
        assert_eq!(
            labels(&s, &extra),
            [
                ("A", "upper"),
                ("__name__", "up"),
                ("check", "web"),
                ("instance", "web1"),
                ("job", "own"),
            ]
        );
    }

    /// `timeseries { labels { name: "__name__" value: "up" }
    /// samples { value: 1 timestamp: 1700000000000 } }`, spelt out from
    /// protobuf's encoding rules field by field (the real Prometheus of
    /// the integration tests decodes the rest).
    #[test]
    fn one_series_byte_for_byte() {
        let got = write_request(
            &[series("up", &[], 1.0)],
            &BTreeMap::new(),
            1_700_000_000_000,
        );
        let mut want = vec![0x0a, 0x22, 0x0a, 0x0e, 0x0a, 0x08];
        want.extend_from_slice(b"__name__");
        want.extend_from_slice(&[0x12, 0x02]);
        want.extend_from_slice(b"up");
        want.extend_from_slice(&[0x12, 0x10, 0x09]);
        want.extend_from_slice(&1.0f64.to_le_bytes());
        want.extend_from_slice(&[0x10, 0x80, 0xd0, 0x95, 0xff, 0xbc, 0x31]);
        assert_eq!(got, want);
    }

    #[test]
    fn varints_and_negative_timestamps() {
        let mut v = Vec::new();
        varint(&mut v, 300);
        assert_eq!(v, [0xac, 0x02]);
        v.clear();
        varint(&mut v, -1i64 as u64);
        assert_eq!(v.len(), 10);
        assert_eq!(v[9], 0x01);
    }
}
