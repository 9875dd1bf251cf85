//! `.arno/config.json`: how a repository declares itself to Arno (format in `docs/spec-format.md`).
//!
//! ```json
//! { "version": 1, "componentsMd": "Design_system/", "componentsCode": "src/components/",
//!   "pairing": { "default": "[Name].md ↔ [Name].tsx", "overrides": { "Button.md": "src/ui/Btn.tsx#Button" } },
//!   "bundleHosting": { "type": "gh-pages", "config": {} },
//!   "arnoChanges": { "backfillPolicy": "require-review" } }
//! ```
//!
//! A missing file means the defaults; an invalid one is an error naming the field, because a
//! silently-ignored typo (`componentMd`) would make a whole design system vanish from Arno.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const PATH: &str = ".arno/config.json";
const PLACEHOLDER: &str = "[Name]";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RepoConfig {
    pub version: u32,
    /// Folder of the spec files, relative to the repository root, ending with `/`.
    pub components_md: String,
    /// Folder of the component code, relative to the repository root, ending with `/`.
    pub components_code: String,
    pub pairing: Pairing,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bundle_hosting: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arno_changes: Option<serde_json::Value>,
}

/// Which code file belongs to which spec: `"[Name].md ↔ [Name].tsx"`, plus per-file overrides
/// (spec path relative to `componentsMd` → code path relative to the repository root, optionally
/// with `#Export`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pairing {
    pub default: String,
    pub overrides: BTreeMap<String, String>,
}

