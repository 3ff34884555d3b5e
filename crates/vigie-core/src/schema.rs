//! The JSON Schema of the values the config writes with this crate's
//! types (`vigie config schema`): each says how it is written, with an
//! example, since a string pattern alone tells an operator little.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

use crate::{ByteSize, Cron, Duration};

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "A duration with its unit, never a bare number: a number and one of ms, s, m, h, d, w, parts added up (\"250ms\", \"30s\", \"1h30m\").",
            "pattern": "^\\s*([0-9]+(ms|s|m|h|d|w)\\s*)+$",
            "examples": ["250ms", "30s", "1h30m"],
        })
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "A size with its unit: a number and one of B, kB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024) (\"500MB\", \"1GiB\").",
            "pattern": "^\\s*([0-9]+(\\.[0-9]*)?|\\.[0-9]+)\\s*(B|kB|KB|k|MB|M|GB|G|TB|T|KiB|MiB|GiB|TiB)\\s*$",
            "examples": ["500MB", "1GiB"],
        })
    }
}

impl JsonSchema for Cron {
    fn schema_name() -> Cow<'static, str> {
        "Cron".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "A cron expression as crontab(5) writes it: five fields, minute hour day-of-month month day-of-week, each `*`, a value, a list, a range or a step (\"0 3 * * 0\": Sundays at 03:00).",
            "examples": ["0 3 * * 0", "*/15 * * * *"],
        })
    }
}
