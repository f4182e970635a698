//! The browser side of the test client: a cookie jar that follows no
//! redirect, the hidden fields and cookies of our pages, signing in with a
//! password and accepting an invitation.

use super::{Person, TestApp};
use reqwest::StatusCode;

/// A browser: keeps cookies, does not follow redirects.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(super::app::CLIENT_IDLE)
        .build()
        .unwrap()
}

/// A client without a cookie jar (the test sets `Cookie` by hand) that does
/// not follow redirects.
pub fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(super::app::CLIENT_IDLE)
        .build()
        .unwrap()
}

/// The value of the hidden field `name` of a page, HTML entities of `&` undone.
pub fn field_of(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("the page has a {name} field: {html}"))
        + marker.len();
    html[start..]
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&")
}

/// The hidden CSRF field of a page.
pub fn csrf_of(html: &str) -> String {
    field_of(html, "csrf_token")
}

/// `name=value` of the `Set-Cookie` header for cookie `name`, with its attributes.
pub fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find(|value| value.starts_with(&format!("{name}=")))
        .map(str::to_string)
}

/// Where a redirect points.
pub fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// GETs a form page (200 expected) and answers its CSRF field.
pub async fn form_page(client: &reqwest::Client, url: &str) -> String {
    let response = client.get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "GET {url}");
    csrf_of(&response.text().await.unwrap())
}

/// Posts the sign-in form with `email` and `password` from `client`; answers
/// the response (a redirect when it worked).
pub async fn sign_in(
    app: &TestApp,
    client: &reqwest::Client,
    email: &str,
    password: &str,
) -> reqwest::Response {
    let csrf = form_page(client, &app.url("/sign-in")).await;
    client
        .post(app.url("/sign-in"))
        .form(&[
            ("email", email),
            ("password", password),
            ("csrf_token", &csrf),
        ])
        .send()
        .await
        .unwrap()
}

/// A browser signed in as `person`.
pub async fn signed_in(app: &TestApp, person: &Person) -> reqwest::Client {
    let client = browser();
    let response = sign_in(app, &client, &person.email, &person.password).await;
    assert!(
        response.status().is_redirection(),
        "sign-in: {}",
        response.status()
    );
    client
}

/// Opens an invitation `link` in a fresh browser and signs up as "Cleo C."
/// with a password; answers the status of the page and of the form post.
pub async fn accept_invitation_link(link: &str) -> (StatusCode, StatusCode) {
    accept_invitation_in(&browser(), link).await
}

/// Like [`accept_invitation_link`], in `browser` (which is signed in as the
/// new guest afterwards).
pub async fn accept_invitation_in(
    browser: &reqwest::Client,
    link: &str,
) -> (StatusCode, StatusCode) {
    let page = browser.get(link).send().await.unwrap();
    let page_status = page.status();
    let html = page.text().await.unwrap();
    // A refused page has no form; reuse a CSRF pair from any form page then.
    let csrf = if html.contains("name=\"csrf_token\"") {
        csrf_of(&html)
    } else {
        let sign_in = link.split("/invitations/").next().unwrap().to_string() + "/sign-in";
        csrf_of(
            &browser
                .get(sign_in)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        )
    };
    let post = browser
        .post(link)
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("name", "Cleo C."),
            ("password", "cleo's long password"),
            ("password_again", "cleo's long password"),
        ])
        .send()
        .await
        .unwrap();
    (page_status, post.status())
}

/// GETs `url` with `client`: the status and the page, which must hold no
/// registered secret.
pub async fn page(client: &reqwest::Client, url: &str) -> (StatusCode, String) {
    let response = client.get(url).send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    super::assert_no_secret(url, &text);
    (status, text)
}

/// Posts the form `fields` (and the CSRF token `csrf`, if any) to `url`: the
/// status, where it redirects, and the page, which must hold no registered secret.
pub async fn post_form(
    client: &reqwest::Client,
    url: &str,
    csrf: Option<&str>,
    fields: &[(&str, &str)],
) -> (StatusCode, String, String) {
    let mut form: Vec<(&str, &str)> = fields.to_vec();
    if let Some(csrf) = csrf {
        form.push(("csrf_token", csrf));
    }
    let response = client.post(url).form(&form).send().await.unwrap();
    let (status, to) = (response.status(), location(&response));
    let text = response.text().await.unwrap();
    super::assert_no_secret(url, &text);
    (status, to, text)
}