/// An invalid config file: which field and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{PATH}: {field}: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Raw {
    version: Option<u32>,
    components_md: Option<String>,
    components_code: Option<String>,
    pairing: Option<RawPairing>,
    bundle_hosting: Option<RawBundleHosting>,
    arno_changes: Option<RawArnoChanges>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawPairing {
    Pattern(String),
    Full { default: Option<String>, overrides: Option<BTreeMap<String, String>> },
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawBundleHosting {
    #[serde(rename = "type")]
    kind: BundleHostingType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    config: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
enum BundleHostingType {
    GhPages,
    GithubPackages,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawArnoChanges {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    backfill_policy: Option<BackfillPolicy>,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
enum BackfillPolicy {
    RequireReview,
    Direct,
}

impl Default for RepoConfig {
    fn default() -> Self {
        RepoConfig {
            version: 1,
            components_md: "Design_system/".into(),
            components_code: "src/components/".into(),
            pairing: Pairing { default: "[Name].md ↔ [Name].tsx".into(), overrides: BTreeMap::new() },
            bundle_hosting: None,
            arno_changes: None,
        }
    }
}

impl RepoConfig {
    /// Parse and validate the file's bytes.
    pub fn parse(bytes: &[u8]) -> Result<RepoConfig, ConfigError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let raw: Raw = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            // An empty key (`{"": 1}`) has an empty path too.
            let field = if path.is_empty() || path == "." || path == "?" { "(file)".to_owned() } else { path };
            // serde_json appends "at line L column C", which is useful: keep it.
            ConfigError { field, message: inner.to_string() }
        })?;
        let fail = |field: &str, message: String| ConfigError { field: field.into(), message };
        let version = raw.version.ok_or_else(|| fail("version", "is required (use 1)".into()))?;
        if version != 1 {
            return Err(fail("version", format!("version {version} is not supported; this Arno reads version 1")));
        }
        let defaults = RepoConfig::default();
        let components_md = folder("componentsMd", raw.components_md.unwrap_or(defaults.components_md))?;
        let components_code = folder("componentsCode", raw.components_code.unwrap_or(defaults.components_code))?;
        let pairing = match raw.pairing {
            None => defaults.pairing,
            Some(RawPairing::Pattern(default)) => Pairing { default, overrides: BTreeMap::new() },
            Some(RawPairing::Full { default, overrides }) => Pairing {
                default: default.unwrap_or(defaults.pairing.default),
                overrides: overrides.unwrap_or_default(),
            },
        };
        pairing_sides(&pairing.default).map_err(|m| fail("pairing.default", m))?;
        for (spec, code) in &pairing.overrides {
            let field = format!("pairing.overrides.{spec}");
            if !spec.ends_with(".md") || !relative(spec) {
                return Err(fail(&field, "the key must be a spec path under componentsMd ending in `.md`".into()));
            }
            let file = code.split('#').next().unwrap_or_default();
            if file.is_empty() || !relative(file) {
                return Err(fail(&field, "the value must be a relative code path inside the repository".into()));
            }
        }
        Ok(RepoConfig {
            version,
            components_md,
            components_code,
            pairing,
            bundle_hosting: raw.bundle_hosting.map(|b| serde_json::to_value(b).unwrap_or_default()),
            arno_changes: raw.arno_changes.map(|a| serde_json::to_value(a).unwrap_or_default()),
        })
    }

    /// The canonical file text Arno writes when it sets a repository up.
    pub fn to_file(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Is this repository path a spec file under `componentsMd`?
    pub fn is_spec_path(&self, path: &str) -> bool {
        path.starts_with(&self.components_md) && path.ends_with(".md") && path.len() > self.components_md.len() + 3
    }

    /// The code file paired with a spec path (relative to the repository root), with an optional
    /// `#Export` part from an override.
    pub fn paired_code(&self, spec_path: &str) -> Option<String> {
        let relative = spec_path.strip_prefix(&self.components_md)?;
        if let Some(code) = self.pairing.overrides.get(relative) {
            return Some(code.clone());
        }
        let (md, code) = pairing_sides(&self.pairing.default).ok()?;
        let (prefix, suffix) = md.split_once(PLACEHOLDER)?;
        let name = relative.strip_prefix(prefix)?.strip_suffix(suffix)?;
        Some(format!("{}{}", self.components_code, code.replace(PLACEHOLDER, name)))
    }
}

/// `"[Name].md ↔ [Name].tsx"` (or `<->`) → both sides, each with one `[Name]`.
fn pairing_sides(pattern: &str) -> Result<(&str, &str), String> {
    let (md, code) = pattern.split_once('↔').or_else(|| pattern.split_once("<->")).ok_or_else(|| {
        format!("{pattern:?} must be `<spec pattern> ↔ <code pattern>`, e.g. \"[Name].md ↔ [Name].tsx\"")
    })?;
    let (md, code) = (md.trim(), code.trim());
    if md.matches(PLACEHOLDER).count() != 1 || code.matches(PLACEHOLDER).count() != 1 || !md.ends_with(".md") {
        return Err(format!("{pattern:?}: each side needs exactly one `[Name]` and the spec side must end in `.md`"));
    }
    Ok((md, code))
}

fn relative(path: &str) -> bool {
    !path.starts_with('/') && !path.contains('\\') && !path.split('/').any(|part| part == ".." || part == ".")
}

/// A folder relative to the repository root, normalised to end with `/`.
fn folder(field: &str, value: String) -> Result<String, ConfigError> {
    let trimmed = value.trim().trim_start_matches("./").trim_end_matches('/');
    if trimmed.is_empty() || !relative(trimmed) || trimmed.contains("//") {
        return Err(ConfigError {
            field: field.into(),
            message: format!("{value:?} must be a folder relative to the repository root, like \"Design_system/\""),
        });
    }
    Ok(format!("{trimmed}/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_pairing() {
        let config = RepoConfig::parse(br#"{"version": 1}"#).unwrap();
        assert_eq!(config, RepoConfig::default());
        assert_eq!(config.paired_code("Design_system/Button.md").as_deref(), Some("src/components/Button.tsx"));
        assert_eq!(
            config.paired_code("Design_system/forms/Input.md").as_deref(),
            Some("src/components/forms/Input.tsx")
        );
        assert_eq!(config.paired_code("docs/Button.md"), None);
        assert!(config.is_spec_path("Design_system/Button.md"));
        assert!(!config.is_spec_path("Design_system/.md") && !config.is_spec_path("README.md"));
        assert_eq!(RepoConfig::parse(config.to_file().as_bytes()).unwrap(), config);
    }

    #[test]
    fn full_file_with_overrides() {
        let config = RepoConfig::parse(
            r#"{"version":1,"componentsMd":"./specs","componentsCode":"web/ui/",
                "pairing":{"default":"[Name].md <-> [Name]/index.tsx","overrides":{"Button.md":"web/Btn.tsx#Button"}},
                "bundleHosting":{"type":"gh-pages","config":{}},"arnoChanges":{"backfillPolicy":"require-review"}}"#
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(config.components_md, "specs/");
        assert_eq!(config.paired_code("specs/Button.md").as_deref(), Some("web/Btn.tsx#Button"));
        assert_eq!(config.paired_code("specs/Card.md").as_deref(), Some("web/ui/Card/index.tsx"));
        assert_eq!(config.bundle_hosting.unwrap()["type"], "gh-pages");
    }

    #[test]
    fn errors_name_the_field() {
        let cases: &[(&str, &str, &str)] = &[
            (r#"{"version":2}"#, "version", "not supported"),
            (r#"{}"#, "version", "required"),
            (r#"{"version":1,"componentMd":"x/"}"#, "componentMd", "unknown field `componentMd`"),
            (r#"{"version":1,"componentsMd":"../x"}"#, "componentsMd", "relative"),
            (r#"{"version":1,"componentsMd":7}"#, "componentsMd", "invalid type"),
            (r#"{"version":1,"pairing":"[Name].md"}"#, "pairing.default", "↔"),
            (r#"{"version":1,"pairing":{"overrides":{"B.md":"/etc/passwd"}}}"#, "pairing.overrides.B.md", "relative"),
            (r#"{"version":1,"bundleHosting":{"type":"ftp"}}"#, "bundleHosting.type", "unknown variant"),
            (
                r#"{"version":1,"arnoChanges":{"backfillPolicy":"yolo"}}"#,
                "arnoChanges.backfillPolicy",
                "unknown variant",
            ),
            (r#"{"version":1,"#, "(file)", "EOF"),
        ];
        for (text, field, message) in cases {
            let e = RepoConfig::parse(text.as_bytes()).unwrap_err();
            assert_eq!(e.field, *field, "{text}: {e}");
            assert!(e.message.contains(message), "{text}: {e}");
        }
    }
}
