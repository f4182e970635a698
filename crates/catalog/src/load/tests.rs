//! The loader's rules, one failing file per rule, each error checked for the
//! field it names.

use super::*;

const OAUTH_APP: &str = r#"
key = "acme"
label = "Acme"

[[versions]]
version = 1
base_url = "https://api.acme.example"
verify = { method = "GET", path = "/v1/me" }

[versions.auth]
kind = "oauth2"
authorize_url = "https://acme.example/oauth/authorize"
token_url = "https://acme.example/oauth/token"

[[versions.modules]]
key = "searchContacts"
label = "Search contacts"
kind = "search"
access = "read"
scopes = ["contacts.read"]
operations = ["GET /v1/contacts", "GET /v1/contacts/{id}"]

[[versions.modules]]
key = "createContact"
label = "Create a contact"
kind = "action"
access = "write"
scopes = ["contacts.write"]
operations = ["POST /v1/contacts"]

[[versions.modules]]
key = "deleteContact"
label = "Delete a contact"
kind = "action"
access = "write"
scopes = ["contacts.write"]
operations = ["DELETE /v1/contacts/{id}", "GET /v1/contacts/{id}"]
"#;

const KEY_APP: &str = r#"
key = "acme"
label = "Acme"

[[versions]]
version = 1
base_url = "https://api.acme.example"

[versions.auth]
kind = "api_key"
fields = [{ name = "apiKey", label = "API key", secret = true }]
inject = { header = "Authorization", value = "Bearer {apiKey}" }

[[versions.modules]]
key = "searchContacts"
label = "Search contacts"
kind = "search"
access = "read"
operations = ["GET /v1/contacts"]
"#;

fn load(text: &str) -> Result<App, CatalogError> {
    parse_app("apps/acme.toml", text, Origin::Builtin)
}

fn error(text: &str) -> String {
    match load(text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(error) => error.to_string(),
    }
}

/// Replaces `from` (which must occur) in `base`.
fn edit(base: &str, from: &str, to: &str) -> String {
    assert!(base.contains(from), "{from:?} is not in the base text");
    base.replacen(from, to, 1)
}

#[test]
fn the_base_apps_load() {
    let app = load(OAUTH_APP).unwrap();
    let version = app.latest();
    let oauth2 = version.auth.oauth2().unwrap();
    assert_eq!(oauth2.scope_separator, " ");
    assert!(oauth2.pkce, "pkce defaults to true");
    assert_eq!(oauth2.client_auth, ClientAuth::Basic);
    assert_eq!(version.modules.len(), 3);
    let key_app = load(KEY_APP).unwrap();
    assert!(key_app.latest().auth.fields()[0].secret);
}

#[test]
fn a_bad_operation_names_file_and_field() {
    let text = edit(
        OAUTH_APP,
        "\"DELETE /v1/contacts/{id}\", \"GET /v1/contacts/{id}\"]",
        "\"DELETE /v1/contacts/{id}\", \"FETCH /x\"]",
    );
    assert_eq!(
        error(&text),
        "apps/acme.toml: versions[0].modules[2].operations[1]: \"FETCH /x\" is not \"METHOD /path\": the method \"FETCH\" is not one of GET, POST, PUT, PATCH, DELETE, HEAD"
    );
}

