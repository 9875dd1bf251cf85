//! The SCIM User as Arno keeps it (RFC 7643 §4.1), read from a resource (POST, PUT) and changed
//! by PATCH operations (RFC 7644 §3.5.2). Pure: no database, no HTTP; `users.rs` stores it.
//!
//! Arno keeps `userName`, one work e-mail, `displayName`, `name.formatted`, `name.givenName`,
//! `name.familyName`, `externalId` and `active`, each on its own so that PATCH can replace and
//! remove them one by one. Other attributes of the User schema and of the enterprise extension
//! (titles, phone numbers, addresses, department…) are known, accepted and not kept; paths that
//! are not in either schema are refused (`invalidPath`), read-only ones too (`mutability`).

use serde_json::Value;

use super::ScimError;
use crate::auth::users;

pub(super) const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// User attributes of RFC 7643 §4.1 that Arno accepts and does not keep.
const IGNORED: &[&str] = &[
    "nickname",
    "profileurl",
    "title",
    "usertype",
    "preferredlanguage",
    "locale",
    "timezone",
    // Write-only; SCIM users sign in through SSO, and a password sent by the IdP is never stored.
    "password",
    "phonenumbers",
    "ims",
    "photos",
    "addresses",
    "entitlements",
    "roles",
    "x509certificates",
];
/// Attributes of the enterprise extension (RFC 7643 §4.3), none of which Arno keeps.
const ENTERPRISE: &[&str] = &["employeenumber", "costcenter", "organization", "division", "department", "manager"];
/// Read-only: the server sets them (RFC 7643 §3.1, §4.1.2 for `groups`).
const READ_ONLY: &[&str] = &["id", "meta", "groups", "schemas"];

/// The attributes Arno keeps for a provisioned user.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct ScimUser {
    /// Lower-cased (`userName` is case-insensitive, and unique).
    pub user_name: String,
    /// The work e-mail, as sent (checked when Arno's address is derived from it).
    pub email: Option<String>,
    pub display_name: Option<String>,
    pub formatted: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub external_id: Option<String>,
    pub active: bool,
}

/// What a PATCH path points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    UserName,
    DisplayName,
    ExternalId,
    Active,
    /// The whole `name` (a complex attribute).
    Name,
    Formatted,
    GivenName,
    FamilyName,
    /// `emails`, the whole multi-valued attribute.
    Emails,
    /// The work address as an entry: `emails[type eq "work"]`.
    EmailEntry,
    /// The work address's value: `emails[type eq "work"].value`.
    EmailValue,
    /// A known attribute Arno does not keep.
    Ignored,
    ReadOnly,
}

fn invalid_value(detail: impl Into<String>) -> ScimError {
    ScimError::bad("invalidValue", detail)
}

fn invalid_path(path: &str) -> ScimError {
    ScimError::bad("invalidPath", format!("{path:?} is not an attribute of the User schema that can be changed"))
}

