//! `/proc/meminfo` (collector `meminfo`): one gauge per field,
//! `node_memory_<Field>_bytes` for fields in kB (× 1024), the field's
//! name with `(anon)` written `_anon`; `HugePages_*` are counts, named
//! without a unit. Fields this table does not know are left out, as
//! node_exporter does.

use super::number;
use crate::{Kind, Sample};

/// A field in kB: its key in the file, and its metric name and help.
macro_rules! kb {
    ($key:literal, $name:literal) => {
        (
            $key,
            concat!("node_memory_", $name, "_bytes"),
            concat!("Memory information field ", $name, "_bytes."),
        )
    };
}

/// A field without a unit (a count).
macro_rules! count {
    ($key:literal) => {
        (
            $key,
            concat!("node_memory_", $key),
            concat!("Memory information field ", $key, "."),
        )
    };
}

const FIELDS: &[(&str, &str, &str)] = &[
    kb!("MemTotal", "MemTotal"),
    kb!("MemFree", "MemFree"),
    kb!("MemAvailable", "MemAvailable"),
    kb!("Buffers", "Buffers"),
    kb!("Cached", "Cached"),
    kb!("SwapCached", "SwapCached"),
    kb!("Active", "Active"),
    kb!("Inactive", "Inactive"),
    kb!("Active(anon)", "Active_anon"),
    kb!("Inactive(anon)", "Inactive_anon"),
    kb!("Active(file)", "Active_file"),
    kb!("Inactive(file)", "Inactive_file"),
    kb!("Unevictable", "Unevictable"),
    kb!("Mlocked", "Mlocked"),
    kb!("SwapTotal", "SwapTotal"),
    kb!("SwapFree", "SwapFree"),
    kb!("Zswap", "Zswap"),
    kb!("Zswapped", "Zswapped"),
    kb!("Dirty", "Dirty"),
    kb!("Writeback", "Writeback"),
    kb!("AnonPages", "AnonPages"),
    kb!("Mapped", "Mapped"),
    kb!("Shmem", "Shmem"),
    kb!("KReclaimable", "KReclaimable"),
    kb!("Slab", "Slab"),
    kb!("SReclaimable", "SReclaimable"),
    kb!("SUnreclaim", "SUnreclaim"),
    kb!("KernelStack", "KernelStack"),
    kb!("PageTables", "PageTables"),
    kb!("SecPageTables", "SecPageTables"),
    kb!("NFS_Unstable", "NFS_Unstable"),
    kb!("Bounce", "Bounce"),
    kb!("WritebackTmp", "WritebackTmp"),
    kb!("CommitLimit", "CommitLimit"),
    kb!("Committed_AS", "Committed_AS"),
    kb!("VmallocTotal", "VmallocTotal"),
    kb!("VmallocUsed", "VmallocUsed"),
    kb!("VmallocChunk", "VmallocChunk"),
    kb!("Percpu", "Percpu"),
    kb!("HardwareCorrupted", "HardwareCorrupted"),
    kb!("AnonHugePages", "AnonHugePages"),
    kb!("ShmemHugePages", "ShmemHugePages"),
    kb!("ShmemPmdMapped", "ShmemPmdMapped"),
    kb!("FileHugePages", "FileHugePages"),
    kb!("FilePmdMapped", "FilePmdMapped"),
    kb!("CmaTotal", "CmaTotal"),
    kb!("CmaFree", "CmaFree"),
    kb!("Unaccepted", "Unaccepted"),
    kb!("Balloon", "Balloon"),
    count!("HugePages_Total"),
    count!("HugePages_Free"),
    count!("HugePages_Rsvd"),
    count!("HugePages_Surp"),
    kb!("Hugepagesize", "Hugepagesize"),
    kb!("Hugetlb", "Hugetlb"),
    kb!("DirectMap4k", "DirectMap4k"),
    kb!("DirectMap2M", "DirectMap2M"),
    kb!("DirectMap1G", "DirectMap1G"),
];

pub fn samples(text: &str, out: &mut Vec<Sample>) -> Result<(), String> {
    let mut any = false;
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let Some((_, name, help)) = FIELDS.iter().find(|(k, _, _)| *k == key) else {
            continue;
        };
        let mut fields = rest.split_ascii_whitespace();
        let value: u64 = number(fields.next(), key)?;
        let value = match fields.next() {
            None => value as f64,
            Some("kB") => value as f64 * 1024.0,
            Some(unit) => return Err(format!("{key} is in `{unit}`, not kB")),
        };
        out.push(Sample::new(name, Kind::Gauge, help, value));
        any = true;
    }
    if any {
        Ok(())
    } else {
        Err("no field vigie knows (MemTotal, MemFree, …)".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fixture::{read, value};

    #[test]
    fn this_machines_meminfo() {
        let text = read("proc/meminfo");
        let mut out = Vec::new();
        samples(&text, &mut out).unwrap();
        let kb = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
                .unwrap()
        };
        let v = |n| value(&out, n, &[]).unwrap();
        assert_eq!(v("node_memory_MemTotal_bytes"), kb("MemTotal") * 1024.0);
        assert_eq!(
            v("node_memory_MemAvailable_bytes"),
            kb("MemAvailable") * 1024.0
        );
        assert_eq!(v("node_memory_SwapTotal_bytes"), kb("SwapTotal") * 1024.0);
        assert_eq!(
            v("node_memory_Active_anon_bytes"),
            kb("Active(anon)") * 1024.0
        );
        assert_eq!(v("node_memory_HugePages_Total"), kb("HugePages_Total"));
        // Every line of this machine's file is a field vigie knows.
        assert_eq!(out.len(), text.lines().count());
        assert!(out.iter().all(|s| s.kind == Kind::Gauge));
    }

    #[test]
    fn unknown_fields_are_skipped_and_bad_ones_refused() {
        let mut out = Vec::new();
        samples(
            "MemTotal: 10 kB\nSomethingNew: 5 kB\nHugePages_Free: 3\n",
            &mut out,
        )
        .unwrap();
        assert_eq!(
            out.iter().map(|s| (s.name, s.value)).collect::<Vec<_>>(),
            [
                ("node_memory_MemTotal_bytes", 10240.0),
                ("node_memory_HugePages_Free", 3.0)
            ]
        );
        let e = samples("MemTotal: lots kB\n", &mut Vec::new()).unwrap_err();
        assert!(e.contains("MemTotal `lots` is not a number"), "{e}");
        let e = samples("MemTotal: 5 MB\n", &mut Vec::new()).unwrap_err();
        assert!(e.contains("not kB"), "{e}");
        let e = samples("", &mut Vec::new()).unwrap_err();
        assert!(e.contains("no field"), "{e}");
    }
}
