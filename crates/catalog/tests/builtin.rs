//! The shipped catalog: every built-in file loads, the compiled-in list matches
//! the `apps/` directory, and the data keeps the rules a broker relies on.

use credence_catalog::{Auth, Catalog, InjectionTarget, ModuleSelection, RevocationStyle, BUILTIN};
use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

fn catalog() -> Catalog {
    Catalog::builtin().unwrap_or_else(|error| panic!("the built-in catalog must load: {error}"))
}

#[test]
fn every_built_in_file_loads_and_there_are_at_least_22_apps() {
    let catalog = catalog();
    assert!(catalog.len() >= 22, "only {} apps", catalog.len());
    assert_eq!(catalog.len(), BUILTIN.len());
    assert!(catalog
        .apps()
        .all(|app| app.builtin && !app.allow_private_hosts));
}

#[test]
fn the_compiled_in_list_matches_the_apps_directory() {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("apps");
    let mut on_disk: Vec<(String, String)> = fs::read_dir(&directory)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "toml")
        })
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, fs::read_to_string(&path).unwrap())
        })
        .collect();
    on_disk.sort();
    let compiled: Vec<(String, String)> = BUILTIN
        .iter()
        .map(|(name, text)| (name.to_string(), text.to_string()))
        .collect();
    let names = |files: &[(String, String)]| {
        files
            .iter()
            .map(|(name, _)| name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(&compiled),
        names(&on_disk),
        "src/builtin.rs must list exactly the files in apps/, sorted"
    );
    assert_eq!(compiled, on_disk);
    // Nothing else (a stray .yaml, a typo'd extension) hides in the directory.
    let all_entries = fs::read_dir(&directory).unwrap().count();
    assert_eq!(all_entries, on_disk.len(), "apps/ holds only .toml files");
}

#[test]
fn every_app_key_is_its_file_name() {
    let catalog = catalog();
    for (name, _) in BUILTIN {
        let key = name.strip_suffix(".toml").unwrap();
        let app = catalog
            .get(key)
            .unwrap_or_else(|| panic!("{name} defines another key"));
        assert_eq!(app.source, format!("apps/{name}"));
    }
}

#[test]
fn the_promised_apps_are_shipped() {
    let catalog = catalog();
    for key in [
        "gmail",
        "google-drive",
        "google-sheets",
        "google-calendar",
        "microsoft-entra-id",
        "outlook",
        "slack",
        "hubspot",
        "github",
        "notion",
        "airtable",
        "salesforce",
        "webflow",
        "stripe",
        "mailchimp",
        "asana",
        "trello",
        "shopify",
        "zendesk",
        "dropbox",
        "pipedrive",
        "typeform",
        "calendly",
        "intercom",
        "jira",
    ] {
        let app = catalog
            .get(key)
            .unwrap_or_else(|| panic!("{key} is missing"));
        let modules = app.latest().modules.len();
        assert!((2..=5).contains(&modules), "{key} has {modules} modules");
    }
}

#[test]
fn every_oauth2_app_uses_https_endpoints() {
    let mut oauth2_apps = 0;
    for app in catalog().apps() {
        for version in &app.versions {
            let Auth::Oauth2(oauth2) = &version.auth else {
                continue;
            };
            oauth2_apps += 1;
            for url in [
                Some(&oauth2.authorize_url),
                Some(&oauth2.token_url),
                oauth2.revocation_url.as_ref(),
            ]
            .into_iter()
            .flatten()
            {
                assert!(url.starts_with("https://"), "{}: {url}", app.key);
            }
        }
    }
    assert!(oauth2_apps >= 15, "{oauth2_apps} OAuth 2.0 apps");
}

#[test]
fn every_base_url_is_https_and_per_account_hosts_have_a_suffix() {
    for app in catalog().apps() {
        for version in &app.versions {
            assert!(version.base_url.starts_with("https://"), "{}", app.key);
            match &version.account_host {
                Some(host) => {
                    assert!(version.base_url.contains(&format!("{{{}}}", host.field)));
                    assert!(host.host_suffix.contains('.'));
                }
                None => assert!(!version.base_url.contains('{'), "{}", app.key),
            }
        }
    }
}

