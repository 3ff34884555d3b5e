//! One table per extension point (check kinds, notifiers, DNS providers):
//! the enum that holds a kind's settings is written once, each variant with
//! the name the file uses for it, and everything that lists kinds is
//! derived from that: serde's names, a field-less enum of the kinds, its
//! `ALL` and `NAMES`, and `kind()`. Adding a kind is adding a variant.

/// `kinds! { #[attrs] pub enum Data => Kind { Variant(..) = "name", … } }`
/// defines `Data` (each variant renamed to its name for serde) and the
/// field-less `Kind` with `ALL`, `NAMES`, `name()` and `from_name()`;
/// `Data::kind()` maps a value to its kind with a match the compiler
/// checks for exhaustiveness.
macro_rules! kinds {
    (
        $(#[$meta:meta])*
        $vis:vis enum $Data:ident => $Kind:ident {
            $( $(#[$vmeta:meta])* $Variant:ident $fields:tt = $name:literal, )+
        }
    ) => {
        $(#[$meta])*
        $vis enum $Data {
            $( $(#[$vmeta])* #[serde(rename = $name)] $Variant $fields, )+
        }

        #[doc = concat!("The kinds of [`", stringify!($Data), "`], by the names the file uses.")]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis enum $Kind {
            $( $Variant, )+
        }

        impl $Kind {
            /// Every kind, in the order of the table.
            pub const ALL: &'static [$Kind] = &[$( $Kind::$Variant, )+];
            /// Every kind's name, in the order of the table.
            pub const NAMES: &'static [&'static str] = &[$( $name, )+];

            /// The name the configuration file uses.
            pub const fn name(self) -> &'static str {
                match self {
                    $( $Kind::$Variant => $name, )+
                }
            }

            /// The kind a configuration file names.
            pub fn from_name(name: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|k| k.name() == name)
            }
        }

        impl ::std::fmt::Display for $Kind {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl $Data {
            /// Which kind this is.
            pub fn kind(&self) -> $Kind {
                match self {
                    $( $Data::$Variant { .. } => $Kind::$Variant, )+
                }
            }
        }
    };
}

pub(crate) use kinds;

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use crate::model::{DnsKind, NotifierService, ProbeKind};

    /// The hint of the one error `toml` gets.
    fn hint_of(toml: &str) -> String {
        let errors = crate::load_str(toml, std::path::Path::new("t.toml"), &|_| None)
            .expect_err("the config is refused")
            .errors;
        assert_eq!(errors.len(), 1, "{errors:?}");
        errors[0].hint.clone().unwrap_or_default()
    }

    /// Each name once, and name → kind → name gives it back.
    #[test]
    fn every_kind_has_one_name_that_reads_back() {
        fn agree<K: Copy + PartialEq + std::fmt::Debug>(
            all: &[K],
            names: &[&str],
            name: fn(K) -> &'static str,
            from_name: fn(&str) -> Option<K>,
        ) {
            assert_eq!(all.len(), names.len());
            let unique: BTreeSet<_> = names.iter().collect();
            assert_eq!(unique.len(), names.len(), "a name given twice: {names:?}");
            for (k, n) in all.iter().zip(names) {
                assert_eq!(name(*k), *n);
                assert_eq!(from_name(n), Some(*k), "`{n}` does not read back");
            }
            assert_eq!(from_name("no-such-kind"), None);
        }
        macro_rules! agree {
            ($($Kind:ident),+) => {
                $( agree($Kind::ALL, $Kind::NAMES, $Kind::name, $Kind::from_name); )+
            };
        }
        agree!(ProbeKind, NotifierService, DnsKind);
    }

    /// What serde accepts is what the table names, in its order: the
    /// loader's raw check has one key per check kind...
    #[test]
    fn the_check_keys_are_the_check_kinds() {
        let hint = hint_of("[[check]]\nname = \"x\"\nqqqq = 1\n");
        let keys = hint.strip_prefix("valid keys here: ").expect(&hint);
        assert!(keys.ends_with(&ProbeKind::NAMES.join(", ")), "{keys}");
        let missing = hint_of("[[check]]\nname = \"x\"\n");
        assert_eq!(
            missing,
            format!("add one of: {}", ProbeKind::NAMES.join(", "))
        );
    }

    /// ...and a notifier's or a DNS provider's `kind` is one of its table.
    #[test]
    fn the_kind_values_are_the_tables() {
        for (section, names) in [("notify", NotifierService::NAMES), ("dns", DnsKind::NAMES)] {
            let hint = hint_of(&format!("[{section}.x]\nkind = \"qqqq\"\n"));
            assert_eq!(hint, format!("valid values: {}", names.join(", ")));
        }
    }
}
