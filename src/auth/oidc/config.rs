//! `[[oidc]]` tables of the configuration file: one per identity provider (contract, documented in
//! `docs/sso.md`).

use std::collections::BTreeMap;

use url::Url;

use crate::config::{ConfigError, Secret};

/// One OpenID provider as configured.
#[derive(Clone, Debug)]
pub struct OidcProviderConfig {
    /// Used in `/auth/oidc/{id}/login` and `…/callback`.
    pub id: String,
    /// Button label.
    pub name: String,
    /// Exact issuer; discovery must report the same string.
    pub issuer: Url,
    pub client_id: String,
    pub client_secret: Secret,
    pub scopes: Vec<String>,
    /// Dotted path of the groups claim (`groups`, `realm_access.roles`).
    pub groups_claim: String,
    /// Deny sign-in when no group maps to a role.
    pub strict: bool,
    /// Treat every e-mail address this IdP asserts as verified, whatever its `email_verified`
    /// says (for IdPs that never send the claim but only hold addresses IT set, e.g. a
    /// single-tenant Entra ID). Only verified addresses link a first sign-in to a provisioned account.
    pub assume_email_verified: bool,
    /// IdP group → org role (`admin`, `auditor`, `member`).
    pub org_roles: BTreeMap<String, crate::auth::OrgRole>,
    /// IdP group → `(project slug, role)` grants.
    pub project_roles: BTreeMap<String, Vec<(String, crate::auth::access::ProjectRole)>>,
}

fn err(key: String, message: impl Into<String>) -> ConfigError {
    ConfigError { key, message: message.into() }
}

