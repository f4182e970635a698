//! What the rest of Credence asks of the catalog: module selections, the scopes
//! they need, the broker's call check, per-account hosts, and loading an
//! operator's directory next to the built-in apps.

use credence_catalog::{AppVersion, Catalog, CatalogError, ModuleSelection};
use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

fn catalog() -> Catalog {
    Catalog::builtin().unwrap()
}

fn keys(keys: &[&str]) -> Vec<String> {
    keys.iter().map(|key| key.to_string()).collect()
}

fn select(version: &AppVersion, selected: &[&str]) -> ModuleSelection {
    ModuleSelection::parse(&keys(selected), version).unwrap()
}

fn set(values: &[&str]) -> BTreeSet<String> {
    values.iter().map(|value| value.to_string()).collect()
}

#[test]
fn scopes_are_exactly_the_union_of_the_selected_modules() {
    let catalog = catalog();
    let gmail = catalog.get("gmail").unwrap().latest();
    let scopes = gmail
        .scopes_for(&select(
            gmail,
            &["searchEmails", "watchEmails", "sendEmail"],
        ))
        .unwrap();
    assert_eq!(
        scopes,
        set(&[
            "https://www.googleapis.com/auth/gmail.readonly",
            "https://www.googleapis.com/auth/gmail.send",
        ])
    );
    let send_only = gmail.scopes_for(&select(gmail, &["sendEmail"])).unwrap();
    assert_eq!(
        send_only,
        set(&["https://www.googleapis.com/auth/gmail.send"])
    );

    let outlook = catalog.get("outlook").unwrap().latest();
    let scopes = outlook
        .scopes_for(&select(outlook, &["sendEmail"]))
        .unwrap();
    assert_eq!(scopes, set(&["Mail.Send", "offline_access", "User.Read"]));

    // Apps without OAuth need no scopes.
    let stripe = catalog.get("stripe").unwrap().latest();
    assert!(stripe.scopes_for(&ModuleSelection::All).unwrap().is_empty());
}

#[test]
fn scopes_for_refuses_a_selection_made_for_another_app() {
    let catalog = catalog();
    let gmail = catalog.get("gmail").unwrap().latest();
    let foreign = ModuleSelection::Only(set(&["searchContacts"]));
    let error = gmail.scopes_for(&foreign).unwrap_err().to_string();
    assert!(error.contains("\"searchContacts\""), "{error}");
    assert!(error.contains("sendEmail"), "{error}");
    let empty = ModuleSelection::Only(BTreeSet::new());
    assert!(matches!(
        gmail.scopes_for(&empty),
        Err(CatalogError::EmptySelection { .. })
    ));
}

#[test]
fn module_selection_parse_accepts_a_wildcard_or_known_keys() {
    let catalog = catalog();
    let hubspot = catalog.get("hubspot").unwrap().latest();
    assert_eq!(
        ModuleSelection::parse(&keys(&["*"]), hubspot).unwrap(),
        ModuleSelection::All
    );
    assert_eq!(
        ModuleSelection::parse(
            &keys(&["searchContacts", "createDeal", "searchContacts"]),
            hubspot
        )
        .unwrap(),
        ModuleSelection::Only(set(&["createDeal", "searchContacts"]))
    );
    assert_eq!(
        serde_json::to_value(ModuleSelection::All).unwrap(),
        serde_json::json!(["*"])
    );
}

#[test]
fn module_selection_parse_names_what_is_wrong() {
    let catalog = catalog();
    let hubspot = catalog.get("hubspot").unwrap().latest();

    let unknown = ModuleSelection::parse(&keys(&["searchContacts", "sendFax"]), hubspot)
        .unwrap_err()
        .to_string();
    assert!(unknown.contains("unknown module \"sendFax\""), "{unknown}");
    for valid in [
        "watchContacts",
        "searchContacts",
        "createContact",
        "searchCompanies",
        "createDeal",
    ] {
        assert!(unknown.contains(valid), "{unknown} should list {valid}");
    }

    let empty = ModuleSelection::parse(&[], hubspot)
        .unwrap_err()
        .to_string();
    assert!(empty.starts_with("no modules selected"), "{empty}");
    assert!(empty.contains("searchContacts"), "{empty}");

    let mixed = ModuleSelection::parse(&keys(&["*", "createDeal"]), hubspot).unwrap_err();
    assert!(matches!(mixed, CatalogError::WildcardWithKeys));

    // Keys are case-sensitive: a near miss is still unknown.
    assert!(ModuleSelection::parse(&keys(&["SearchContacts"]), hubspot).is_err());
}

