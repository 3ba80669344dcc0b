//! How a user name becomes the user half of an access key: the one function every spelling goes
//! through — the login a device authenticated with, the query's `User=`, and the names an admin
//! or the portal puts on the access list — so that `CORP\victim`, `victim@corp.example`,
//! ` Victim ` and `victim` are one user.
//!
//! Rules, in order (documented in docs/security.md, "Identity normalisation"):
//! 1. Surrounding white space is dropped. Percent-encoding is undone once, by the query parser,
//!    never here (a second decoding would let `%255C` become a backslash).
//! 2. The name is split as Windows does: `DOMAIN\user` (down-level), `user@domain` (UPN), or a
//!    bare `user`.
//! 3. User and domain are lower-cased (Unicode), as Active Directory compares them.
//! 4. Without a `default_domain` (one domain, the common case) the key is the bare user: every
//!    domain form of a name lands on it.
//! 5. With a `default_domain` (the UPN suffix, e.g. `corp.example`) the key is `user@domain`:
//!    a bare name takes the default domain; a NetBIOS or other domain name is mapped through
//!    `domain_aliases` (e.g. `CORP = "corp.example"`), and a NetBIOS name equal to the first
//!    label of the default domain maps to it without an alias.

use std::collections::BTreeMap;

use eas::{LoginForm, LoginName};

/// The validated naming rules of `[device_access]` (`default_domain`, `domain_aliases`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserNaming {
    /// Lower-cased UPN suffix; `None`: keys are bare user names.
    default_domain: Option<String>,
    /// Lower-cased alias → lower-cased domain.
    aliases: BTreeMap<String, String>,
}

impl UserNaming {
    /// One domain, no aliases (the default).
    pub const EMPTY: UserNaming = UserNaming {
        default_domain: None,
        aliases: BTreeMap::new(),
    };

    /// Rules from already validated values (see `DeviceAccessConfig::validate`).
    pub fn new(default_domain: &str, aliases: &BTreeMap<String, String>) -> Self {
        let default_domain = Some(default_domain.trim().to_lowercase()).filter(|d| !d.is_empty());
        let aliases = aliases
            .iter()
            .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_lowercase()))
            .collect();
        Self {
            default_domain,
            aliases,
        }
    }

    /// The access-key spelling of a user name (see the module docs for the rules).
    pub fn key(&self, raw: &str) -> String {
        let login = LoginName::parse(raw.trim());
        let user = login.user.trim().to_lowercase();
        let Some(default) = &self.default_domain else {
            return user;
        };
        let domain = match (login.form, login.domain.as_deref()) {
            (LoginForm::Bare, _) | (_, None) => default.clone(),
            (form, Some(d)) => {
                let d = d.trim().to_lowercase();
                match self.aliases.get(&d) {
                    Some(mapped) => mapped.clone(),
                    None if form == LoginForm::DownLevel && first_label(default) == d => {
                        default.clone()
                    }
                    None => d,
                }
            }
        };
        format!("{user}@{domain}")
    }
}

fn first_label(domain: &str) -> &str {
    domain.split('.').next().unwrap_or(domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naming(default: &str, aliases: &[(&str, &str)]) -> UserNaming {
        let aliases = aliases
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        UserNaming::new(default, &aliases)
    }

    #[test]
    fn one_domain_every_alias_lands_on_the_bare_user() {
        let n = UserNaming::default();
        for raw in [
            "victim",
            "CORP\\victim",
            "victim@corp.example",
            " Victim ",
            "VICTIM@Corp.Example",
            "corp\\VICTIM",
        ] {
            assert_eq!(n.key(raw), "victim", "{raw:?}");
        }
        assert_eq!(n.key("Jürgen"), "jürgen");
        assert_ne!(n.key("victim2"), n.key("victim"));
    }

    #[test]
    fn with_a_default_domain_keys_are_upns() {
        let n = naming("Corp.Example", &[("LEGACY", "corp.example")]);
        for raw in [
            "victim",
            "CORP\\victim",
            "legacy\\Victim",
            "victim@corp.example",
            " victim@CORP.EXAMPLE ",
        ] {
            assert_eq!(n.key(raw), "victim@corp.example", "{raw:?}");
        }
        // Another domain stays another user.
        assert_eq!(n.key("victim@other.example"), "victim@other.example");
        assert_eq!(n.key("OTHER\\victim"), "victim@other");
        // A UPN domain can be an alias too (an old suffix).
        let n = naming("corp.example", &[("corp.local", "corp.example")]);
        assert_eq!(n.key("victim@corp.local"), "victim@corp.example");
    }

    #[test]
    fn odd_shapes_are_keys_not_panics() {
        let n = naming("corp.example", &[]);
        assert_eq!(n.key("\\victim"), "\\victim@corp.example");
        assert_eq!(n.key("victim@"), "victim@@corp.example");
        assert_eq!(n.key("CORP\\a@b"), "a@b@corp.example");
        assert_eq!(UserNaming::default().key(""), "");
    }
}
