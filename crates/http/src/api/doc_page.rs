//! `GET /api/v2/docs`: the OpenAPI document drawn as one server-rendered page
//! (no script, no assets of its own, so the CSP holds): every operation with
//! its scopes, parameters, body and answers, then every schema.

use crate::web::layout::document;
use maud::{html, Markup};
use serde_json::Value;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// The page of `openapi` (the document as [`super::doc::document`] makes it).
pub fn render(openapi: &Value) -> Markup {
    let empty = serde_json::Map::new();
    let paths = openapi["paths"].as_object().unwrap_or(&empty);
    let schemas = openapi["components"]["schemas"]
        .as_object()
        .unwrap_or(&empty);
    let mut operations = Vec::new();
    for (path, item) in paths {
        for method in METHODS {
            if let Some(operation) = item.get(method) {
                operations.push((path.as_str(), method, operation));
            }
        }
    }
    document(
        "API reference",
        html! {
            main.docs id="content" {
                h1 { "Credence API" }
                p { (openapi["info"]["description"].as_str().unwrap_or("")) }
                p {
                    "The machine-readable document: "
                    a href="/api/v2/openapi.json" { "/api/v2/openapi.json" }
                    " (OpenAPI " (openapi["openapi"].as_str().unwrap_or("")) "). "
                    "Every error answers the " a href="#schema-Error" { "Error" } " envelope."
                }
                nav aria-label="Operations" {
                    ul {
                        @for (path, method, operation) in &operations {
                            li { a href={ "#" (anchor(method, path)) } { code { (method.to_uppercase()) " " (path) } } " " (operation["summary"].as_str().unwrap_or("")) }
                        }
                    }
                }
                @for (path, method, operation) in &operations {
                    (operation_section(path, method, operation))
                }
                h2 { "Schemas" }
                @for (name, schema) in schemas {
                    section id={ "schema-" (name) } {
                        h3 { (name) }
                        @if let Some(description) = schema["description"].as_str() { p { (description) } }
                        (schema_table(schema))
                    }
                }
            }
        },
    )
}

fn anchor(method: &str, path: &str) -> String {
    let mut out = format!("op-{method}");
    for c in path.chars() {
        out.push(if c.is_ascii_alphanumeric() { c } else { '-' });
    }
    out
}

fn operation_section(path: &str, method: &str, operation: &Value) -> Markup {
    let scopes: Vec<String> = operation["security"]
        .as_array()
        .map(|requirements| {
            requirements
                .iter()
                .filter_map(|requirement| requirement.get(super::doc::TOKEN))
                .filter_map(Value::as_array)
                .flatten()
                .filter_map(|scope| scope.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let secured = operation["security"]
        .as_array()
        .is_some_and(|requirements| !requirements.is_empty());
    html! {
        section id=(anchor(method, path)) {
            h2 { code { (method.to_uppercase()) " " (path) } }
            @if let Some(summary) = operation["summary"].as_str() { p { strong { (summary) } } }
            @if let Some(description) = operation["description"].as_str() { p { (description) } }
            p {
                @if !secured { "No token needed." }
                @else if scopes.is_empty() { "Any API token." }
                @else { "Token scope: " @for scope in &scopes { code { (scope) } " " } }
            }
            @if let Some(parameters) = operation["parameters"].as_array() {
                table {
                    caption { "Parameters" }
                    thead { tr { th scope="col" { "Name" } th scope="col" { "In" } th scope="col" { "Required" } th scope="col" { "Type" } th scope="col" { "Description" } } }
                    tbody {
                        @for parameter in parameters {
                            tr {
                                td { code { (parameter["name"].as_str().unwrap_or("")) } }
                                td { (parameter["in"].as_str().unwrap_or("")) }
                                td { @if parameter["required"].as_bool() == Some(true) { "yes" } @else { "no" } }
                                td { (type_of(&parameter["schema"])) }
                                td { (parameter["description"].as_str().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
            @if let Some(body) = operation.get("requestBody") {
                p {
                    "Body"
                    @if body["required"].as_bool() == Some(true) { " (required)" } @else { " (optional)" }
                    ": "
                    @for (media, content) in body["content"].as_object().into_iter().flatten() {
                        code { (media) } " " (type_of(&content["schema"])) " "
                    }
                    @if let Some(description) = body["description"].as_str() { " — " (description) }
                }
            }
            table {
                caption { "Answers" }
                thead { tr { th scope="col" { "Status" } th scope="col" { "Description" } th scope="col" { "Body" } } }
                tbody {
                    @for (status, answer) in operation["responses"].as_object().into_iter().flatten() {
                        tr {
                            td { (status) }
                            td { (describe_response(answer)) }
                            td { (response_body(answer)) }
                        }
                    }
                }
            }
        }
    }
}

/// A shared answer is a `$ref` to `#/components/responses/<Name>`.
fn describe_response(answer: &Value) -> String {
    match answer["$ref"].as_str() {
        Some(reference) => reference.rsplit('/').next().unwrap_or("").to_string(),
        None => answer["description"].as_str().unwrap_or("").to_string(),
    }
}

fn response_body(answer: &Value) -> Markup {
    if answer.get("$ref").is_some() {
        return html! { a href="#schema-Error" { "Error" } };
    }
    html! {
        @for (media, content) in answer["content"].as_object().into_iter().flatten() {
            code { (media) } " " (type_of(&content["schema"])) " "
        }
    }
}

/// A schema, briefly: a link to a named one, or its type.
fn type_of(schema: &Value) -> Markup {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap_or("");
        return html! { a href={ "#schema-" (name) } { (name) } };
    }
    if let Some(items) = schema.get("items") {
        return html! { "array of " (type_of(items)) };
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(options) = schema[key].as_array() {
            return html! {
                @for (index, option) in options.iter().enumerate() {
                    @if index > 0 { " or " }
                    (type_of(option))
                }
            };
        }
    }
    let kind = match &schema["type"] {
        Value::String(kind) => kind.clone(),
        Value::Array(kinds) => kinds
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "any".to_string(),
    };
    let format = schema["format"].as_str();
    html! { (kind) @if let Some(format) = format { " (" (format) ")" } }
}

fn schema_table(schema: &Value) -> Markup {
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    match schema["properties"].as_object() {
        None => html! { p { "Type: " (type_of(schema)) } },
        Some(properties) => html! {
            table {
                thead { tr { th scope="col" { "Property" } th scope="col" { "Type" } th scope="col" { "Required" } th scope="col" { "Description" } } }
                tbody {
                    @for (name, property) in properties {
                        tr {
                            td { code { (name) } }
                            td { (type_of(property)) }
                            td { @if required.contains(&name.as_str()) { "yes" } @else { "no" } }
                            td { (property["description"].as_str().unwrap_or("")) }
                        }
                    }
                }
            }
        },
    }
}