#[test]
fn the_broker_check_allows_only_operations_of_selected_modules() {
    let catalog = catalog();
    let gmail = catalog.get("gmail").unwrap().latest();
    let send_only = select(gmail, &["sendEmail"]);

    let module = gmail
        .allows(&send_only, "POST", "/gmail/v1/users/me/messages/send")
        .unwrap();
    assert_eq!(module.key, "sendEmail");
    assert!(gmail
        .allows(&send_only, "GET", "/gmail/v1/users/me/messages")
        .is_none());
    assert!(gmail
        .allows(&send_only, "GET", "/gmail/v1/users/me/messages/send")
        .is_none());
    assert!(gmail
        .allows(&send_only, "POST", "/gmail/v1/users/me/messages/send/x")
        .is_none());
    assert!(gmail
        .allows(&send_only, "POST", "/gmail/v1/users/me/messages/send/")
        .is_none());

    let read = select(gmail, &["searchEmails"]);
    assert!(gmail
        .allows(&read, "GET", "/gmail/v1/users/me/messages/18c2?format=full")
        .is_some());
    assert!(gmail
        .allows(
            &read,
            "GET",
            "/gmail/v1/users/me/messages/..%2F..%2Fsettings"
        )
        .is_none());
    assert!(gmail
        .allows(&read, "GET", "/gmail/v1/users/me/messages/../settings")
        .is_none());
    assert!(gmail
        .allows(&read, "GET", "/gmail/v1/users/me/settings/filters")
        .is_none());
    assert!(gmail
        .allows(&read, "DELETE", "/gmail/v1/users/me/messages/18c2")
        .is_none());

    assert!(gmail
        .allows(
            &ModuleSelection::All,
            "POST",
            "/gmail/v1/users/me/messages/18c2/trash"
        )
        .is_some());
}

#[test]
fn the_most_specific_operation_names_the_path_template() {
    let catalog = catalog();
    let stripe = catalog.get("stripe").unwrap().latest();
    let (module, operation) = stripe
        .matching_operation(
            &ModuleSelection::All,
            "GET",
            "/v1/customers/search?query=email:'a'",
        )
        .unwrap();
    assert_eq!(module.key, "searchCustomers");
    assert_eq!(operation.path.as_str(), "/v1/customers/search");
    let (_, operation) = stripe
        .matching_operation(&ModuleSelection::All, "GET", "/v1/customers/cus_123")
        .unwrap();
    assert_eq!(operation.path.as_str(), "/v1/customers/{id}");
}

#[test]
fn airtable_metadata_is_not_reachable_through_record_modules() {
    let catalog = catalog();
    let airtable = catalog.get("airtable").unwrap().latest();
    let records = select(airtable, &["searchRecords"]);
    assert!(airtable
        .allows(&records, "GET", "/v0/appABC/tblXYZ")
        .is_some());
    assert!(airtable.allows(&records, "GET", "/v0/meta/bases").is_none());
}

#[test]
fn per_account_hosts_stay_under_the_suffix() {
    let catalog = catalog();
    let shopify = catalog.get("shopify").unwrap().latest();
    for typed in [
        "acme",
        "ACME",
        " acme.myshopify.com ",
        "https://acme.myshopify.com/",
    ] {
        assert_eq!(
            shopify.base_url_for(Some(typed)).unwrap(),
            "https://acme.myshopify.com",
            "{typed}"
        );
    }
    for typed in [
        "",
        "evil.example/x",
        "evil.example#",
        "evil.example?",
        "user@evil.example",
        "evil.example:443",
        "acme..x",
        "-acme",
        "http://acme.myshopify.com",
        "ac me",
    ] {
        let error = shopify.base_url_for(Some(typed)).unwrap_err().to_string();
        assert!(error.starts_with("shop: "), "{typed}: {error}");
    }
    assert!(shopify.base_url_for(None).is_err());
    // Whatever is typed, the host ends in .myshopify.com, a domain Shopify owns.
    assert_eq!(
        shopify.base_url_for(Some("evil.example")).unwrap(),
        "https://evil.example.myshopify.com"
    );

    let salesforce = catalog.get("salesforce").unwrap().latest();
    assert_eq!(
        salesforce
            .base_url_for(Some("https://acme--dev.sandbox.my.salesforce.com"))
            .unwrap(),
        "https://acme--dev.sandbox.my.salesforce.com"
    );
    for instance in [
        "https://evil.example",
        "acme.my.salesforce.com.evil.example",
        "my.salesforce.com",
        "evilmy.salesforce.com",
    ] {
        let error = salesforce
            .base_url_for(Some(instance))
            .unwrap_err()
            .to_string();
        assert!(error.contains("instance_url"), "{instance}: {error}");
    }

    let gmail = catalog.get("gmail").unwrap().latest();
    assert_eq!(
        gmail.base_url_for(None).unwrap(),
        "https://gmail.googleapis.com"
    );
    assert!(gmail.base_url_for(Some("evil.example")).is_err());
}