/// Booleans arrive as `false` or as `"False"` (Entra).
fn boolean(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// An optional string attribute: a string (empty means unassigned, RFC 7643 §2.5), or `null`.
fn text(attr: &str, v: &Value) -> Result<Option<String>, ScimError> {
    // Addresses may be longer than names (RFC 5321 allows 254 characters).
    let max = if attr.starts_with("emails") { 254 } else { 200 };
    match v {
        Value::Null => Ok(None),
        Value::String(s) => {
            let s = s.trim();
            if s.chars().count() > max || s.chars().any(char::is_control) {
                return Err(invalid_value(format!("{attr} must be at most {max} printable characters")));
            }
            Ok((!s.is_empty()).then(|| s.to_owned()))
        }
        _ => Err(invalid_value(format!("{attr} must be a string"))),
    }
}

fn user_name(v: &Value) -> Result<String, ScimError> {
    match v {
        Value::String(s) if !s.trim().is_empty() => {
            let s = s.trim().to_lowercase();
            if s.chars().count() > 254 || s.chars().any(char::is_control) {
                return Err(invalid_value("userName must be at most 254 printable characters"));
            }
            Ok(s)
        }
        Value::Null => Err(ScimError::bad("mutability", "userName is required and cannot be removed")),
        _ => Err(invalid_value("userName must be a non-empty string")),
    }
}

/// The entry Arno keeps from a list of e-mails: the primary one, else `type: work`, else (unless
/// `work_only`) the first.
fn pick_email(v: &Value, work_only: bool) -> Result<Option<String>, ScimError> {
    let entries = match v {
        Value::Array(items) => items.as_slice(),
        Value::Object(_) => std::slice::from_ref(v),
        Value::Null => return Ok(None),
        _ => return Err(invalid_value("emails must be a list of {\"value\": …} entries")),
    };
    if entries.iter().any(|e| !e["value"].is_string()) {
        return Err(invalid_value("every entry of emails needs a string value"));
    }
    let pick = entries
        .iter()
        .find(|e| e.get("primary").and_then(boolean) == Some(true))
        .or_else(|| entries.iter().find(|e| e["type"] == "work"))
        .or_else(|| if work_only { None } else { entries.first() });
    pick.map(|e| text("emails.value", &e["value"])).transpose().map(Option::flatten)
}

/// A value filter of a path (`type eq "work"`), as far as Arno's one address is concerned: `true`
/// when it selects the work address, `false` when it selects addresses Arno does not keep.
fn email_filter(filter: &str, current: Option<&str>) -> Result<bool, ScimError> {
    let bad = || ScimError::bad("invalidFilter", format!("unsupported filter [{filter}] on emails"));
    let mut parts = filter.trim().splitn(3, char::is_whitespace);
    let (Some(attr), Some(op), Some(value)) = (parts.next(), parts.next(), parts.next()) else { return Err(bad()) };
    if !op.eq_ignore_ascii_case("eq") {
        return Err(bad());
    }
    let value = value.trim();
    let quoted = value.strip_prefix('"').and_then(|v| v.strip_suffix('"'));
    match (attr.to_ascii_lowercase().as_str(), quoted) {
        ("type", Some(t)) => Ok(t.eq_ignore_ascii_case("work")),
        ("primary", None) if value.eq_ignore_ascii_case("true") => Ok(true),
        ("primary", None) if value.eq_ignore_ascii_case("false") => Ok(false),
        ("value", Some(v)) => {
            if current.is_some_and(|c| c.eq_ignore_ascii_case(v)) {
                Ok(true)
            } else {
                Err(ScimError::bad("noTarget", format!("no e-mail matches [{filter}]")))
            }
        }
        _ => Err(bad()),
    }
}

/// Resolve a PATCH path (RFC 7644 §3.10: `[urn:…:]attr[.sub]` or `attr[filter][.sub]`).
fn target(path: &str, current_email: Option<&str>) -> Result<Target, ScimError> {
    let trimmed = path.trim();
    let lower = trimmed.to_ascii_lowercase();
    let core = format!("{}:", super::USER_SCHEMA.to_ascii_lowercase());
    let enterprise = ENTERPRISE_SCHEMA.to_ascii_lowercase();
    let rest = if lower.starts_with(&core) {
        &trimmed[core.len()..]
    } else if let Some(rest) = lower.strip_prefix(&enterprise) {
        let attr = rest.strip_prefix(':').map(|a| a.split(['.', '[']).next().unwrap_or_default());
        return match attr {
            None if rest.is_empty() => Ok(Target::Ignored),
            Some(a) if ENTERPRISE.contains(&a) => Ok(Target::Ignored),
            _ => Err(invalid_path(path)),
        };
    } else if lower.starts_with("urn:") {
        return Err(invalid_path(path));
    } else {
        trimmed
    };
    // attr, then an optional [filter], then an optional .sub
    let end = rest.find(['[', '.']).unwrap_or(rest.len());
    let attr = rest[..end].to_ascii_lowercase();
    let mut tail = &rest[end..];
    let mut filter = None;
    if let Some(after) = tail.strip_prefix('[') {
        let close = after.find(']').ok_or_else(|| invalid_path(path))?;
        filter = Some(&after[..close]);
        tail = &after[close + 1..];
    }
    let sub = match tail {
        "" => None,
        t => Some(
            t.strip_prefix('.')
                .filter(|s| !s.is_empty() && !s.contains(['.', '[']))
                .ok_or_else(|| invalid_path(path))?,
        ),
    }
    .map(str::to_ascii_lowercase);
    if attr.is_empty() {
        return Err(invalid_path(path));
    }
    if READ_ONLY.contains(&attr.as_str()) {
        return Ok(Target::ReadOnly);
    }
    if IGNORED.contains(&attr.as_str()) {
        return Ok(Target::Ignored);
    }
    let simple = |t: Target| if filter.is_none() && sub.is_none() { Ok(t) } else { Err(invalid_path(path)) };
    match attr.as_str() {
        "username" => simple(Target::UserName),
        "displayname" => simple(Target::DisplayName),
        "externalid" => simple(Target::ExternalId),
        "active" => simple(Target::Active),
        "name" if filter.is_none() => match sub.as_deref() {
            None => Ok(Target::Name),
            Some("formatted") => Ok(Target::Formatted),
            Some("givenname") => Ok(Target::GivenName),
            Some("familyname") => Ok(Target::FamilyName),
            Some("middlename" | "honorificprefix" | "honorificsuffix") => Ok(Target::Ignored),
            Some(_) => Err(invalid_path(path)),
        },
        "emails" => {
            let selected = match filter {
                Some(f) => email_filter(f, current_email)?,
                None => true,
            };
            match (selected, filter.is_some(), sub.as_deref()) {
                (_, _, Some(s)) if !matches!(s, "value" | "type" | "primary" | "display") => Err(invalid_path(path)),
                // Addresses of other types: Arno keeps only the work one.
                (false, _, _) => Ok(Target::Ignored),
                (true, _, Some("value")) => Ok(Target::EmailValue),
                // Arno's address is always the primary work one.
                (true, _, Some(_)) => Ok(Target::Ignored),
                (true, true, None) => Ok(Target::EmailEntry),
                (true, false, None) => Ok(Target::Emails),
            }
        }
        _ => Err(invalid_path(path)),
    }
}

impl ScimUser {
    /// Read a whole resource (POST; PUT, where `active` keeps `keep_active` when absent).
    /// Attributes Arno does not keep are ignored, as RFC 7644 §3.3 allows.
    pub fn from_resource(doc: &Value, keep_active: Option<bool>) -> Result<ScimUser, ScimError> {
        if !doc.is_object() {
            return Err(ScimError::bad("invalidSyntax", "a User resource must be a JSON object"));
        }
        let user_name = match doc.get("userName") {
            None | Some(Value::Null) => return Err(invalid_value("userName is required")),
            Some(v) => user_name(v)?,
        };
        let name = doc.get("name").unwrap_or(&Value::Null);
        if !(name.is_object() || name.is_null()) {
            return Err(invalid_value("name must be an object"));
        }
        let active = match doc.get("active") {
            None | Some(Value::Null) => keep_active.unwrap_or(true),
            Some(v) => boolean(v).ok_or_else(|| invalid_value("active must be true or false"))?,
        };
        Ok(ScimUser {
            user_name,
            email: pick_email(doc.get("emails").unwrap_or(&Value::Null), false)?,
            display_name: text("displayName", doc.get("displayName").unwrap_or(&Value::Null))?,
            formatted: text("name.formatted", name.get("formatted").unwrap_or(&Value::Null))?,
            given_name: text("name.givenName", name.get("givenName").unwrap_or(&Value::Null))?,
            family_name: text("name.familyName", name.get("familyName").unwrap_or(&Value::Null))?,
            external_id: text("externalId", doc.get("externalId").unwrap_or(&Value::Null))?,
            active,
        })
    }

    /// Apply a PatchOp's operations in order (RFC 7644 §3.5.2). The first bad one fails the whole
    /// request; the caller stores nothing then.
    pub fn patch(&mut self, ops: &[(String, Option<String>, Value)]) -> Result<(), ScimError> {
        for (kind, path, value) in ops {
            match (kind.as_str(), path.as_deref()) {
                ("remove", None) => {
                    return Err(ScimError::bad("noTarget", "a remove operation needs a path (RFC 7644 §3.5.2.2)"));
                }
                ("remove", Some(path)) => {
                    let t = target(path, self.email.as_deref())?;
                    self.remove(t, path)?;
                }
                (kind, Some(path)) => {
                    let t = target(path, self.email.as_deref())?;
                    self.set(t, path, value, kind == "replace")?;
                }
                // No path: the value holds attributes (and, from Entra, flattened paths as keys).
                (kind, None) => {
                    let Value::Object(attrs) = value else {
                        return Err(invalid_value("an add or replace without a path needs an object value"));
                    };
                    for (key, v) in attrs {
                        let t = target(key, self.email.as_deref())?;
                        // Clients echo read-only attributes (schemas, id, meta) in whole-resource values.
                        if t != Target::ReadOnly {
                            self.set(t, key, v, kind == "replace")?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// `add` or (`replace`) `replace` one attribute; they differ only for the whole `emails` list.
    fn set(&mut self, t: Target, path: &str, v: &Value, replace: bool) -> Result<(), ScimError> {
        match t {
            Target::UserName => self.user_name = user_name(v)?,
            Target::DisplayName => self.display_name = text("displayName", v)?,
            Target::ExternalId => self.external_id = text("externalId", v)?,
            Target::Active => self.active = boolean(v).ok_or_else(|| invalid_value("active must be true or false"))?,
            Target::Formatted => self.formatted = text("name.formatted", v)?,
            Target::GivenName => self.given_name = text("name.givenName", v)?,
            Target::FamilyName => self.family_name = text("name.familyName", v)?,
            // Sub-attributes given replace, the others stay (RFC 7644 §3.5.2.3).
            Target::Name => {
                let Value::Object(parts) = v else { return Err(invalid_value("name must be an object")) };
                for (key, part) in parts {
                    let t = target(&format!("name.{key}"), None)?;
                    self.set(t, path, part, replace)?;
                }
            }
            // Replacing the list keeps what a new resource would (primary, work, first); adding
            // to it changes Arno's one address only for a primary or work entry.
            Target::Emails => match (pick_email(v, !replace)?, replace) {
                (Some(email), _) => self.email = Some(email),
                (None, true) => self.email = None,
                (None, false) => {}
            },
            Target::EmailEntry => {
                self.email = Some(pick_email(v, false)?.ok_or_else(|| invalid_value("the e-mail entry needs a value"))?)
            }
            Target::EmailValue => {
                self.email = Some(text("emails.value", v)?.ok_or_else(|| invalid_value("an e-mail cannot be empty"))?)
            }
            Target::Ignored => {}
            Target::ReadOnly => return Err(read_only(path)),
        }
        Ok(())
    }

    fn remove(&mut self, t: Target, path: &str) -> Result<(), ScimError> {
        match t {
            Target::UserName => {
                return Err(ScimError::bad("mutability", "userName is required and cannot be removed"));
            }
            Target::Active => {
                return Err(ScimError::bad("mutability", "active cannot be removed; replace it with true or false"));
            }
            Target::DisplayName => self.display_name = None,
            Target::ExternalId => self.external_id = None,
            Target::Formatted => self.formatted = None,
            Target::GivenName => self.given_name = None,
            Target::FamilyName => self.family_name = None,
            Target::Name => (self.formatted, self.given_name, self.family_name) = (None, None, None),
            Target::Emails | Target::EmailEntry | Target::EmailValue => self.email = None,
            Target::Ignored => {}
            Target::ReadOnly => return Err(read_only(path)),
        }
        Ok(())
    }

    /// The address Arno keys the account by: the work e-mail, else a userName that is one.
    pub fn address(&self) -> Result<String, ScimError> {
        match &self.email {
            Some(email) => users::normalize_email(email)
                .map_err(|_| invalid_value("the work e-mail is not a valid e-mail address")),
            None => users::normalize_email(&self.user_name).map_err(|_| {
                invalid_value("Arno needs an e-mail address: send emails (type work), or a userName that is one")
            }),
        }
    }

    /// Arno's display name: `name.formatted`, else `displayName`, else `givenName familyName`.
    pub fn name(&self) -> Option<String> {
        let joined = [self.given_name.as_deref(), self.family_name.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        self.formatted.clone().or_else(|| self.display_name.clone()).or((!joined.is_empty()).then_some(joined))
    }

    /// Whether the attributes Arno's name is derived from differ.
    pub fn name_differs(&self, other: &ScimUser) -> bool {
        (&self.display_name, &self.formatted, &self.given_name, &self.family_name)
            != (&other.display_name, &other.formatted, &other.given_name, &other.family_name)
    }
}

fn read_only(path: &str) -> ScimError {
    ScimError::bad("mutability", format!("{path:?} is read-only"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ann() -> ScimUser {
        ScimUser::from_resource(
            &json!({"userName": "ANN@corp.example", "name": {"givenName": "Ann", "familyName": "Lee"}, "active": "False",
                    "emails": [{"value": "home@x.example", "type": "home"}, {"value": "ann@corp.example", "type": "work"}],
                    "title": "Designer", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "D"}}),
            None,
        )
        .unwrap()
    }

    fn ops(v: Value) -> Vec<(String, Option<String>, Value)> {
        super::super::users::operations(&json!({"Operations": v})).unwrap()
    }

    fn scim_type(e: ScimError) -> Option<&'static str> {
        e.scim_type
    }

    #[test]
    fn entra_and_okta_shapes() {
        let a = ann();
        assert_eq!(
            (a.user_name.as_str(), a.address().unwrap().as_str(), a.name().as_deref(), a.active),
            ("ann@corp.example", "ann@corp.example", Some("Ann Lee"), false)
        );
        let mut b = a.clone();
        b.patch(&ops(json!([
            {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "new@corp.example"},
            {"op": "Replace", "value": {"name.givenName": "Anna", "active": true, "schemas": ["x"]}},
            {"op": "replace", "path": "urn:ietf:params:scim:schemas:core:2.0:User:displayName", "value": "A. Lee"},
            {"op": "add", "path": "phoneNumbers[type eq \"work\"].value", "value": "1"},
            {"op": "add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value", "value": "m"},
            {"op": "add", "path": "emails[type eq \"home\"].value", "value": "ignored@x.example"},
        ])))
        .unwrap();
        assert_eq!(
            (b.email.as_deref(), b.given_name.as_deref(), b.display_name.as_deref(), b.active),
            (Some("new@corp.example"), Some("Anna"), Some("A. Lee"), true)
        );
    }

    #[test]
    fn remove_and_errors() {
        let mut a = ann();
        a.patch(&ops(json!([{"op": "remove", "path": "emails[type eq \"work\"]"}, {"op": "remove", "path": "name"}])))
            .unwrap();
        assert_eq!((a.email.as_deref(), a.name()), (None, None));
        assert_eq!(a.address().unwrap(), "ann@corp.example", "the userName is an address");
        for (op, expected) in [
            (json!({"op": "remove", "path": "userName"}), "mutability"),
            (json!({"op": "remove"}), "noTarget"),
            (json!({"op": "replace", "path": "meta.created", "value": "x"}), "mutability"),
            (json!({"op": "replace", "path": "nickName2", "value": "x"}), "invalidPath"),
            (json!({"op": "replace", "path": "name.nick", "value": "x"}), "invalidPath"),
            (json!({"op": "replace", "path": "displayName[type eq \"x\"]", "value": "x"}), "invalidPath"),
            (json!({"op": "replace", "path": "emails[type sw \"w\"].value", "value": "x"}), "invalidFilter"),
            (json!({"op": "replace", "path": "emails[value eq \"nobody@x\"].value", "value": "x"}), "noTarget"),
            (json!({"op": "replace", "path": "urn:example:custom:attr", "value": "x"}), "invalidPath"),
            (json!({"op": "replace", "path": "active", "value": "maybe"}), "invalidValue"),
            (json!({"op": "replace", "value": {"favouriteColour": "x"}}), "invalidPath"),
        ] {
            let mut b = ann();
            assert_eq!(scim_type(b.patch(&ops(json!([op.clone()]))).unwrap_err()), Some(expected), "{op}");
        }
        let mut c = ann();
        c.patch(&ops(
            json!([{"op": "replace", "path": "userName", "value": "ann"}, {"op": "remove", "path": "emails"}]),
        ))
        .unwrap();
        assert!(c.address().is_err(), "neither an e-mail nor a userName that is one");
    }
}
