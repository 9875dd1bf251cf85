//! Fuzz targets for what an identity provider (or anyone holding the SCIM token) sends: filters
//! and paths, and PATCH bodies for users and groups (engine and how to run: `src/fuzz.rs`).

use serde_json::{Value, json};

use super::groups::plan_patch;
use super::user_model::ScimUser;
use super::users::operations;
use super::{ScimError, parse_filter};
use crate::fuzz::{self, Rng, Target};

fn ann() -> ScimUser {
    ScimUser::from_resource(
        &json!({"userName": "ann@example.org", "emails": [{"value": "ann@example.org", "type": "work", "primary": true}],
                "name": {"givenName": "Ann", "familyName": "Lee"}, "externalId": "x1", "active": true}),
        None,
    )
    .expect("a plain user reads")
}

/// Errors are SCIM errors a client can act on: a 4xx status and, for 400, a `scimType`.
fn check_error(e: &ScimError) -> String {
    let status = e.status.as_u16();
    assert!((400..500).contains(&status), "a client's mistake is a 4xx, not {status}: {e:?}");
    assert!(status != 400 || e.scim_type.is_some(), "a 400 says its scimType: {e:?}");
    format!("{status}:{:?}", e.scim_type)
}

/// A filter or path string, as each place that reads one does.
fn run_filter(input: &[u8]) -> String {
    let text = String::from_utf8_lossy(input);
    let mut shape = vec![];
    match parse_filter(&text) {
        Ok((attr, value)) => {
            assert_eq!(attr, attr.to_ascii_lowercase(), "attributes compare in lower case");
            assert!(!attr.contains(char::is_whitespace));
            // What Arno reads is what a client meant: written back, it reads the same.
            let written = format!("{attr} eq {}", serde_json::to_string(&value).expect("a string"));
            assert_eq!(parse_filter(&written).ok(), Some((attr.clone(), value.clone())), "{text:?} → {written:?}");
            shape.push(format!("filter:{}", attr.len().min(12)));
        }
        Err(e) => shape.push(check_error(&e)),
    }
    // As a PATCH path of a user and of a group.
    for kind in ["replace", "remove", "add"] {
        let ops = vec![(kind.to_owned(), Some(text.to_string()), json!("value"))];
        let mut user = ann();
        match user.patch(&ops) {
            Ok(()) => shape.push(format!("user-{kind}:ok")),
            Err(e) => shape.push(format!("user-{kind}:{}", check_error(&e))),
        }
        let value = json!([{"value": "u1"}]);
        match plan_patch(&[(kind.to_owned(), Some(text.to_string()), value)]) {
            Ok(_) => shape.push(format!("group-{kind}:ok")),
            Err(e) => shape.push(format!("group-{kind}:{}", check_error(&e))),
        }
    }
    let member = format!("members[{text}]");
    if let Err(e) = plan_patch(&[("remove".into(), Some(member), Value::Null)]) {
        shape.push(check_error(&e));
    }
    shape.join(",")
}

const FILTER_TOKENS: &[&[u8]] = &[
    b"userName",
    b"externalId",
    b"displayName",
    b"emails",
    b"members",
    b" eq ",
    b" EQ ",
    b" co ",
    b" and ",
    b"\"",
    b"\\\"",
    b"[",
    b"]",
    b".",
    b"value",
    b"type",
    b"primary",
    b"true",
    b"name.givenName",
    b"urn:ietf:params:scim:schemas:core:2.0:User:",
    b"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:",
    b"department",
    b"\t",
    b"\xc3\xa9",
    b"\xe2\x80\xa8",
];

#[test]
fn fuzz_scim_filter() {
    fuzz::run(&Target {
        name: "scim-filter",
        seeds: || {
            [
                "userName eq \"ann@example.org\"",
                "externalId eq \"00u1\"",
                "displayName eq \"Design \\\"Core\\\"\"",
                "value eq \"2819c223\"",
                "emails[type eq \"work\"].value",
                "emails[value eq \"ann@example.org\"]",
                "name.givenName",
                "urn:ietf:params:scim:schemas:core:2.0:User:name.familyName",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
                "members[value eq \"u1\"]",
            ]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect()
        },
        dictionary: FILTER_TOKENS,
        mutate: None,
        max_len: 4096,
        run: run_filter,
    });
}