#[test]
fn the_api_view_of_an_app_shows_no_server_path() {
    let catalog = catalog();
    let value = serde_json::to_value(catalog.get("zendesk").unwrap()).unwrap();
    assert!(value.get("source").is_none());
    assert_eq!(value["key"], "zendesk");
    assert_eq!(value["builtin"], true);
    let version = &value["versions"][0];
    assert_eq!(version["auth"]["kind"], "basic");
    assert_eq!(version["auth"]["username"], "{email}/token");
    assert_eq!(version["account_host"]["host_suffix"], "zendesk.com");
    assert_eq!(version["modules"][0]["operations"][0]["method"], "GET");
    assert_eq!(version["verify"]["path"], "/api/v2/users/me");

    let stripe = serde_json::to_value(catalog.get("stripe").unwrap()).unwrap();
    let inject = &stripe["versions"][0]["auth"]["inject"];
    assert_eq!(inject["header"], "Authorization");
    assert_eq!(inject["value"], "Bearer {secretKey}");
}

const OPERATOR_APP: &str = r#"
key = "acme-crm"
label = "Acme CRM"
allow_private_hosts = true

[[versions]]
version = 1
base_url = "http://crm.acme.internal:8080/api"
verify = { method = "GET", path = "/v1/me" }
auth = { kind = "api_key", fields = [{ name = "apiKey", label = "API key", secret = true }], inject = { header = "Authorization", value = "Bearer {apiKey}" } }

[[versions.modules]]
key = "searchContacts"
label = "Search contacts"
kind = "search"
access = "read"
operations = ["GET /v1/contacts", "GET /v1/contacts/{id}"]
"#;

fn write(directory: &Path, name: &str, text: &str) {
    fs::write(directory.join(name), text).unwrap();
}

#[test]
fn an_operator_app_loads_next_to_the_built_in_apps() {
    let directory = tempfile::tempdir().unwrap();
    write(directory.path(), "acme-crm.toml", OPERATOR_APP);
    write(directory.path(), "README.md", "not an app");
    write(directory.path(), ".hidden.toml", "not toml at all [");
    fs::create_dir(directory.path().join("drafts.toml")).unwrap();

    let catalog = Catalog::load(Some(directory.path())).unwrap();
    assert_eq!(catalog.len(), Catalog::builtin().unwrap().len() + 1);
    let app = catalog.get("acme-crm").unwrap();
    assert!(!app.builtin);
    assert!(app.allow_private_hosts);
    assert_eq!(
        app.source,
        directory.path().join("acme-crm.toml").display().to_string()
    );
    let version = app.version(1).unwrap();
    assert_eq!(
        version.base_url_for(None).unwrap(),
        "http://crm.acme.internal:8080/api"
    );
    assert!(version
        .allows(&ModuleSelection::All, "GET", "/v1/contacts/7")
        .is_some());
    assert!(catalog.get("gmail").is_some());
    assert_eq!(
        Catalog::load(None).unwrap().len(),
        Catalog::builtin().unwrap().len()
    );
}