#[test]
fn every_template_references_declared_fields_and_injects_a_secret() {
    for app in catalog().apps() {
        for version in &app.versions {
            let declared: BTreeSet<&str> = version
                .auth
                .fields()
                .iter()
                .map(|field| field.name.as_str())
                .collect();
            let templates: Vec<_> = match &version.auth {
                Auth::Oauth2(_) => continue,
                Auth::Basic(basic) => vec![&basic.username, &basic.password],
                other => other
                    .injections()
                    .iter()
                    .map(|injection| &injection.value)
                    .collect(),
            };
            assert!(!templates.is_empty(), "{}", app.key);
            let mut referenced = BTreeSet::new();
            for template in templates {
                for name in template.fields() {
                    assert!(
                        declared.contains(name),
                        "{}: {{{name}}} is not declared",
                        app.key
                    );
                    referenced.insert(name);
                }
            }
            let secret_injected = version
                .auth
                .fields()
                .iter()
                .any(|field| field.secret && referenced.contains(field.name.as_str()));
            assert!(secret_injected, "{} injects no secret", app.key);
        }
    }
}

#[test]
fn every_verify_call_is_a_fixed_path() {
    let catalog = catalog();
    let mut with_verify = 0;
    for app in catalog.apps() {
        if let Some(verify) = &app.latest().verify {
            with_verify += 1;
            assert_eq!(verify.path.params().count(), 0, "{}", app.key);
        }
    }
    assert!(with_verify >= 22, "{with_verify} apps have a verify call");
}

#[test]
fn providers_are_configured_as_documented() {
    let catalog = catalog();
    let oauth2 = |key: &str| {
        catalog
            .get(key)
            .unwrap()
            .latest()
            .auth
            .oauth2()
            .cloned()
            .unwrap()
    };

    let gmail = oauth2("gmail");
    assert_eq!(
        gmail.authorize_url,
        "https://accounts.google.com/o/oauth2/v2/auth"
    );
    assert_eq!(gmail.token_url, "https://oauth2.googleapis.com/token");
    assert_eq!(
        gmail.revocation_url.as_deref(),
        Some("https://oauth2.googleapis.com/revoke")
    );
    assert_eq!(gmail.extra_authorize_params["access_type"], "offline");
    assert_eq!(gmail.extra_authorize_params["prompt"], "consent");

    let outlook = oauth2("outlook");
    assert!(outlook.base_scopes.contains(&"offline_access".to_string()));
    assert_eq!(
        outlook.token_url,
        "https://login.microsoftonline.com/common/oauth2/v2.0/token"
    );

    let slack = oauth2("slack");
    assert_eq!(slack.scope_separator, ",");
    assert_eq!(slack.token_url, "https://slack.com/api/oauth.v2.access");

    assert!(oauth2("airtable").pkce);
    assert_eq!(oauth2("dropbox").revocation_style, RevocationStyle::Bearer);

    let stripe = catalog.get("stripe").unwrap().latest();
    assert_eq!(
        stripe.verify.as_ref().unwrap().to_string(),
        "GET /v1/balance"
    );
    let shopify = catalog.get("shopify").unwrap().latest();
    assert!(shopify.auth.injections().iter().any(|injection| {
        injection.target == InjectionTarget::Header("X-Shopify-Access-Token".to_string())
    }));
    assert_eq!(
        shopify.account_host.as_ref().unwrap().host_suffix,
        "myshopify.com"
    );
    assert_eq!(
        catalog
            .get("salesforce")
            .unwrap()
            .latest()
            .account_host
            .as_ref()
            .unwrap()
            .host_suffix,
        "my.salesforce.com"
    );
    assert!(catalog
        .get("notion")
        .unwrap()
        .latest()
        .headers
        .contains_key("Notion-Version"));
}

#[test]
fn selecting_every_module_of_every_app_yields_a_usable_selection() {
    for app in catalog().apps() {
        let version = app.latest();
        let all = ModuleSelection::parse(&["*".to_string()], version).unwrap();
        let scopes = version.scopes_for(&all).unwrap();
        let expected: BTreeSet<String> = version
            .modules
            .iter()
            .flat_map(|module| module.scopes.iter().cloned())
            .chain(
                version
                    .auth
                    .oauth2()
                    .into_iter()
                    .flat_map(|oauth2| oauth2.base_scopes.iter().cloned()),
            )
            .collect();
        assert_eq!(scopes, expected, "{}", app.key);
        // Every operation is reachable through its own module.
        for module in &version.modules {
            let only = ModuleSelection::parse(std::slice::from_ref(&module.key), version).unwrap();
            for operation in &module.operations {
                let concrete = operation.path.as_str().replace(['{', '}'], "");
                assert!(
                    version
                        .allows(&only, operation.method.as_str(), &concrete)
                        .is_some(),
                    "{}: {} {concrete}",
                    app.key,
                    operation.method
                );
            }
        }
    }
}