#[test]
fn every_rule_names_its_field() {
    let cases: Vec<(String, &str)> = vec![
        (edit(OAUTH_APP, "key = \"acme\"", "key = \"\""), "key: \"\" is not an app key"),
        (edit(OAUTH_APP, "key = \"acme\"", &format!("key = \"{}\"", "a".repeat(65))), "key: "),
        (edit(OAUTH_APP, "label = \"Acme\"", "label = \"  \""), "label: is empty"),
        (edit(OAUTH_APP, "version = 1", "version = 0"), "versions[0].version: is 0"),
        (
            format!("{OAUTH_APP}\n[[versions]]\nversion = 1\nbase_url = \"https://api.acme.example\"\nauth = {{ kind = \"oauth2\", authorize_url = \"https://a.example/a\", token_url = \"https://a.example/t\" }}\nmodules = [{{ key = \"a\", label = \"A\", kind = \"search\", access = \"read\", operations = [\"GET /a\"] }}]\n"),
            "versions[1].version: version 1 appears twice",
        ),
        (edit(OAUTH_APP, "kind = \"oauth2\"", "kind = \"saml\""), "versions[0].auth.kind: \"saml\" is not an auth kind"),
        (edit(OAUTH_APP, "https://acme.example/oauth/token", "http://acme.example/oauth/token"), "versions[0].auth.token_url: \"http://acme.example/oauth/token\" uses http"),
        (edit(OAUTH_APP, "token_url = \"https://acme.example/oauth/token\"\n", ""), "versions[0].auth.token_url: is missing"),
        (edit(OAUTH_APP, "kind = \"oauth2\"", "kind = \"oauth2\"\nfields = []"), "versions[0].auth.fields: does not apply to auth.kind = \"oauth2\""),
        (edit(OAUTH_APP, "kind = \"oauth2\"", "kind = \"oauth2\"\nclient_auth = \"jwt\""), "versions[0].auth.client_auth: \"jwt\" is not a client authentication"),
        (edit(OAUTH_APP, "kind = \"oauth2\"", "kind = \"oauth2\"\nrevocation_style = \"bearer\""), "versions[0].auth.revocation_style: needs revocation_url"),
        (edit(OAUTH_APP, "kind = \"oauth2\"", "kind = \"oauth2\"\nextra_authorize_params = { state = \"x\" }"), "versions[0].auth.extra_authorize_params.state: is set by the OAuth client"),
        (edit(OAUTH_APP, "kind = \"oauth2\"", "kind = \"oauth2\"\nscope_separator = \".\""), "versions[0].modules[0].scopes[0]: \"contacts.read\" contains the scope separator \".\""),
        (edit(OAUTH_APP, "kind = \"oauth2\"", "kind = \"oauth2\"\ntoken_fields = [\"refresh_token\"]"), "versions[0].auth.token_fields[0]: \"refresh_token\" is a secret"),
        (edit(OAUTH_APP, "\"contacts.read\"]", "\"contacts.read\", \"contacts.read\"]"), "versions[0].modules[0].scopes[1]: \"contacts.read\" is listed twice"),
        (edit(OAUTH_APP, "\"contacts.read\"]", "\"contacts read\"]"), "versions[0].modules[0].scopes[0]: \"contacts read\" is not a scope"),
        (edit(OAUTH_APP, "key = \"createContact\"", "key = \"searchContacts\""), "versions[0].modules[1].key: \"searchContacts\" is used by two modules"),
        (edit(OAUTH_APP, "key = \"createContact\"", "key = \"create-contact\""), "versions[0].modules[1].key: \"create-contact\" is not a module key"),
        (edit(OAUTH_APP, "access = \"write\"", "access = \"admin\""), "versions[0].modules[1].access: \"admin\" is not an access"),
        (edit(OAUTH_APP, "[\"POST /v1/contacts\"]", "[]"), "versions[0].modules[1].operations: is empty"),
        (edit(OAUTH_APP, "[\"POST /v1/contacts\"]", "[\"POST /v1/contacts\", \"POST /v1/contacts\"]"), "versions[0].modules[1].operations[1]: \"POST /v1/contacts\" is listed twice"),
        (edit(OAUTH_APP, "\"POST /v1/contacts\"", "\"POST /v1/../admin\""), "versions[0].modules[1].operations[0]: \"POST /v1/../admin\" is not \"METHOD /path\": \"/v1/../admin\" has a \"..\" segment"),
        (edit(OAUTH_APP, "\"POST /v1/contacts\"", "\"POST v1/contacts\""), "versions[0].modules[1].operations[0]: \"POST v1/contacts\" is not \"METHOD /path\""),
        (edit(OAUTH_APP, "path = \"/v1/me\"", "path = \"/v1/users/{id}\""), "versions[0].verify.path: \"/v1/users/{id}\" has the parameter {id}"),
        (edit(OAUTH_APP, "https://api.acme.example", "https://api.acme.example/"), "versions[0].base_url: \"https://api.acme.example/\" ends with /"),
        (edit(OAUTH_APP, "https://api.acme.example", "https://10.0.0.1"), "versions[0].base_url: \"https://10.0.0.1\": the host 10.0.0.1 is an IP address"),
        (edit(OAUTH_APP, "https://api.acme.example", "https://{tenant}.acme.example"), "versions[0].base_url: \"https://{tenant}.acme.example\" has a {placeholder}"),
        (edit(OAUTH_APP, "label = \"Acme\"", "label = \"Acme\"\nallow_private_hosts = true"), "allow_private_hosts: a built-in app cannot allow private hosts"),
        (edit(OAUTH_APP, "version = 1", "version = 1\nheaders = { Authorization = \"Bearer x\" }"), "versions[0].headers.Authorization: carries credentials"),
        (edit(OAUTH_APP, "version = 1", "version = 1\nheaders = { Host = \"evil.example\" }"), "versions[0].headers.Host: Host is set by the HTTP client"),
        (edit(OAUTH_APP, "version = 1", "version = 1\nheaders = { X-Api-Version = \"{v}\" }"), "versions[0].headers.X-Api-Version: \"{v}\" is not a fixed header value"),
        (edit(KEY_APP, "value = \"Bearer {apiKey}\"", "value = \"Bearer apiKey\""), "versions[0].auth.inject.value: \"Bearer apiKey\" references no field"),
        (edit(KEY_APP, "value = \"Bearer {apiKey}\"", "value = \"Bearer {apiKey\""), "versions[0].auth.inject.value: \"Bearer {apiKey\" has a { without a matching }"),
        (edit(KEY_APP, "header = \"Authorization\"", "header = \"Authorization\", query = \"key\""), "versions[0].auth.inject: needs exactly one of header"),
        (edit(KEY_APP, "header = \"Authorization\"", "header = \"Content-Length\""), "versions[0].auth.inject.header: Content-Length is set by the HTTP client"),
        (edit(KEY_APP, "header = \"Authorization\"", "header = \"Bad Header\""), "versions[0].auth.inject.header: \"Bad Header\" is not a header name"),
        (edit(KEY_APP, "header = \"Authorization\"", "headr = \"Authorization\""), "versions[0].auth.inject: unknown field `headr`"),
        (edit(KEY_APP, "inject = {", "inject = [{").replace("apiKey}\" }", "apiKey}\" }]"), "versions[0].auth.inject: api_key takes one injection"),
        (edit(KEY_APP, "secret = true", "secret = false"), "versions[0].auth.fields: no secret field is injected"),
        (edit(KEY_APP, "secret = true }]", "secret = true }, { name = \"region\", label = \"Region\", secret = false }]"), "versions[0].auth.fields: the field \"region\" is declared but never used"),
        (edit(KEY_APP, "secret = true }]", "secret = true }, { name = \"apiKey\", label = \"Again\" }]"), "versions[0].auth.fields[1].name: \"apiKey\" is declared twice"),
        (edit(KEY_APP, "name = \"apiKey\"", "name = \"api-key\""), "versions[0].auth.fields[0].name: \"api-key\" is not a field name"),
        (edit(KEY_APP, "kind = \"search\"", "kind = \"search\"\nscopes = [\"read\"]"), "versions[0].modules[0].scopes: scopes are requested only in an OAuth 2.0 flow"),
        (edit(KEY_APP, "kind = \"api_key\"", "kind = \"custom\""), "versions[0].auth.inject: custom takes a list of injections"),
        (edit(KEY_APP, "kind = \"api_key\"", "kind = \"basic\""), "versions[0].auth.inject: does not apply to auth.kind = \"basic\""),
        (edit(KEY_APP, "version = 1", "version = 1\naccount_host_field = \"apiKey\""), "versions[0].host_suffix: is missing"),
        (edit(KEY_APP, "version = 1", "version = 1\nhost_suffix = \"acme.example\""), "versions[0].host_suffix: is only meaningful with account_host_field"),
    ];
    for (text, expected) in cases {
        let got = error(&text);
        let expected = format!("apps/acme.toml: {expected}");
        assert!(
            got.starts_with(&expected),
            "\ngot:      {got}\nexpected: {expected}"
        );
    }
}