const PATCH_KEYS: &[&str] = &[
    "schemas",
    "Operations",
    "op",
    "path",
    "value",
    "userName",
    "active",
    "displayName",
    "externalId",
    "emails",
    "name",
    "givenName",
    "familyName",
    "formatted",
    "type",
    "primary",
    "members",
    "display",
    "title",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
];
const PATCH_STRINGS: &[&str] = &[
    "add",
    "replace",
    "remove",
    "Replace",
    "move",
    "active",
    "userName",
    "emails[type eq \"work\"].value",
    "emails[type eq \"home\"]",
    "name.givenName",
    "externalId",
    "members",
    "members[value eq \"u1\"]",
    "displayName",
    "id",
    "meta",
    "nope",
    "ann@example.org",
    "bob@example.org",
    "not an address",
    "True",
    "False",
    "work",
    "u1",
    "",
];

fn seeds() -> Vec<Vec<u8>> {
    let schema = super::PATCH_SCHEMA;
    [
        // Entra ID.
        json!({"schemas": [schema], "Operations": [
            {"op": "Replace", "path": "displayName", "value": "Ann Lee"},
            {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "ann@example.org"},
            {"op": "Replace", "path": "active", "value": "False"}]}),
        // Okta.
        json!({"schemas": [schema], "Operations": [{"op": "replace", "value": {"active": false, "name": {"givenName": "A"}}}]}),
        json!({"schemas": [schema], "Operations": [{"op": "remove", "path": "members[value eq \"u1\"]"}]}),
        json!({"schemas": [schema], "Operations": [{"op": "add", "path": "members", "value": [{"value": "u1"}, {"value": "u2"}]}]}),
        json!({"schemas": [schema], "Operations": [{"op": "remove", "path": "name.givenName"}, {"op": "remove", "path": "externalId"}]}),
        json!({"userName": "Bob@Example.org", "emails": [{"value": "bob@example.org", "primary": true}], "active": true}),
    ]
    .iter()
    .map(|v| serde_json::to_vec(v).unwrap())
    .collect()
}

fn mutate_patch(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    fuzz::mutate_json(rng, input, PATCH_KEYS, PATCH_STRINGS)
}

/// A body as PATCH /Users, PATCH /Groups and POST /Users read it.
fn run_patch(input: &[u8]) -> String {
    let Ok(body) = serde_json::from_slice::<Value>(input) else { return "not json".into() };
    let mut shape = vec![];
    match ScimUser::from_resource(&body, None) {
        Ok(u) => {
            assert_eq!(u.user_name, u.user_name.to_lowercase(), "userName is kept in lower case");
            shape.push(format!("resource:address={}", u.address().is_ok()));
        }
        Err(e) => shape.push(format!("resource:{}", check_error(&e))),
    }
    match operations(&body) {
        Err(e) => shape.push(format!("ops:{}", check_error(&e))),
        Ok(ops) => {
            let mut user = ann();
            match user.patch(&ops) {
                Ok(()) => {
                    // `replace` is idempotent (RFC 7644 §3.5.2.3): the same request twice is once.
                    if ops.iter().all(|(kind, _, _)| kind == "replace") {
                        let once = user.clone();
                        let again = user.patch(&ops);
                        assert!(again.is_ok() && user == once, "{ops:?}: a replace applied twice differs");
                    }
                    let _ = (user.address(), user.name());
                    shape.push("user:ok".into());
                }
                Err(e) => shape.push(format!("user:{}", check_error(&e))),
            }
            match plan_patch(&ops) {
                Ok(plan) => {
                    assert!(plan.rename.as_ref().is_none_or(|n| !n.trim().is_empty()), "a group keeps a name");
                    shape.push(format!("group:ok:{}", plan.replace.is_some()));
                }
                Err(e) => shape.push(format!("group:{}", check_error(&e))),
            }
        }
    }
    shape.join(",")
}

#[test]
fn fuzz_scim_patch() {
    fuzz::run(&Target {
        name: "scim-patch",
        seeds,
        dictionary: &[
            b"\"op\":",
            b"\"path\":",
            b"\"value\":",
            b"null",
            b"[",
            b"]",
            b"{",
            b"}",
            b",",
            b"\"",
            b"\\u0000",
        ],
        mutate: Some(mutate_patch),
        max_len: 64 * 1024,
        run: run_patch,
    });
}
