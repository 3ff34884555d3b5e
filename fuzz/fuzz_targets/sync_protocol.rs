//! The sync protocol decoder takes any bytes: errors, never panics, and
//! what it decodes encodes back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigie_sync::proto::{self, Msg};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Msg::decode(data) {
        assert_eq!(Msg::decode(&m.encode()).unwrap(), m);
    }
    let mut r = data;
    while proto::read(&mut r).is_ok() {}
});