const SHOP_APP: &str = r#"
key = "shop"
label = "Shop"

[[versions]]
version = 1
base_url = "https://{shop}.shop.example/admin"
account_host_field = "shop"
host_suffix = "shop.example"

[versions.auth]
kind = "custom"
fields = [
  { name = "shop", label = "Shop", secret = false },
  { name = "token", label = "Token" },
]
inject = [{ header = "X-Token", value = "{token}" }, { query = "shop_id", value = "{shop}" }]

[[versions.modules]]
key = "listOrders"
label = "List orders"
kind = "search"
access = "read"
operations = ["GET /orders"]
"#;

#[test]
fn per_account_hosts_are_checked_at_load() {
    let app = load(SHOP_APP).unwrap();
    let version = app.latest();
    assert_eq!(version.auth.injections().len(), 2);
    assert_eq!(
        version.base_url_for(Some("acme")).unwrap(),
        "https://acme.shop.example/admin"
    );
    let cases = [
        (edit(SHOP_APP, "host_suffix = \"shop.example\"", "host_suffix = \"other.example\""), "versions[0].base_url: the host {shop}.shop.example is not under host_suffix other.example"),
        (edit(SHOP_APP, "host_suffix = \"shop.example\"", "host_suffix = \"example\""), "versions[0].host_suffix: \"example\" is a top-level domain"),
        (edit(SHOP_APP, "https://{shop}.shop.example/admin", "https://api.shop.example/{shop}"), "versions[0].base_url: \"https://api.shop.example/{shop}\" must start its host with {shop}"),
        (edit(SHOP_APP, "https://{shop}.shop.example/admin", "https://{shop}.shop.example:8443/admin"), "versions[0].base_url: a per-account host cannot have a port"),
        (edit(SHOP_APP, "https://{shop}.shop.example/admin", "http://{shop}.shop.example/admin"), "versions[0].base_url: \"http://{shop}.shop.example/admin\" uses http"),
        (edit(SHOP_APP, "account_host_field = \"shop\"", "account_host_field = \"token\""), "versions[0].account_host_field: \"token\" is not declared in auth.fields with secret = false"),
        (edit(SHOP_APP, "name = \"shop\", label = \"Shop\", secret = false", "name = \"shop\", label = \"Shop\""), "versions[0].account_host_field: \"shop\" is not declared"),
    ];
    for (text, expected) in cases {
        let got = error(&text);
        let expected = format!("apps/acme.toml: {expected}");
        assert!(
            got.starts_with(&expected),
            "\ngot:      {got}\nexpected: {expected}"
        );
    }
}

