//! The series chunk decoder takes any bytes: errors, never panics, and
//! what it decodes encodes back to the same values, bit for bit. The
//! input is tried as a whole chunk and, past the checksum, as a body
//! sealed as the format says (the low 32 bits of XXH3-64, little-endian).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigie_store::series::chunk;

fn round_trip(bytes: &[u8]) {
    let Ok(c) = chunk::decode(bytes) else { return };
    let cols: Vec<&[f64]> = c.columns.iter().map(Vec::as_slice).collect();
    let again = chunk::decode(&chunk::encode(&c.ts, &cols).unwrap()).unwrap();
    assert_eq!(again.ts, c.ts);
    for (a, b) in again.columns.iter().zip(&c.columns) {
        let a: Vec<u64> = a.iter().map(|v| v.to_bits()).collect();
        let b: Vec<u64> = b.iter().map(|v| v.to_bits()).collect();
        assert_eq!(a, b);
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip(data);
    let mut sealed = data.to_vec();
    sealed.extend_from_slice(&(xxhash_rust::xxh3::xxh3_64(data) as u32).to_le_bytes());
    round_trip(&sealed);
});
