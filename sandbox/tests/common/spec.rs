//! A lenient checker of JSON answers against the official OpenAPI specs in `sandbox/specs/`:
//! types of present properties, required properties, array items, `nullable`, `enum`,
//! `allOf` / `oneOf` / `anyOf`; extra properties are allowed (the specs are loose there).
//! Shared by the Pipedrive and Brevo tests.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use serde_json::Value;

static SPECS: OnceLock<Mutex<HashMap<String, &'static Value>>> = OnceLock::new();

pub fn load(file: &str) -> &'static Value {
    let specs = SPECS.get_or_init(|| Mutex::new(HashMap::new()));
    let mut map = specs.lock().unwrap();
    if let Some(v) = map.get(file) {
        return v;
    }
    let path = format!("{}/specs/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let yaml: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let json: &'static Value = Box::leak(Box::new(serde_json::to_value(yaml).unwrap()));
    map.insert(file.to_owned(), json);
    json
}

fn resolve<'a>(spec: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let mut node = spec;
            for part in r.trim_start_matches("#/").split('/') {
                node = &node[part];
            }
            resolve(spec, node)
        }
        None => schema,
    }
}

/// The JSON schema of an operation's answer with `status`.
pub fn response_schema<'a>(spec: &'a Value, path: &str, method: &str, status: &str) -> &'a Value {
    let op = &spec["paths"][path][method];
    assert!(op.is_object(), "no operation {method} {path} in the spec");
    let response = resolve(spec, &op["responses"][status]);
    let schema = &response["content"]["application/json"]["schema"];
    assert!(schema.is_object(), "no JSON schema for {method} {path} {status}");
    schema
}

/// Every mismatch, as "path: problem". With `strict_nulls`, a null is accepted only where the
/// schema says `nullable: true`; without, anywhere (Pipedrive's nullable flags are incomplete,
/// pipedrive-api.md §16).
pub fn check(spec: &Value, schema: &Value, value: &Value, strict_nulls: bool) -> Vec<String> {
    let mut errors = Vec::new();
    walk(spec, schema, value, "$", &mut errors, 0, strict_nulls);
    errors
}

fn walk(
    spec: &Value,
    schema: &Value,
    value: &Value,
    at: &str,
    errors: &mut Vec<String>,
    depth: usize,
    strict: bool,
) {
    if depth > 40 {
        return;
    }
    let schema = resolve(spec, schema);
    if value.is_null() {
        let typed = schema.get("type").is_some() || schema.get("properties").is_some();
        if strict && typed && schema.get("nullable") != Some(&Value::Bool(true)) {
            errors.push(format!("{at}: null where the spec does not allow it"));
        }
        return;
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for s in all {
            walk(spec, s, value, at, errors, depth + 1, strict);
        }
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(options) = schema.get(key).and_then(Value::as_array) {
            let fits = options.iter().any(|s| {
                let mut e = Vec::new();
                walk(spec, s, value, at, &mut e, depth + 1, strict);
                e.is_empty()
            });
            if !fits {
                errors.push(format!("{at}: matches none of the {key} options"));
            }
        }
    }
    let ty = schema.get("type").and_then(Value::as_str);
    let ok = match ty {
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        _ => true,
    };
    if !ok {
        errors.push(format!("{at}: expected {}, got {}", ty.unwrap_or("?"), value));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        let numeric_match =
            value.is_number() && allowed.iter().any(|a| a.as_f64() == value.as_f64());
        if !numeric_match && !allowed.contains(value) {
            errors.push(format!("{at}: {value} is not one of {allowed:?}"));
        }
    }
    if let Some(obj) = value.as_object() {
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            for r in required.iter().filter_map(Value::as_str) {
                if !obj.contains_key(r) {
                    errors.push(format!("{at}: required property {r:?} is missing"));
                }
            }
        }
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (k, v) in obj {
                if let Some(s) = props.get(k) {
                    walk(spec, s, v, &format!("{at}.{k}"), errors, depth + 1, strict);
                }
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), value.as_array()) {
        for (i, v) in arr.iter().enumerate().take(50) {
            walk(spec, items, v, &format!("{at}[{i}]"), errors, depth + 1, strict);
        }
    }
}

/// Panics with every mismatch of `value` against the answer schema of the operation.
pub fn assert_matches(file: &str, path: &str, method: &str, status: &str, value: &Value) {
    let spec = load(file);
    let schema = response_schema(spec, path, method, status);
    let errors = check(spec, schema, value, file.starts_with("brevo"));
    assert!(
        errors.is_empty(),
        "{method} {path} answer does not match {file}:\n{}",
        errors.join("\n")
    );
}