#[test]
fn basic_defaults_to_username_and_password_fields() {
    let text = edit(KEY_APP, "kind = \"api_key\"\nfields = [{ name = \"apiKey\", label = \"API key\", secret = true }]\ninject = { header = \"Authorization\", value = \"Bearer {apiKey}\" }", "kind = \"basic\"");
    let app = load(&text).unwrap();
    let Auth::Basic(basic) = &app.latest().auth else {
        panic!("basic expected");
    };
    assert_eq!(basic.fields.len(), 2);
    assert!(!basic.fields[0].secret && basic.fields[1].secret);
    assert_eq!(basic.username.as_str(), "{username}");
    assert_eq!(basic.password.as_str(), "{password}");

    let both = edit(
        &text,
        "kind = \"basic\"",
        "kind = \"basic\"\nusername = \"{username}\"\nusername_field = \"username\"",
    );
    assert!(error(&both).contains("versions[0].auth.username_field: set either username"));
    let undeclared = edit(
        &text,
        "kind = \"basic\"",
        "kind = \"basic\"\npassword_field = \"token\"",
    );
    assert!(error(&undeclared)
        .contains("versions[0].auth.password_field: \"token\" is not a declared field"));
}

#[test]
fn operator_files_may_use_private_hosts() {
    let text = edit(
        KEY_APP,
        "label = \"Acme\"",
        "label = \"Acme\"\nallow_private_hosts = true",
    )
    .replace("https://api.acme.example", "http://127.0.0.1:8080");
    let app = parse_app("/etc/credence/apps/acme.toml", &text, Origin::Operator).unwrap();
    assert!(app.allow_private_hosts && !app.builtin);
    assert_eq!(app.source, "/etc/credence/apps/acme.toml");
}

#[test]
fn versions_are_sorted_and_the_latest_is_the_highest() {
    let second = "\n[[versions]]\nversion = 2\nbase_url = \"https://api.acme.example\"\nauth = { kind = \"oauth2\", authorize_url = \"https://a.example/a\", token_url = \"https://a.example/t\" }\nmodules = [{ key = \"a\", label = \"A\", kind = \"search\", access = \"read\", operations = [\"GET /a\"] }]\n";
    let text = format!(
        "{}{second}",
        OAUTH_APP.replace("version = 1", "version = 3")
    );
    let app = load(&text).unwrap();
    let numbers: Vec<u32> = app.versions.iter().map(|version| version.version).collect();
    assert_eq!(numbers, [2, 3]);
    assert_eq!(app.latest().version, 3);
    assert!(app.version(2).is_some() && app.version(1).is_none());
}