/// Parse the `oidc` array of tables (removed from the table before flattening the rest).
pub fn parse(value: &toml::Value, file: &str) -> Result<Vec<OidcProviderConfig>, ConfigError> {
    let toml::Value::Array(items) = value else {
        return Err(err("oidc".into(), format!("in {file}: use [[oidc]] tables, one per identity provider")));
    };
    let mut providers: Vec<OidcProviderConfig> = vec![];
    for (index, item) in items.iter().enumerate() {
        let toml::Value::Table(t) = item else {
            return Err(err(format!("oidc[{index}]"), "must be a table"));
        };
        let f = crate::config::fields::Fields::new(t, format!("oidc[{index}]"));
        let key = |k: &str| f.key(k);
        let (string, required) = (|k: &str| f.string(k), |k: &str| f.required(k));
        f.only(&[
            "id",
            "name",
            "issuer",
            "client_id",
            "client_secret",
            "client_secret_file",
            "scopes",
            "groups_claim",
            "strict",
            "assume_email_verified",
            "org_roles",
            "project_roles",
        ])?;
        let id = required("id")?;
        if !id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_') || id.len() > 32
        {
            return Err(err(key("id"), "use 1–32 lower-case letters, digits, `-` or `_` (it appears in URLs)"));
        }
        if providers.iter().any(|p| p.id == id) {
            return Err(err(key("id"), format!("`{id}` is used by two providers")));
        }
        let name = string("name")?.unwrap_or_else(|| id.clone());
        let issuer_raw = required("issuer")?;
        let issuer = Url::parse(&issuer_raw).map_err(|e| err(key("issuer"), format!("not a URL: {e}")))?;
        if !matches!(issuer.scheme(), "https" | "http") || issuer.query().is_some() || issuer.fragment().is_some() {
            return Err(err(key("issuer"), "must be an https:// URL without query or fragment"));
        }
        let client_id = required("client_id")?;
        let client_secret = Secret::new(
            f.value_or_file("client_secret")?
                .ok_or_else(|| err(key("client_secret"), "is required (or client_secret_file)"))?,
        );
        let scopes = match t.get("scopes") {
            None => vec!["openid".into(), "email".into(), "profile".into()],
            Some(toml::Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| err(key("scopes"), "must be a list of strings")))
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => return Err(err(key("scopes"), "must be a list of strings")),
        };
        if !scopes.iter().any(|s| s == "openid") {
            return Err(err(key("scopes"), "must include `openid`"));
        }
        let groups_claim = string("groups_claim")?.unwrap_or_else(|| "groups".into());
        let flag = |k: &str| f.flag(k);
        let strict = flag("strict")?;
        let assume_email_verified = flag("assume_email_verified")?;
        let mut org_roles = BTreeMap::new();
        match t.get("org_roles") {
            None => {}
            Some(toml::Value::Table(m)) => {
                for (group, role) in m {
                    let role = role
                        .as_str()
                        .and_then(crate::auth::OrgRole::parse)
                        .ok_or_else(|| err(key(&format!("org_roles.{group}")), "must be admin, auditor or member"))?;
                    org_roles.insert(group.clone(), role);
                }
            }
            Some(_) => return Err(err(key("org_roles"), "must be a table of group = role")),
        }
        let mut project_roles = BTreeMap::new();
        match t.get("project_roles") {
            None => {}
            Some(toml::Value::Table(m)) => {
                for (group, grants) in m {
                    let gkey = key(&format!("project_roles.{group}"));
                    let list = match grants {
                        toml::Value::String(s) => vec![s.clone()],
                        toml::Value::Array(a) => a
                            .iter()
                            .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| err(gkey.clone(), "must be strings")))
                            .collect::<Result<_, _>>()?,
                        _ => return Err(err(gkey, "must be a list of \"project-slug:role\"")),
                    };
                    let mut parsed = vec![];
                    for grant in list {
                        let (slug, role) = grant
                            .split_once(':')
                            .and_then(|(s, r)| Some((s.to_owned(), crate::auth::access::ProjectRole::parse(r)?)))
                            .ok_or_else(|| {
                                err(
                                    gkey.clone(),
                                    format!(
                                        "`{grant}` must be \"project-slug:role\" (maker, frontend, editor, viewer)"
                                    ),
                                )
                            })?;
                        parsed.push((slug, role));
                    }
                    project_roles.insert(group.clone(), parsed);
                }
            }
            Some(_) => return Err(err(key("project_roles"), "must be a table of group = [\"slug:role\", …]")),
        }
        providers.push(OidcProviderConfig {
            id,
            name,
            issuer,
            client_id,
            client_secret,
            scopes,
            groups_claim,
            strict,
            assume_email_verified,
            org_roles,
            project_roles,
        });
    }
    Ok(providers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<Vec<OidcProviderConfig>, ConfigError> {
        let table: toml::Table = text.parse().unwrap();
        parse(&table["oidc"], "arno.toml")
    }

    #[test]
    fn the_documented_shape() {
        let providers = parse_text(
            r#"
            [[oidc]]
            id = "corp"
            name = "Corporate SSO"
            issuer = "https://idp.example.com/realms/corp"
            client_id = "arno"
            client_secret = "s3cret"
            scopes = ["openid", "email", "profile"]
            groups_claim = "realm_access.roles"
            strict = true
            assume_email_verified = true
            [oidc.org_roles]
            "arno-admins" = "admin"
            [oidc.project_roles]
            "design-team" = ["checkout:maker", "onboarding:editor"]
            [[oidc]]
            id = "partners"
            issuer = "https://login.partner.example/"
            client_id = "x"
            client_secret = "y"
            "#,
        )
        .unwrap();
        assert_eq!(providers.len(), 2);
        let corp = &providers[0];
        assert_eq!((corp.id.as_str(), corp.name.as_str(), corp.strict), ("corp", "Corporate SSO", true));
        assert_eq!(corp.org_roles["arno-admins"], crate::auth::OrgRole::Admin);
        assert_eq!(
            corp.project_roles["design-team"][1],
            ("onboarding".into(), crate::auth::access::ProjectRole::Editor)
        );
        assert!(corp.assume_email_verified && !providers[1].assume_email_verified);
        assert_eq!(providers[1].groups_claim, "groups");
        assert_eq!(providers[1].scopes, ["openid", "email", "profile"]);
        assert!(!format!("{corp:?}").contains("s3cret"));
    }

    #[test]
    fn errors_name_the_key() {
        let base = "[[oidc]]\nid = \"a\"\nissuer = \"https://i.example\"\nclient_id = \"c\"\nclient_secret = \"s\"\n";
        for (extra, key) in [
            ("strict = \"yes\"\n", "oidc[0].strict"),
            ("assume_email_verified = 1\n", "oidc[0].assume_email_verified"),
            ("colour = 1\n", "oidc[0].colour"),
            ("scopes = [\"email\"]\n", "oidc[0].scopes"),
            ("[oidc.org_roles]\n\"g\" = \"king\"\n", "oidc[0].org_roles.g"),
            ("[oidc.project_roles]\n\"g\" = [\"nocolon\"]\n", "oidc[0].project_roles.g"),
            ("client_secret_file = \"/nope\"\n", "oidc[0].client_secret"),
        ] {
            let e = parse_text(&format!("{base}{extra}")).unwrap_err();
            assert_eq!(e.key, key, "{extra}: {e:?}");
        }
        let e = parse_text(&format!("{base}{base}")).unwrap_err();
        assert_eq!(e.key, "oidc[1].id");
        let e = parse_text("[[oidc]]\nid = \"Bad Id\"\n").unwrap_err();
        assert_eq!(e.key, "oidc[0].id");
    }
}