#[test]
fn a_bad_operator_file_is_refused_naming_file_and_field() {
    let directory = tempfile::tempdir().unwrap();
    let bad = OPERATOR_APP.replace("\"GET /v1/contacts/{id}\"", "\"FETCH /x\"");
    write(directory.path(), "acme.toml", &bad);
    let error = Catalog::load(Some(directory.path())).unwrap_err();
    let file = directory.path().join("acme.toml").display().to_string();
    assert_eq!(
        error.to_string(),
        format!(
            "{file}: versions[0].modules[0].operations[1]: \"FETCH /x\" is not \"METHOD /path\": the method \"FETCH\" is not one of GET, POST, PUT, PATCH, DELETE, HEAD"
        )
    );

    let cases = [
        (
            OPERATOR_APP.replace("version = 1", "version = \"one\""),
            "versions[0].version: invalid type: string \"one\", expected u32",
        ),
        (
            OPERATOR_APP.replace("kind = \"search\"", "kind = \"find\""),
            "versions[0].modules[0].kind: \"find\" is not a module kind",
        ),
        (
            OPERATOR_APP.replace("Bearer {apiKey}", "Bearer {apiToken}"),
            "versions[0].auth.inject.value: \"Bearer {apiToken}\" references {apiToken}, which is not a declared field; declared fields: apiKey",
        ),
        (
            OPERATOR_APP.replace("allow_private_hosts = true\n", ""),
            "versions[0].base_url: \"http://crm.acme.internal:8080/api\" uses http",
        ),
        (
            OPERATOR_APP.replace("label = \"Search contacts\"", "label = \"Search contacts\"\nscope = [\"x\"]"),
            "versions[0].modules[0].scope: unknown field `scope`, expected one of",
        ),
        (
            OPERATOR_APP.replace("key = \"acme-crm\"", "key = \"Acme CRM\""),
            "key: \"Acme CRM\" is not an app key",
        ),
        (
            OPERATOR_APP.replace("label = \"Search contacts\"", "label = \"Search contacts\"\nscopes = [\"contacts.read\"]"),
            "versions[0].modules[0].scopes: scopes are requested only in an OAuth 2.0 flow",
        ),
    ];
    for (text, expected) in cases {
        write(directory.path(), "acme.toml", &text);
        let error = Catalog::load(Some(directory.path()))
            .unwrap_err()
            .to_string();
        let expected = format!("{file}: {expected}");
        assert!(
            error.starts_with(&expected),
            "got:      {error}\nexpected: {expected}"
        );
    }

    write(directory.path(), "acme.toml", "key = \"acme\"\nlabel = ");
    let error = Catalog::load(Some(directory.path())).unwrap_err();
    assert!(
        matches!(&error, CatalogError::Syntax { file: named, .. } if *named == file),
        "{error}"
    );
    assert!(error.to_string().contains("line 2"), "{error}");
    assert!(!error.to_string().contains('\n'), "one line: {error}");
}

#[test]
fn a_duplicate_app_key_is_refused_naming_both_files() {
    let directory = tempfile::tempdir().unwrap();
    let gmail_again = OPERATOR_APP.replace("key = \"acme-crm\"", "key = \"gmail\"");
    write(directory.path(), "my-gmail.toml", &gmail_again);
    let error = Catalog::load(Some(directory.path()))
        .unwrap_err()
        .to_string();
    let operator_file = directory.path().join("my-gmail.toml").display().to_string();
    assert_eq!(
        error,
        format!("app key \"gmail\" is defined twice: in apps/gmail.toml and in {operator_file}; app keys must be unique, so rename or remove one")
    );

    let directory = tempfile::tempdir().unwrap();
    write(directory.path(), "a.toml", OPERATOR_APP);
    write(directory.path(), "b.toml", OPERATOR_APP);
    let error = Catalog::load(Some(directory.path()))
        .unwrap_err()
        .to_string();
    let first = directory.path().join("a.toml").display().to_string();
    let second = directory.path().join("b.toml").display().to_string();
    assert!(
        error.contains(&format!("in {first} and in {second}")),
        "{error}"
    );
}

#[test]
fn a_missing_operator_directory_is_an_error_not_an_empty_set() {
    let directory = tempfile::tempdir().unwrap();
    let missing = directory.path().join("apps-typo");
    let error = Catalog::load(Some(&missing)).unwrap_err().to_string();
    assert!(
        error.starts_with(&format!(
            "cannot read the operator app directory {}",
            missing.display()
        )),
        "{error}"
    );
}
